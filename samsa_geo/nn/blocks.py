"""Transformer blocks built on :class:`~samsa_geo.nn.SAMSAConv`: the pre-norm
SAMSA block, a stack of them, and a GPS-style layer."""

import inspect
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Dropout, Linear, Sequential
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.inits import reset
from torch_geometric.nn.resolver import activation_resolver, normalization_resolver

from samsa_geo.nn.samsa_conv import SAMSAConv, SamplingInfo
from samsa_geo.ops.segment import resolve_segments


def drop_path(
    x: Tensor,
    p: float,
    batch: Tensor,
    num_graphs: int,
    training: bool = True,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""Drops a residual branch for whole graphs (stochastic depth, from the
    `"Deep Networks with Stochastic Depth" <https://arxiv.org/abs/1603.09382>`_
    paper), on a ragged batch.

    Each graph keeps its branch with probability :math:`1 - p`, and the kept
    branches are scaled by :math:`1 / (1 - p)` so that the expectation is
    unchanged. All nodes of a graph share the decision, as all tokens of a
    sample do in dense transformers.

    Args:
        x (torch.Tensor): ``[N, F]`` output of the residual branch.
        p (float): Drop probability in :math:`[0, 1)`.
        batch (torch.Tensor): ``[N]`` graph index of every node.
        num_graphs (int): Number of graphs ``B``.
        training (bool, optional): If :obj:`False`, return :obj:`x`
            unchanged. (default: :obj:`True`)
        generator (torch.Generator, optional): Source of the random draw.
            (default: :obj:`None`)

    Returns:
        ``[N, F]`` tensor with the rows of dropped graphs set to zero.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"'p' must lie in [0, 1), got {p!r}.")
    if not training or p == 0.0:
        return x

    keep_prob = 1.0 - p
    draw = torch.rand(num_graphs, device=x.device, generator=generator)
    keep = (draw < keep_prob).to(x.dtype) / keep_prob
    return x * keep[batch].unsqueeze(-1)


