"""samsa_geo: sampling self-attention (SAMSA) for PyTorch Geometric."""

__version__ = "0.1.0"
