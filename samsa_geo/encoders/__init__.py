"""Positional encodings of graph nodes and points, as transforms and as
modules that turn them into node features."""

from samsa_geo.encoders.graph_pe import (
    DeterministicLaplacianPE,
    LapPEEncoder,
    RWSEEncoder,
    canonical_sign,
)
from samsa_geo.encoders.point_pe import FourierPointEncoding, LocalKNNEmbedding

__all__ = [
    "DeterministicLaplacianPE",
    "FourierPointEncoding",
    "LapPEEncoder",
    "LocalKNNEmbedding",
    "RWSEEncoder",
    "canonical_sign",
]