class SAMSABlock(torch.nn.Module):
    r"""The pre-norm transformer block of the `"SAMSA: Efficient Transformer
    for Many Data Modalities" <https://arxiv.org/abs/2408.05391>`_ paper.

    .. math::
        \mathbf{X} &\leftarrow \mathbf{X} + \gamma \cdot
        \mathrm{DropPath}(\mathrm{SAMSA}(\mathbf{X}))

        \mathbf{X} &\leftarrow \mathbf{X} + \gamma \cdot
        \mathrm{DropPath}(\mathrm{MLP}(\mathrm{RMSNorm}(\mathbf{X})))

    :math:`\mathrm{SAMSA}` is a :class:`SAMSAConv` with concatenated heads,
    which normalizes its own input, and :math:`\mathrm{MLP}` has one GELU
    hidden layer. Both branches share one learnable scalar :math:`\gamma`,
    which starts at zero so that the block starts as the identity.
    Drop-path decides per graph.

    Args:
        channels (int): Size of each input and output sample.
        heads (int, optional): Number of attention heads. :obj:`channels`
            must be divisible by :obj:`heads`. (default: :obj:`1`)
        k (int, optional): Number of nodes each head samples per graph.
            Exactly one of :obj:`k` and :obj:`ratio` must be given.
            (default: :obj:`None`)
        ratio (float, optional): Fraction of each graph's nodes that each
            head samples, in :math:`(0, 1]`. (default: :obj:`None`)
        mlp_ratio (float, optional): Hidden size of the MLP as a multiple of
            :obj:`channels`. (default: :obj:`4.0`)
        dropout (float, optional): Dropout probability of the attention
            weights and of the MLP's hidden layer. (default: :obj:`0.`)
        drop_path (float, optional): Probability of dropping each residual
            branch for a whole graph in training. (default: :obj:`0.`)
        gamma_init (float, optional): Initial residual scale :math:`\gamma`.
            Pass :obj:`1.0` for a plain pre-norm block. (default: :obj:`0.`)
        **kwargs (optional): Further arguments of :class:`SAMSAConv`, such as
            :obj:`num_registers` or :obj:`hard`.
    """

    def __init__(
        self,
        channels: int,
        heads: int = 1,
        k: Optional[int] = None,
        ratio: Optional[float] = None,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        gamma_init: float = 0.0,
        **kwargs,
    ):
        super().__init__()
        if channels <= 0 or heads <= 0 or channels % heads != 0:
            raise ValueError(
                f"'channels' must be a positive multiple of 'heads', got channels={channels} "
                f"and heads={heads}.")
        if mlp_ratio <= 0:
            raise ValueError(f"'mlp_ratio' must be positive, got {mlp_ratio!r}.")
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"'drop_path' must lie in [0, 1), got {drop_path!r}.")

        self.channels = channels
        self.heads = heads
        self.k = k
        self.ratio = ratio
        self.mlp_ratio = mlp_ratio
        self.dropout = dropout
        self.drop_path = drop_path
        self.gamma_init = gamma_init

        self.attn = SAMSAConv(channels, channels // heads, heads=heads, k=k, ratio=ratio,
                              concat=True, dropout=dropout, **kwargs)
        hidden = max(1, int(round(channels * mlp_ratio)))
        self.norm = torch.nn.RMSNorm(channels)
        self.mlp = Sequential(
            Linear(channels, hidden),
            torch.nn.GELU(),
            Dropout(dropout),
            Linear(hidden, channels),
        )
        self.gamma = torch.nn.Parameter(torch.empty(()))

        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.attn.reset_parameters()
        self.norm.reset_parameters()
        reset(self.mlp)
        with torch.no_grad():
            self.gamma.fill_(self.gamma_init)

    def forward(
        self,
        x: Tensor,
        batch: Optional[Tensor] = None,
        ptr: Optional[Tensor] = None,
        num_graphs: Optional[int] = None,
        return_sampling: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> Union[Tensor, Tuple[Tensor, SamplingInfo]]:
        r"""Runs the forward pass of the module on ``[N, channels]`` node
        features :obj:`x` of a ragged batch given by :obj:`batch` or
        :obj:`ptr`, as in :meth:`SAMSAConv.forward`."""
        batch, ptr = resolve_segments(x.size(0), batch, ptr, num_graphs, device=x.device)
        B = ptr.numel() - 1

        h, info = self.attn(x, ptr=ptr, return_sampling=True, generator=generator)
        h = drop_path(h, self.drop_path, batch, B, self.training, generator)
        x = x + self.gamma * h

        h = self.mlp(self.norm(x))
        h = drop_path(h, self.drop_path, batch, B, self.training, generator)
        x = x + self.gamma * h

        if return_sampling:
            return x, info
        return x

    def __repr__(self) -> str:
        option = f"k={self.k}" if self.k is not None else f"ratio={self.ratio}"
        return f"{self.__class__.__name__}({self.channels}, heads={self.heads}, {option})"


class SAMSAEncoder(torch.nn.Module):
    r"""A stack of :class:`SAMSABlock` layers followed by a final RMSNorm,
    the encoder of the `"SAMSA: Efficient Transformer for Many Data
    Modalities" <https://arxiv.org/abs/2408.05391>`_ paper.

    The drop-path probability grows linearly with depth, from zero in the
    first block to :obj:`drop_path` in the last.

    Args:
        channels (int): Size of each input and output sample.
        num_layers (int): Number of blocks.
        heads (int, optional): Number of attention heads per block.
            (default: :obj:`1`)
        k (int, optional): Number of nodes each head samples per graph.
            Exactly one of :obj:`k` and :obj:`ratio` must be given.
            (default: :obj:`None`)
        ratio (float, optional): Fraction of each graph's nodes that each
            head samples, in :math:`(0, 1]`. (default: :obj:`None`)
        drop_path (float, optional): Drop-path probability of the last block.
            (default: :obj:`0.`)
        **kwargs (optional): Further arguments of :class:`SAMSABlock` and
            :class:`SAMSAConv`, such as :obj:`mlp_ratio`, :obj:`dropout`,
            :obj:`gamma_init` or :obj:`num_registers`.
    """

    def __init__(
        self,
        channels: int,
        num_layers: int,
        heads: int = 1,
        k: Optional[int] = None,
        ratio: Optional[float] = None,
        drop_path: float = 0.0,
        **kwargs,
    ):
        super().__init__()
        if num_layers <= 0:
            raise ValueError(f"'num_layers' must be positive, got {num_layers}.")

        self.channels = channels
        self.num_layers = num_layers
        self.heads = heads
        self.k = k
        self.ratio = ratio
        self.drop_path = drop_path

        rates = torch.linspace(0.0, drop_path, num_layers).tolist() if num_layers > 1 else [drop_path]
        self.blocks = torch.nn.ModuleList([
            SAMSABlock(channels, heads=heads, k=k, ratio=ratio, drop_path=rate, **kwargs)
            for rate in rates
        ])
        self.norm = torch.nn.RMSNorm(channels)

        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for block in self.blocks:
            block.reset_parameters()
        self.norm.reset_parameters()

    def forward(
        self,
        x: Tensor,
        batch: Optional[Tensor] = None,
        ptr: Optional[Tensor] = None,
        num_graphs: Optional[int] = None,
        return_sampling: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> Union[Tensor, Tuple[Tensor, List[SamplingInfo]]]:
        r"""Runs the forward pass of the module.

        Returns:
            ``[N, channels]`` node features, and with
            :obj:`return_sampling=True` also a list with one
            :class:`SamplingInfo` per block.
        """
        _, ptr = resolve_segments(x.size(0), batch, ptr, num_graphs, device=x.device)

        infos = []
        for block in self.blocks:
            x, info = block(x, ptr=ptr, return_sampling=True, generator=generator)
            infos.append(info)
        x = self.norm(x)

        if return_sampling:
            return x, infos
        return x

    def __repr__(self) -> str:
        option = f"k={self.k}" if self.k is not None else f"ratio={self.ratio}"
        return (f"{self.__class__.__name__}({self.channels}, num_layers={self.num_layers}, "
                f"heads={self.heads}, {option})")


class SAMSAGPSConv(torch.nn.Module):
    r"""The GPS graph transformer layer from the `"Recipe for a General,
    Powerful, Scalable Graph Transformer" <https://arxiv.org/abs/2205.12454>`_
    paper, with sampling self-attention as its global attention.

    The constructor and :meth:`forward` match
    :class:`torch_geometric.nn.GPSConv`, so a model switches by changing one
    line. A local message passing layer and the global attention each add a
    residual and a norm, their sum passes an MLP with a residual and a norm:

    .. math::
        \mathbf{H}_{\mathrm{local}} &= \mathrm{Norm}(\mathbf{X} +
        \mathrm{MPNN}(\mathbf{X}, \mathbf{A}))

        \mathbf{H}_{\mathrm{global}} &= \mathrm{Norm}(\mathbf{X} +
        \mathrm{Attn}(\mathbf{X}))

        \mathbf{H} &= \mathbf{H}_{\mathrm{local}} + \mathbf{H}_{\mathrm{global}}

        \mathbf{X}' &= \mathrm{Norm}(\mathbf{H} + \mathrm{MLP}(\mathbf{H}))

    The global attention is a module argument. It is called as
    ``attn(x, batch=batch)`` on the ragged ``[N, channels]`` features and
    must return ``[N, channels]``. By default it is a :class:`SAMSAConv`
    with concatenated heads of size ``channels // heads``.

    The positional arguments follow :class:`~torch_geometric.nn.conv.GPSConv`,
    so ``GPSConv(64, conv, heads=4)`` becomes
    ``SAMSAGPSConv(64, conv, heads=4, k=16)``. The sample size :obj:`k` or
    :obj:`ratio` and a custom :obj:`attn` are keyword-only.

    Args:
        channels (int): Size of each input sample.
        conv (MessagePassing, optional): The local message passing layer, or
            :obj:`None` for global attention alone.
        heads (int, optional): Number of attention heads of the default
            attention. (default: :obj:`1`)
        dropout (float, optional): Dropout probability of intermediate
            embeddings. (default: :obj:`0.`)
        act (str or Callable, optional): The non-linear activation function of
            the MLP. (default: :obj:`"relu"`)
        act_kwargs (Dict[str, Any], optional): Arguments passed to the
            activation function. (default: :obj:`None`)
        norm (str or Callable, optional): The normalization function.
            (default: :obj:`"batch_norm"`)
        norm_kwargs (Dict[str, Any], optional): Arguments passed to the
            normalization function. (default: :obj:`None`)
        attn_type (str, optional): Accepted for the signature of
            :class:`~torch_geometric.nn.conv.GPSConv`. Only :obj:`"samsa"` is
            valid. (default: :obj:`"samsa"`)
        attn_kwargs (Dict[str, Any], optional): Further arguments of the
            default :class:`SAMSAConv`. (default: :obj:`None`)
        k (int, optional): Number of nodes each head of the default attention
            samples per graph. (default: :obj:`None`)
        ratio (float, optional): Fraction of each graph's nodes that each
            head of the default attention samples. (default: :obj:`None`)
        attn (torch.nn.Module, optional): The global attention module. If
            given, :obj:`heads`, :obj:`k`, :obj:`ratio` and
            :obj:`attn_kwargs` are not used. (default: :obj:`None`)
    """

    def __init__(
        self,
        channels: int,
        conv: Optional[MessagePassing],
        heads: int = 1,
        dropout: float = 0.0,
        act: str = "relu",
        act_kwargs: Optional[Dict[str, Any]] = None,
        norm: Optional[str] = "batch_norm",
        norm_kwargs: Optional[Dict[str, Any]] = None,
        attn_type: str = "samsa",
        attn_kwargs: Optional[Dict[str, Any]] = None,
        *,
        k: Optional[int] = None,
        ratio: Optional[float] = None,
        attn: Optional[torch.nn.Module] = None,
    ):
        super().__init__()
        if attn_type != "samsa":
            raise ValueError(
                f"SAMSAGPSConv always uses SAMSA attention, got attn_type={attn_type!r}. Drop "
                f"'attn_type' when swapping from GPSConv, or pass another module as 'attn'.")
        self.channels = channels
        self.conv = conv
        self.heads = heads
        self.k = k
        self.ratio = ratio
        self.dropout = dropout

        if attn is None:
            if channels % heads != 0:
                raise ValueError(
                    f"'channels' must be a multiple of 'heads' for the default attention, got "
                    f"channels={channels} and heads={heads}.")
            attn = SAMSAConv(channels, channels // heads, heads=heads, k=k, ratio=ratio,
                             concat=True, **(attn_kwargs or {}))
        self.attn = attn

        self.mlp = Sequential(
            Linear(channels, channels * 2),
            activation_resolver(act, **(act_kwargs or {})),
            Dropout(dropout),
            Linear(channels * 2, channels),
            Dropout(dropout),
        )

        norm_kwargs = norm_kwargs or {}
        self.norm1 = normalization_resolver(norm, channels, **norm_kwargs)
        self.norm2 = normalization_resolver(norm, channels, **norm_kwargs)
        self.norm3 = normalization_resolver(norm, channels, **norm_kwargs)
        self.norm_with_batch = False
        if self.norm1 is not None:
            signature = inspect.signature(self.norm1.forward)
            self.norm_with_batch = "batch" in signature.parameters

        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        if self.conv is not None:
            self.conv.reset_parameters()
        reset(self.attn)
        reset(self.mlp)
        for norm in (self.norm1, self.norm2, self.norm3):
            if norm is not None:
                norm.reset_parameters()

    def _norm(self, norm: Optional[torch.nn.Module], x: Tensor, batch: Optional[Tensor]) -> Tensor:
        if norm is None:
            return x
        if self.norm_with_batch:
            return norm(x, batch=batch)
        return norm(x)

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        batch: Optional[Tensor] = None,
        return_sampling: bool = False,
        **kwargs,
    ) -> Union[Tensor, Tuple[Tensor, SamplingInfo]]:
        r"""Runs the forward pass of the module. Keyword arguments go to the
        local message passing layer. With :obj:`return_sampling=True`, it
        also returns the :class:`SamplingInfo` of the default
        :class:`SAMSAConv` attention."""
        hs = []
        if self.conv is not None:
            h = self.conv(x, edge_index, **kwargs)
            h = F.dropout(h, p=self.dropout, training=self.training)
            hs.append(self._norm(self.norm1, h + x, batch))

        info = None
        if return_sampling:
            if not isinstance(self.attn, SAMSAConv):
                raise ValueError(
                    f"return_sampling=True needs SAMSAConv attention, but this layer uses "
                    f"{self.attn.__class__.__name__}. Call it with return_sampling=False.")
            h, info = self.attn(x, batch=batch, return_sampling=True)
        else:
            h = self.attn(x, batch=batch)
        h = F.dropout(h, p=self.dropout, training=self.training)
        hs.append(self._norm(self.norm2, h + x, batch))

        out = sum(hs)
        out = out + self.mlp(out)
        out = self._norm(self.norm3, out, batch)

        if return_sampling:
            return out, info
        return out

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, conv={self.conv}, "
                f"heads={self.heads}, attn={self.attn})")
