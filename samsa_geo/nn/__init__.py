"""Sampling self-attention layers and transformer blocks for PyG."""

from samsa_geo.nn.samsa_conv import SAMSAConv, SamplingInfo
from samsa_geo.nn.attention import SAMSAAttention
from samsa_geo.nn.blocks import SAMSABlock, SAMSAEncoder, SAMSAGPSConv, drop_path

__all__ = [
    "SAMSAConv",
    "SamplingInfo",
    "SAMSAAttention",
    "SAMSABlock",
    "SAMSAEncoder",
    "SAMSAGPSConv",
    "drop_path",
]
