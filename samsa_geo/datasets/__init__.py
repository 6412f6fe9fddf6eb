"""Datasets that build offline from local raw files."""

from samsa_geo.datasets.cad import SH3DFurniture
from samsa_geo.datasets.molecules import (
    ZINC_ATOM_LABELS,
    mol_to_zinc_graph,
    penalized_logp,
    smiles_to_zinc_graph,
    smiles_to_zinc_graphs,
)
from samsa_geo.datasets.modelnet import ModelNet
from samsa_geo.datasets.moses import MosesZINC
from samsa_geo.datasets.off import OffFormatError, read_off, read_off_files, write_off
from samsa_geo.datasets.offline import (
    NetworkBlockedError,
    OfflineDownloadMixin,
    RawFilesMissingError,
    block_network,
    require_raw_files,
)
from samsa_geo.datasets.primitives import (
    PRIMITIVE_SHAPES,
    PrimitiveShapes,
    make_primitive,
    write_primitive_modelnet,
)
from samsa_geo.datasets.zinc import ZINC

__all__ = [
    "ModelNet",
    "OffFormatError",
    "PRIMITIVE_SHAPES",
    "PrimitiveShapes",
    "make_primitive",
    "read_off",
    "read_off_files",
    "write_off",
    "write_primitive_modelnet",
    "SH3DFurniture",
    "MosesZINC",
    "ZINC",
    "ZINC_ATOM_LABELS",
    "mol_to_zinc_graph",
    "penalized_logp",
    "smiles_to_zinc_graph",
    "smiles_to_zinc_graphs",
    "NetworkBlockedError",
    "OfflineDownloadMixin",
    "RawFilesMissingError",
    "block_network",
    "require_raw_files",
]
