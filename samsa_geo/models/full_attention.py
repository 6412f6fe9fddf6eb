"""Baseline transformer with full (quadratic) attention inside each graph."""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import to_dense_batch


class FullAttentionBlock(torch.nn.Module):
    r"""Pre-norm transformer block in which every token attends to every
    token of its own graph, the quadratic baseline of
    :class:`~samsa_geo.nn.SAMSABlock`.

    .. math::
        \mathbf{x} &\leftarrow \mathbf{x} + \mathrm{Attn}(\mathrm{RMSNorm}(\mathbf{x}))

        \mathbf{x} &\leftarrow \mathbf{x} + \mathrm{MLP}(\mathrm{RMSNorm}(\mathbf{x}))

    Graphs are padded to the largest graph of the batch, and padded keys are
    masked out.

    Args:
        channels (int): Width.
        heads (int, optional): Attention heads. (default: :obj:`4`)
        mlp_ratio (float, optional): Hidden width of the MLP relative to
            :obj:`channels`. (default: :obj:`4.0`)
        dropout (float, optional): Dropout on attention weights in training.
            (default: :obj:`0.0`)
    """

    def __init__(self, channels: int, heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        if channels % heads != 0:
            raise ValueError(f"'channels' must be a multiple of 'heads', got channels={channels} "
                             f"and heads={heads}.")
        self.channels = channels
        self.heads = heads
        self.mlp_ratio = mlp_ratio
        self.dropout = dropout

        hidden = int(channels * mlp_ratio)
        self.norm1 = torch.nn.RMSNorm(channels)
        self.lin_qkv = torch.nn.Linear(channels, 3 * channels)
        self.lin_out = torch.nn.Linear(channels, channels)
        self.norm2 = torch.nn.RMSNorm(channels)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(channels, hidden),
            torch.nn.GELU(),
            torch.nn.Linear(hidden, channels),
        )

    def reset_parameters(self):
        for module in (self.norm1, self.lin_qkv, self.lin_out, self.norm2, self.mlp[0], self.mlp[2]):
            module.reset_parameters()

    def attention(self, x: Tensor, batch: Optional[Tensor]) -> Tensor:
        H, C = self.heads, self.channels // self.heads

        dense, mask = to_dense_batch(x, batch)  # [B, n_max, F], [B, n_max]
        B, n_max, _ = dense.shape
        q, k, v = self.lin_qkv(dense).view(B, n_max, 3, H, C).permute(2, 0, 3, 1, 4)

        attn_mask = mask[:, None, None, :]  # keys of other graphs never exist here
        dropout_p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)

        out = out.transpose(1, 2).reshape(B, n_max, H * C)[mask]
        return self.lin_out(out)

    def forward(self, x: Tensor, batch: Optional[Tensor] = None) -> Tensor:
        x = x + self.attention(self.norm1(x), batch)
        return x + self.mlp(self.norm2(x))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels}, heads={self.heads})"


class FullAttentionEncoder(torch.nn.Module):
    r"""A stack of :class:`FullAttentionBlock` layers and a final RMSNorm.

    Args:
        channels (int): Width.
        num_layers (int): Number of blocks.
        heads (int, optional): Attention heads per block. (default: :obj:`4`)
        **kwargs (optional): Further arguments of :class:`FullAttentionBlock`.
    """

    def __init__(self, channels: int, num_layers: int, heads: int = 4, **kwargs):
        super().__init__()
        self.channels = channels
        self.num_layers = num_layers
        self.heads = heads
        self.blocks = torch.nn.ModuleList(
            [FullAttentionBlock(channels, heads, **kwargs) for _ in range(num_layers)])
        self.norm = torch.nn.RMSNorm(channels)

    def reset_parameters(self):
        for block in self.blocks:
            block.reset_parameters()
        self.norm.reset_parameters()

    def forward(self, x: Tensor, batch: Optional[Tensor] = None) -> Tensor:
        for block in self.blocks:
            x = block(x, batch)
        return self.norm(x)
