"""Graph-level models for molecules: SAMSA inside GPS-style layers, and the
GPS baseline with full multihead attention built from PyG's own layers."""

from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.nn import MLP, GINEConv, GPSConv, global_add_pool

from samsa_geo.encoders import RWSEEncoder
from samsa_geo.nn import SAMSAGPSConv
from samsa_geo.nn.samsa_conv import SamplingInfo

# PyG's ZINC encodes atoms with 28 labels and bonds as 1 (single), 2 (double)
# and 3 (triple). Bond index 0 stays unused, so that labels index the table
# directly.
NUM_ATOM_TYPES = 28
NUM_BOND_TYPES = 4


class MoleculeEmbedding(torch.nn.Module):
    r"""Embeds atom and bond labels and adds a random-walk structural
    encoding (``data.pe`` from PyG's
    :class:`~torch_geometric.transforms.AddRandomWalkPE`) to the atoms.

    Args:
        channels (int): Width.
        walk_length (int, optional): Length of ``data.pe``; :obj:`0` turns
            the encoding off. (default: :obj:`20`)
        num_atom_types (int, optional): Atom vocabulary. (default: :obj:`28`)
        num_bond_types (int, optional): Bond vocabulary. (default: :obj:`4`)
    """

    def __init__(self, channels: int, walk_length: int = 20, num_atom_types: int = NUM_ATOM_TYPES,
                 num_bond_types: int = NUM_BOND_TYPES):
        super().__init__()
        self.walk_length = walk_length
        self.atom = torch.nn.Embedding(num_atom_types, channels)
        self.bond = torch.nn.Embedding(num_bond_types, channels)
        self.pe = RWSEEncoder(walk_length, channels) if walk_length > 0 else None

    def reset_parameters(self):
        self.atom.reset_parameters()
        self.bond.reset_parameters()
        if self.pe is not None:
            self.pe.reset_parameters()

    def forward(self, data: Batch):
        x = self.atom(data.x.view(-1))
        if self.pe is not None:
            if getattr(data, "pe", None) is None:
                raise ValueError(
                    f"The batch has no 'pe' attribute but walk_length={self.walk_length}. Add "
                    f"the transform AddRandomWalkPE({self.walk_length}, attr_name='pe') to the "
                    f"dataset, or create the model with walk_length=0.")
            x = x + self.pe(data.pe, getattr(data, "batch", None))
        edge_attr = self.bond(data.edge_attr.view(-1))
        return x, edge_attr


def _gine(channels: int) -> GINEConv:
    return GINEConv(MLP([channels, channels, channels], norm=None), train_eps=True)


