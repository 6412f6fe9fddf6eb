"""Sampling self-attention on padded ``[B, N, F]`` batches, with the interface
of the modules in :mod:`torch_geometric.nn.attention`."""

from typing import Optional

import torch
from torch import Tensor

from samsa_geo.nn.samsa_conv import SAMSAConv
from samsa_geo.ops.segment import batch_to_ptr


class SAMSAAttention(torch.nn.Module):
    r"""The sampling self-attention from the `"SAMSA: Efficient Transformer
    for Many Data Modalities" <https://arxiv.org/abs/2408.05391>`_ paper, for
    padded dense batches as PyG's
    :class:`~torch_geometric.nn.attention.PerformerAttention` takes them.

    The module drops the padded positions, runs a :class:`SAMSAConv` on the
    ragged batch of valid tokens, and scatters the result back. So every
    sequence samples its own :math:`k` tokens per head, and padding never
    becomes a key, a value or a sampled token. Padded positions of the output
    are zero.

    Args:
        channels (int): Size of each input and output token.
        heads (int, optional): Number of attention heads. :obj:`channels`
            must be divisible by :obj:`heads`. (default: :obj:`1`)
        k (int, optional): Number of tokens each head samples per sequence.
            Exactly one of :obj:`k` and :obj:`ratio` must be given.
            (default: :obj:`None`)
        ratio (float, optional): Fraction of each sequence's valid tokens that
            each head samples, in :math:`(0, 1]`. (default: :obj:`None`)
        **kwargs (optional): Further arguments of :class:`SAMSAConv`, such as
            :obj:`num_registers`, :obj:`hard` or :obj:`dropout`.

    Shapes:
        - **input:** tokens :math:`(B, N, F)`, mask :math:`(B, N)` bool
          *(optional)*
        - **output:** tokens :math:`(B, N, F)`
    """

    def __init__(
        self,
        channels: int,
        heads: int = 1,
        k: Optional[int] = None,
        ratio: Optional[float] = None,
        **kwargs,
    ):
        super().__init__()
        if channels <= 0 or heads <= 0 or channels % heads != 0:
            raise ValueError(
                f"'channels' must be a positive multiple of 'heads', got channels={channels} "
                f"and heads={heads}.")

        self.channels = channels
        self.heads = heads
        self.head_channels = channels // heads
        self.k = k
        self.ratio = ratio
        self.conv = SAMSAConv(channels, self.head_channels, heads=heads, k=k, ratio=ratio,
                              concat=True, **kwargs)

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.conv.reset_parameters()

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        r"""Runs the forward pass of the module.

        Args:
            x (torch.Tensor): Token features
                :math:`\mathbf{X} \in \mathbb{R}^{B \times N \times F}`, with
                batch size :math:`B`, maximum sequence length :math:`N` and
                feature size :math:`F`.
            mask (torch.Tensor, optional): Bool mask
                :math:`\mathbf{M} \in \{0, 1\}^{B \times N}` that is
                :obj:`True` for valid tokens. The valid tokens need not be a
                prefix of each row. (default: :obj:`None`, all valid)
        """
        if x.dim() != 3:
            raise ValueError(f"'x' must have shape [B, N, F], got {tuple(x.shape)}.")
        B, N, F = x.shape
        if mask is None:
            mask = torch.ones(B, N, dtype=torch.bool, device=x.device)
        if mask.shape != (B, N) or mask.dtype != torch.bool:
            raise ValueError(
                f"'mask' must be a bool tensor of shape {(B, N)}, got {mask.dtype} of shape "
                f"{tuple(mask.shape)}.")

        # Row-major order of the valid tokens keeps each sequence contiguous,
        # so the ragged batch vector is sorted.
        batch = torch.arange(B, device=x.device).view(B, 1).expand(B, N)[mask]
        ptr = batch_to_ptr(batch, num_graphs=B)
        out = self.conv(x[mask], ptr=ptr)

        dense = out.new_zeros(B, N, out.size(-1))
        dense[mask] = out
        return dense

    def __repr__(self) -> str:
        option = f"k={self.k}" if self.k is not None else f"ratio={self.ratio}"
        return f"{self.__class__.__name__}({self.channels}, heads={self.heads}, {option})"
