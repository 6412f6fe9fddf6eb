"""Encodings of point coordinates: Fourier features and a local k-nearest
neighbour embedding."""

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.nn import MLP, PointNetConv

from samsa_geo.ops import check_finite, knn_graph


class FourierPointEncoding(torch.nn.Module):
    r"""Fourier features of point coordinates at geometric frequencies, as in
    `"NeRF: Representing Scenes as Neural Radiance Fields for View
    Synthesis" <https://arxiv.org/abs/2003.08934>`_.

    .. math::
        \gamma(\mathbf{p}) = \left[\mathbf{p},\
        \sin(2^0 \pi \mathbf{p}), \dots, \sin(2^{F-1} \pi \mathbf{p}),\
        \cos(2^0 \pi \mathbf{p}), \dots, \cos(2^{F-1} \pi \mathbf{p}),\
        \mathbf{n}\right]

    Each sine and cosine block holds the :math:`D` coordinates at one
    frequency. The raw coordinates :math:`\mathbf{p}` come first if
    :obj:`include_input`, and the normals :math:`\mathbf{n}` last if
    :obj:`use_normals`. The module has no parameters.

    Args:
        num_frequencies (int): Number of frequencies :math:`F`.
        include_input (bool, optional): If :obj:`True`, the raw coordinates
            are part of the output. (default: :obj:`True`)
        use_normals (bool, optional): If :obj:`True`, :meth:`forward` needs
            ``normal`` and appends it. (default: :obj:`False`)
        pos_channels (int, optional): Number of coordinates :math:`D`.
            (default: :obj:`3`)

    Shapes:
        - **input:** positions :math:`(|\mathcal{V}|, D)`, normals
          :math:`(|\mathcal{V}|, D)` *(optional)*
        - **output:** :math:`(|\mathcal{V}|, F_{out})` with
          :math:`F_{out} = D \cdot (2F + [\text{include\_input}] +
          [\text{use\_normals}])`, stored as :obj:`out_channels`
    """

    def __init__(
        self,
        num_frequencies: int,
        include_input: bool = True,
        use_normals: bool = False,
        pos_channels: int = 3,
    ) -> None:
        super().__init__()
        if isinstance(num_frequencies, bool) or not isinstance(num_frequencies, int) \
                or num_frequencies < 0:
            raise ValueError(
                f"'num_frequencies' must be a non-negative int, got {num_frequencies!r}."
            )
        self.num_frequencies = num_frequencies
        self.include_input = include_input
        self.use_normals = use_normals
        self.pos_channels = pos_channels

        frequencies = torch.pi * 2.0 ** torch.arange(num_frequencies, dtype=torch.float)
        self.register_buffer("frequencies", frequencies, persistent=False)

        self.out_channels = pos_channels * (2 * num_frequencies + int(include_input)
                                            + int(use_normals))

    def reset_parameters(self) -> None:
        pass

    def forward(self, pos: Tensor, normal: Optional[Tensor] = None) -> Tensor:
        """Encode ``pos`` of shape ``[N, D]`` into ``[N, out_channels]``."""
        if pos.dim() != 2 or pos.size(1) != self.pos_channels:
            raise ValueError(
                f"'pos' must have shape [N, {self.pos_channels}], got {tuple(pos.shape)}."
            )
        if self.use_normals and normal is None:
            raise ValueError("'normal' is required because use_normals=True.")
        if not self.use_normals and normal is not None:
            raise ValueError("'normal' was given but use_normals=False, so it would be dropped. "
                             "Create the module with use_normals=True.")
        check_finite(pos, "pos")

        # [N, F, D]: frequency f times coordinate d, flattened frequency-major.
        angles = pos.unsqueeze(1) * self.frequencies.to(pos.dtype).view(1, -1, 1)
        features = [torch.sin(angles).flatten(1), torch.cos(angles).flatten(1)]
        if self.include_input:
            features.insert(0, pos)
        if self.use_normals:
            if normal.shape != pos.shape:
                raise ValueError(f"'normal' must have the shape of 'pos' {tuple(pos.shape)}, "
                                 f"got {tuple(normal.shape)}.")
            features.append(normal.to(pos.dtype))
        return torch.cat(features, dim=-1)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.num_frequencies}, "
                f"include_input={self.include_input}, use_normals={self.use_normals})")


class LocalKNNEmbedding(torch.nn.Module):
    r"""Embed each point from its :math:`k` nearest neighbours in the same
    graph, with a shared MLP and max aggregation, as in PointNet++ (`"PointNet++:
    Deep Hierarchical Feature Learning on Point Sets in a Metric Space"
    <https://arxiv.org/abs/1706.02413>`_).

    .. math::
        \mathbf{h}_i = \max_{j \in \mathcal{N}_k(i) \cup \{ i \}}
        \mathrm{MLP}\left(\mathbf{x}_j \,\Vert\, (\mathbf{p}_j - \mathbf{p}_i)\right)

    The neighbourhoods come from :func:`samsa_geo.ops.knn_graph`, so a point
    never aggregates points of another graph in the batch, and the layer is PyG's
    :class:`~torch_geometric.nn.conv.PointNetConv` on that graph. A graph with
    at most :math:`k` points gives every point all points of its graph.

    Args:
        in_channels (int): Size of each input feature, :obj:`-1` to infer it
            on the first call, or :obj:`0` if there are no features and
            :meth:`forward` gets ``x=None``.
        out_channels (int): Size of each output sample.
        k (int, optional): Number of neighbours. (default: :obj:`16`)
        hidden_channels (int, optional): Hidden width of the MLP.
            (default: :obj:`out_channels`)
        pos_channels (int, optional): Number of coordinates.
            (default: :obj:`3`)

    Shapes:
        - **input:** features :math:`(|\mathcal{V}|, F_{in})` or :obj:`None`,
          positions :math:`(|\mathcal{V}|, 3)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** :math:`(|\mathcal{V}|, F_{out})`
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        k: int = 16,
        hidden_channels: Optional[int] = None,
        pos_channels: int = 3,
    ) -> None:
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ValueError(f"'k' must be a positive int, got {k!r}.")
        if in_channels < -1:
            raise ValueError(f"'in_channels' must be -1, 0 or positive, got {in_channels}.")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.k = k
        self.hidden_channels = hidden_channels or out_channels
        self.pos_channels = pos_channels

        mlp_in = -1 if in_channels == -1 else in_channels + pos_channels
        self.mlp = MLP([mlp_in, self.hidden_channels, out_channels], norm=None)
        self.conv = PointNetConv(local_nn=self.mlp, add_self_loops=True)

        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()

    def forward(self, x: Optional[Tensor], pos: Tensor, batch: Optional[Tensor] = None) -> Tensor:
        """Embed points of shape ``[N, pos_channels]`` with features ``x``
        (``[N, in_channels]`` or :obj:`None`) into ``[N, out_channels]``.

        ``batch`` (``[N]``, sorted) assigns points to graphs.
        """
        if x is not None and x.size(0) != pos.size(0):
            raise ValueError(f"'x' has {x.size(0)} rows but 'pos' has {pos.size(0)}. "
                             f"Pass one feature row per point.")
        if x is None and self.in_channels > 0:
            raise ValueError(f"'x' is None but in_channels={self.in_channels}. "
                             f"Create the module with in_channels=0 for positions only.")
        if pos.size(0) == 0:
            return pos.new_zeros(0, self.out_channels)
        if x is not None:
            check_finite(x, "x")

        edge_index = knn_graph(pos, self.k, batch, loop=False)
        return self.conv(x, pos, edge_index)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"k={self.k})")
