"""Ready-made models for point clouds and molecules, and their baselines."""

from samsa_geo.models.full_attention import FullAttentionBlock, FullAttentionEncoder
from samsa_geo.models.graph import GPSGraphModel, MoleculeEmbedding, SAMSAGraphModel
from samsa_geo.models.point import PointStem, SAMSAPointClassifier
from samsa_geo.models.point_baselines import FullAttentionPointClassifier, PointNet2Classifier
from samsa_geo.models.readout import count_parameters, mean_max_readout

__all__ = [
    "FullAttentionBlock",
    "FullAttentionEncoder",
    "FullAttentionPointClassifier",
    "GPSGraphModel",
    "MoleculeEmbedding",
    "PointNet2Classifier",
    "PointStem",
    "SAMSAGraphModel",
    "SAMSAPointClassifier",
    "count_parameters",
    "mean_max_readout",
]
