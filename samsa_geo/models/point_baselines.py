"""Point-cloud baselines trained by the same loop as the SAMSA models: a
full-attention transformer of the same size and a PointNet++-style model."""

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.nn import MLP, PointNetConv, global_max_pool

from samsa_geo.models.full_attention import FullAttentionEncoder
from samsa_geo.models.point import PointStem
from samsa_geo.models.readout import mean_max_readout
from samsa_geo.ops import fps, knn


class FullAttentionPointClassifier(torch.nn.Module):
    r"""The :class:`~samsa_geo.models.SAMSAPointClassifier` architecture with
    full attention over all points of a cloud in place of SAMSA.

    Args:
        num_classes (int): Number of classes.
        channels (int, optional): Model width. (default: :obj:`128`)
        num_layers (int, optional): Number of blocks. (default: :obj:`4`)
        heads (int, optional): Attention heads. (default: :obj:`4`)
        num_frequencies (int, optional): Fourier frequencies.
            (default: :obj:`6`)
        use_normals (bool, optional): Whether normals are inputs.
            (default: :obj:`True`)
        local_k (int, optional): Neighbours of the local embedding.
            (default: :obj:`16`)
        dropout (float, optional): Dropout of the head. (default: :obj:`0.5`)
    """

    def __init__(self, num_classes: int, channels: int = 128, num_layers: int = 4, heads: int = 4,
                 num_frequencies: int = 6, use_normals: bool = True, local_k: int = 16,
                 dropout: float = 0.5):
        super().__init__()
        self.num_classes = num_classes
        self.channels = channels
        self.num_layers = num_layers
        self.heads = heads

        self.stem = PointStem(channels, num_frequencies, use_normals, local_k)
        self.encoder = FullAttentionEncoder(channels, num_layers, heads=heads)
        self.head = MLP([2 * channels, channels, num_classes], dropout=dropout, norm=None)

    def reset_parameters(self):
        self.stem.reset_parameters()
        self.encoder.reset_parameters()
        self.head.reset_parameters()

    def forward(self, data: Batch) -> Tensor:
        batch = getattr(data, "batch", None)
        num_graphs = getattr(data, "num_graphs", 1)

        x = self.stem(data.pos, getattr(data, "normal", None), batch)
        x = self.encoder(x, batch)
        return self.head(mean_max_readout(x, batch, num_graphs))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.num_classes}, channels={self.channels}, "
                f"num_layers={self.num_layers}, heads={self.heads})")


class SetAbstraction(torch.nn.Module):
    r"""One PointNet++ set-abstraction level: farthest point sampling keeps a
    fraction :obj:`ratio` of each cloud, and each kept point pools its
    :obj:`k` nearest neighbours with a shared MLP (PyG's
    :class:`~torch_geometric.nn.conv.PointNetConv`).
    """

    def __init__(self, ratio: float, k: int, channels: list):
        super().__init__()
        self.ratio = ratio
        self.k = k
        self.conv = PointNetConv(MLP(channels, norm=None), add_self_loops=False)

    def reset_parameters(self):
        self.conv.reset_parameters()

    def forward(self, x: Optional[Tensor], pos: Tensor, batch: Tensor):
        index = fps(pos, batch, ratio=self.ratio, random_start=self.training)
        row, col = knn(pos, pos[index], self.k, batch, batch[index])  # row: centre, col: neighbour
        edge_index = torch.stack([col, row], dim=0)

        x_dst = None if x is None else x[index]
        x = self.conv((x, x_dst), (pos, pos[index]), edge_index)
        return x, pos[index], batch[index]


class PointNet2Classifier(torch.nn.Module):
    r"""A PointNet++-style classifier from `"PointNet++: Deep Hierarchical
    Feature Learning on Point Sets in a Metric Space"
    <https://arxiv.org/abs/1706.02413>`_: two set-abstraction levels with
    :math:`k`-nearest-neighbour grouping, a global max pool and an MLP head.

    Args:
        num_classes (int): Number of classes.
        use_normals (bool, optional): Whether normals are input features.
            (default: :obj:`True`)
        k (int, optional): Neighbours per sampled point. (default: :obj:`32`)
        dropout (float, optional): Dropout of the head. (default: :obj:`0.5`)
    """

    def __init__(self, num_classes: int, use_normals: bool = True, k: int = 32, dropout: float = 0.5):
        super().__init__()
        self.num_classes = num_classes
        self.use_normals = use_normals
        self.k = k

        in_channels = 3 if use_normals else 0
        self.sa1 = SetAbstraction(0.5, k, [in_channels + 3, 64, 64, 128])
        self.sa2 = SetAbstraction(0.25, k, [128 + 3, 128, 128, 256])
        self.lin_global = MLP([256 + 3, 256, 512], norm=None)
        self.head = MLP([512, 256, num_classes], dropout=dropout, norm=None)

    def reset_parameters(self):
        for module in (self.sa1, self.sa2, self.lin_global, self.head):
            module.reset_parameters()

    def forward(self, data: Batch) -> Tensor:
        batch = data.batch if getattr(data, "batch", None) is not None \
            else data.pos.new_zeros(data.pos.size(0), dtype=torch.long)
        x = data.normal if self.use_normals else None

        x, pos, batch = self.sa1(x, data.pos, batch)
        x, pos, batch = self.sa2(x, pos, batch)

        x = self.lin_global(torch.cat([x, pos], dim=-1))
        x = global_max_pool(x, batch, size=getattr(data, "num_graphs", 1))
        return self.head(x)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.num_classes}, k={self.k})"
