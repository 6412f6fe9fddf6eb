"""Point-cloud classification with SAMSA global attention."""

from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.nn import MLP

from samsa_geo.encoders import FourierPointEncoding, LocalKNNEmbedding
from samsa_geo.models.readout import mean_max_readout
from samsa_geo.nn import SAMSAEncoder
from samsa_geo.nn.samsa_conv import SamplingInfo


class PointStem(torch.nn.Module):
    r"""Turns raw points into tokens of width ``channels``: a Fourier-feature
    encoding of the coordinates (and normals), then either a local
    :math:`k`-nearest-neighbour embedding or a linear layer.

    Args:
        channels (int): Output width.
        num_frequencies (int, optional): Frequencies of the Fourier features.
            (default: :obj:`6`)
        use_normals (bool, optional): Whether ``data.normal`` is an input.
            (default: :obj:`True`)
        local_k (int, optional): Neighbours of the local embedding; :obj:`0`
            replaces it by a linear layer. (default: :obj:`16`)
    """

    def __init__(self, channels: int, num_frequencies: int = 6, use_normals: bool = True,
                 local_k: int = 16):
        super().__init__()
        self.channels = channels
        self.num_frequencies = num_frequencies
        self.use_normals = use_normals
        self.local_k = local_k

        self.encoding = FourierPointEncoding(num_frequencies, use_normals=use_normals)
        if local_k > 0:
            self.embed = LocalKNNEmbedding(self.encoding.out_channels, channels, k=local_k)
        else:
            self.embed = torch.nn.Linear(self.encoding.out_channels, channels)

    def reset_parameters(self):
        self.embed.reset_parameters()

    def forward(self, pos: Tensor, normal: Optional[Tensor], batch: Optional[Tensor]) -> Tensor:
        features = self.encoding(pos, normal if self.use_normals else None)
        if self.local_k > 0:
            return self.embed(features, pos, batch)
        return self.embed(features)


class SAMSAPointClassifier(torch.nn.Module):
    r"""Point-cloud classifier built from SAMSA blocks.

    Every cloud goes through :class:`PointStem`, a stack of
    :class:`~samsa_geo.nn.SAMSABlock` layers (pre-norm transformer blocks whose
    attention heads each attend to :math:`k` sampled points of the same
    cloud), a readout that concatenates each cloud's mean and maximum over its
    own points, and an MLP head.

    Args:
        num_classes (int): Number of classes.
        channels (int, optional): Model width. (default: :obj:`128`)
        num_layers (int, optional): Number of SAMSA blocks. (default: :obj:`4`)
        heads (int, optional): Attention heads per block. (default: :obj:`4`)
        k (int, optional): Points each head samples per cloud.
            (default: :obj:`128` when :obj:`ratio` is not given)
        ratio (float, optional): Fraction of each cloud each head samples,
            instead of :obj:`k`. (default: :obj:`None`)
        num_frequencies (int, optional): Fourier frequencies of the point
            encoding. (default: :obj:`6`)
        use_normals (bool, optional): Whether normals are inputs.
            (default: :obj:`True`)
        local_k (int, optional): Neighbours of the local embedding before the
            global layers; :obj:`0` disables it. (default: :obj:`16`)
        dropout (float, optional): Dropout of the classification head.
            (default: :obj:`0.5`)
        drop_path (float, optional): Drop-path rate of the last block.
            (default: :obj:`0.1`)
        **kwargs (optional): Further arguments of
            :class:`~samsa_geo.nn.SAMSAEncoder`, such as :obj:`num_registers`
            or :obj:`hard`.

    Shapes:
        - **input:** a PyG :class:`~torch_geometric.data.Batch` with
          ``pos`` :math:`(N, 3)`, ``normal`` :math:`(N, 3)` and ``batch``
          :math:`(N)`.
        - **output:** logits :math:`(B, \text{num\_classes})`.
    """

    def __init__(self, num_classes: int, channels: int = 128, num_layers: int = 4, heads: int = 4,
                 k: Optional[int] = None, ratio: Optional[float] = None, num_frequencies: int = 6,
                 use_normals: bool = True, local_k: int = 16, dropout: float = 0.5,
                 drop_path: float = 0.1, **kwargs):
        super().__init__()
        if k is None and ratio is None:
            k = 128

        self.num_classes = num_classes
        self.channels = channels
        self.num_layers = num_layers
        self.heads = heads
        self.k = k
        self.ratio = ratio
        self.dropout = dropout

        self.stem = PointStem(channels, num_frequencies, use_normals, local_k)
        self.encoder = SAMSAEncoder(channels, num_layers, heads=heads, k=k, ratio=ratio,
                                    drop_path=drop_path, **kwargs)
        self.head = MLP([2 * channels, channels, num_classes], dropout=dropout, norm=None)

    def reset_parameters(self):
        self.stem.reset_parameters()
        self.encoder.reset_parameters()
        self.head.reset_parameters()

    def forward(self, data: Batch, return_sampling: bool = False
                ) -> Union[Tensor, Tuple[Tensor, List[SamplingInfo]]]:
        batch = getattr(data, "batch", None)
        num_graphs = getattr(data, "num_graphs", 1)

        x = self.stem(data.pos, getattr(data, "normal", None), batch)
        x, sampling = self.encoder(x, batch=batch, num_graphs=num_graphs, return_sampling=True)
        logits = self.head(mean_max_readout(x, batch, num_graphs))

        if return_sampling:
            return logits, sampling
        return logits

    def __repr__(self) -> str:
        size = f"k={self.k}" if self.k is not None else f"ratio={self.ratio}"
        return (f"{self.__class__.__name__}({self.num_classes}, channels={self.channels}, "
                f"num_layers={self.num_layers}, heads={self.heads}, {size})")