class _GraphModel(torch.nn.Module):
    def __init__(self, out_channels: int, channels: int, num_layers: int, walk_length: int):
        super().__init__()
        self.out_channels = out_channels
        self.channels = channels
        self.num_layers = num_layers
        self.walk_length = walk_length
        self.embedding = MoleculeEmbedding(channels, walk_length)
        self.head = MLP([channels, channels, channels // 2, out_channels], norm=None)

    def reset_parameters(self):
        self.embedding.reset_parameters()
        for layer in self.layers:
            layer.reset_parameters()
        self.head.reset_parameters()

    def forward(self, data: Batch) -> Tensor:
        batch = getattr(data, "batch", None)
        x, edge_attr = self.embedding(data)

        for layer in self.layers:
            x = layer(x, data.edge_index, batch, edge_attr=edge_attr)

        return self.readout(x, data)

    def readout(self, x: Tensor, data: Batch) -> Tensor:
        x = global_add_pool(x, getattr(data, "batch", None), size=getattr(data, "num_graphs", 1))
        return self.head(x)


class SAMSAGraphModel(_GraphModel):
    r"""Graph regressor or classifier whose layers are
    :class:`~samsa_geo.nn.SAMSAGPSConv`: a GINE message passing layer for
    local structure and SAMSA global attention, in which every head attends
    to :math:`k` sampled atoms of the same molecule. The readout sums each
    graph's own nodes.

    Args:
        out_channels (int, optional): Outputs per graph (1 for ZINC).
            (default: :obj:`1`)
        channels (int, optional): Width. (default: :obj:`64`)
        num_layers (int, optional): Number of layers. (default: :obj:`10`)
        heads (int, optional): Attention heads. (default: :obj:`4`)
        k (int, optional): Atoms each head samples per molecule.
            (default: :obj:`16` when :obj:`ratio` is not given)
        ratio (float, optional): Fraction of each molecule each head samples,
            instead of :obj:`k`. (default: :obj:`None`)
        walk_length (int, optional): Length of the random-walk encoding
            ``data.pe``; :obj:`0` turns it off. (default: :obj:`20`)
        dropout (float, optional): Dropout inside the layers.
            (default: :obj:`0.0`)
        **attn_kwargs (optional): Further arguments of
            :class:`~samsa_geo.nn.SAMSAConv`, such as :obj:`num_registers`.

    Shapes:
        - **input:** a PyG :class:`~torch_geometric.data.Batch` in the format
          of PyG's :class:`~torch_geometric.datasets.ZINC`: ``x``
          :math:`(N, 1)` atom labels, ``edge_index`` :math:`(2, E)`,
          ``edge_attr`` :math:`(E)` bond labels, ``pe`` :math:`(N, 20)`.
        - **output:** :math:`(B, \text{out\_channels})`.
    """

    def __init__(self, out_channels: int = 1, channels: int = 64, num_layers: int = 10,
                 heads: int = 4, k: Optional[int] = None, ratio: Optional[float] = None,
                 walk_length: int = 20, dropout: float = 0.0, **attn_kwargs):
        super().__init__(out_channels, channels, num_layers, walk_length)
        if k is None and ratio is None:
            k = 16
        self.heads = heads
        self.k = k
        self.ratio = ratio
        self.layers = torch.nn.ModuleList([
            SAMSAGPSConv(channels, _gine(channels), heads=heads, k=k, ratio=ratio,
                         dropout=dropout, attn_kwargs=attn_kwargs)
            for _ in range(num_layers)
        ])

    def forward(self, data: Batch, return_sampling: bool = False
                ) -> Union[Tensor, Tuple[Tensor, List[SamplingInfo]]]:
        """Return ``[B, out_channels]`` predictions, and with
        :obj:`return_sampling=True` also one :class:`SamplingInfo` per layer
        (the atoms each head sampled)."""
        if not return_sampling:
            return super().forward(data)

        batch = getattr(data, "batch", None)
        x, edge_attr = self.embedding(data)

        sampling = []
        for layer in self.layers:
            x, info = layer(x, data.edge_index, batch, return_sampling=True, edge_attr=edge_attr)
            sampling.append(info)

        return self.readout(x, data), sampling

    def __repr__(self) -> str:
        size = f"k={self.k}" if self.k is not None else f"ratio={self.ratio}"
        return (f"{self.__class__.__name__}({self.out_channels}, channels={self.channels}, "
                f"num_layers={self.num_layers}, heads={self.heads}, {size})")


class GPSGraphModel(_GraphModel):
    r"""The GPS baseline, `"Recipe for a General, Powerful, Scalable Graph
    Transformer" <https://arxiv.org/abs/2205.12454>`_, from PyG's
    :class:`~torch_geometric.nn.conv.GPSConv` with GINE local layers and full
    multihead attention, with the same embedding and readout as
    :class:`SAMSAGraphModel`.

    Args:
        out_channels (int, optional): Outputs per graph. (default: :obj:`1`)
        channels (int, optional): Width. (default: :obj:`64`)
        num_layers (int, optional): Number of layers. (default: :obj:`10`)
        heads (int, optional): Attention heads. (default: :obj:`4`)
        walk_length (int, optional): Length of ``data.pe``.
            (default: :obj:`20`)
        dropout (float, optional): Dropout inside the layers.
            (default: :obj:`0.0`)
    """

    def __init__(self, out_channels: int = 1, channels: int = 64, num_layers: int = 10,
                 heads: int = 4, walk_length: int = 20, dropout: float = 0.0):
        super().__init__(out_channels, channels, num_layers, walk_length)
        self.heads = heads
        self.layers = torch.nn.ModuleList([
            GPSConv(channels, _gine(channels), heads=heads, dropout=dropout, attn_type="multihead")
            for _ in range(num_layers)
        ])

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.out_channels}, channels={self.channels}, "
                f"num_layers={self.num_layers}, heads={self.heads})")
