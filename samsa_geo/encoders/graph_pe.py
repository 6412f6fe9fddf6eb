"""Positional encodings of graph nodes: deterministic Laplacian eigenvectors
and encoders for Laplacian and random-walk encodings.

In PyG 2.8, the output of
:class:`~torch_geometric.transforms.AddLaplacianEigenvectorPE` changes
between calls: it multiplies every eigenvector by a random sign drawn from
torch's global generator, and its sparse path (graphs of 100 nodes or more)
starts ARPACK from a random vector. It also returns fewer than ``k`` columns
for a graph with ``k`` nodes or fewer, so such graphs cannot be batched with
larger ones. :class:`DeterministicLaplacianPE` removes all three problems. :class:`~torch_geometric.transforms.AddRandomWalkPE` is already
deterministic and is used as it is.
"""

import importlib.util
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.nn import MLP
from torch_geometric.nn.norm import BatchNorm
from torch_geometric.transforms import AddLaplacianEigenvectorPE, BaseTransform
from torch_geometric import utils as pyg_utils

from samsa_geo.ops import check_finite, resolve_segments

# Entries within this fraction of an eigenvector's largest magnitude count as
# tied for the sign convention, so that rounding cannot pick another entry.
_SIGN_TIE_TOL = 1e-6


def canonical_sign(vectors: Tensor) -> Tensor:
    """Flip each column of ``vectors`` so that its largest-magnitude entry
    is positive.

    Entries whose magnitude is within a relative ``1e-6`` of the column's
    maximum count as tied, and the one with the lowest row index decides. An
    all-zero column is left unchanged.

    Args:
        vectors (torch.Tensor): ``[N, k]`` eigenvectors as columns.

    Returns:
        ``[N, k]`` tensor, each column multiplied by +1 or -1.
    """
    if vectors.numel() == 0:
        return vectors

    magnitude = vectors.abs()
    column_max = magnitude.max(dim=0, keepdim=True).values
    tied = magnitude >= column_max * (1 - _SIGN_TIE_TOL)

    # argmax over a boolean column returns its first True row.
    first = tied.to(torch.uint8).argmax(dim=0)
    sign = torch.sign(vectors[first, torch.arange(vectors.size(1))])
    sign[sign == 0] = 1
    return vectors * sign


class DeterministicLaplacianPE(BaseTransform):
    r"""Add the eigenvectors of the :math:`k` smallest non-trivial
    eigenvalues of the symmetric normalized Laplacian as node features, with
    the same output on every call.

    .. math::
        \mathbf{L} = \mathbf{I} - \mathbf{D}^{-1/2} \mathbf{A}
        \mathbf{D}^{-1/2}

    It returns the encoding of PyG's
    :class:`~torch_geometric.transforms.AddLaplacianEigenvectorPE` up to the
    sign of each eigenvector, with three changes:

    * Graphs with at most :obj:`dense_max_nodes` nodes use a dense
      eigensolver (:func:`torch.linalg.eigh`, or :func:`numpy.linalg.eig`
      for a directed graph). Larger graphs run PyG's transform, which calls
      ARPACK through SciPy, from a fixed start vector ``v0`` (drawn from a
      NumPy generator seeded with 0).
    * Each eigenvector is multiplied by the sign that makes its
      largest-magnitude entry positive, with ties going to the lowest node
      index. This removes PyG's random sign flip, which runs under a fixed
      seed in a forked generator so that the global torch generator does not
      advance.
    * A graph with fewer than :math:`k + 1` nodes gets zero columns, so the
      output always has :math:`k` columns.

    Eigenvectors of a repeated eigenvalue span a subspace, and only that
    subspace is determined by the graph. The basis that the eigensolver
    returns is repeatable on one machine and library build, but may differ on
    another. The output is always ``float32``.

    Args:
        k (int): Number of eigenvectors.
        attr_name (str, optional): Attribute that stores the ``[N, k]``
            encoding. If :obj:`None`, it is concatenated to ``data.x``.
            (default: :obj:`"laplacian_eigenvector_pe"`)
        is_undirected (bool, optional): If :obj:`True`, the graph is taken as
            undirected and symmetric eigensolvers (``eigh``, ``eigsh``) run.
            If :obj:`False`, they still run when ``edge_index`` is symmetric,
            because PyG's general solver (``eig``) can return a complex,
            non-orthogonal basis for repeated eigenvalues.
            (default: :obj:`False`)
        dense_max_nodes (int, optional): Largest graph that uses the dense
            eigensolver. The default is the size up to which PyG's
            :class:`~torch_geometric.transforms.AddRandomWalkPE` also uses
            dense matrices. (default: :obj:`2000`)
        **kwargs (optional): Passed to :func:`scipy.sparse.linalg.eigsh` or
            :func:`scipy.sparse.linalg.eigs` on the sparse path, for
            example ``tol``.
    """

    def __init__(
        self,
        k: int,
        attr_name: Optional[str] = "laplacian_eigenvector_pe",
        is_undirected: bool = False,
        dense_max_nodes: int = 2000,
        **kwargs: Any,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ValueError(f"'k' must be a positive int, got {k!r}.")
        if "v0" in kwargs:
            raise ValueError("'v0' is set by DeterministicLaplacianPE, so remove it from kwargs.")
        self.k = k
        self.attr_name = attr_name
        self.is_undirected = is_undirected
        self.dense_max_nodes = dense_max_nodes
        self.kwargs = kwargs

    def forward(self, data: Data) -> Data:
        num_nodes = data.num_nodes
        pe = torch.zeros(num_nodes, self.k, device=data.edge_index.device)
        if num_nodes > 1:
            pe = self._eigenvectors(data, num_nodes)

        if self.attr_name is None:
            x = data.x.view(-1, 1) if data.x is not None and data.x.dim() == 1 else data.x
            data.x = pe if x is None else torch.cat([x, pe.to(x.dtype)], dim=-1)
        else:
            data[self.attr_name] = pe
        return data

    def _eigenvectors(self, data: Data, num_nodes: int) -> Tensor:
        edge_weight = data.get("edge_weight")
        symmetric = self.is_undirected or pyg_utils.is_undirected(
            data.edge_index, edge_weight, num_nodes=num_nodes)

        # ARPACK needs k + 1 < num_nodes, so smaller graphs always go dense.
        if num_nodes <= max(self.dense_max_nodes, self.k + 2):
            pe = self._dense_eigenvectors(data.edge_index, edge_weight, num_nodes, symmetric)
        else:
            pe = self._sparse_eigenvectors(data.edge_index, edge_weight, num_nodes, symmetric)

        pe = canonical_sign(pe).float()
        if pe.size(1) < self.k:
            pe = torch.cat([pe, pe.new_zeros(num_nodes, self.k - pe.size(1))], dim=1)
        return pe.to(data.edge_index.device)

    def _dense_eigenvectors(self, edge_index: Tensor, edge_weight: Optional[Tensor],
                            num_nodes: int, symmetric: bool) -> Tensor:
        if edge_weight is not None:
            edge_weight = edge_weight.cpu()
        index, weight = pyg_utils.get_laplacian(edge_index.cpu(), edge_weight,
                                                normalization="sym", num_nodes=num_nodes)
        laplacian = torch.zeros(num_nodes, num_nodes, dtype=torch.float64)
        laplacian.index_put_((index[0], index[1]), weight.cpu().double(), accumulate=True)

        # eigh returns eigenvalues in ascending order. For a directed graph
        # L is not symmetric, and the general solver runs as in PyG.
        if symmetric:
            _, vectors = torch.linalg.eigh(laplacian)
        else:
            values, vectors = np.linalg.eig(laplacian.numpy())
            order = np.argsort(values.real, kind="stable")
            vectors = torch.from_numpy(np.real(vectors[:, order]).copy())
        return vectors[:, 1:self.k + 1]

    def _sparse_eigenvectors(self, edge_index: Tensor, edge_weight: Optional[Tensor],
                             num_nodes: int, symmetric: bool) -> Tensor:
        if importlib.util.find_spec("scipy") is None:
            raise ImportError(
                f"DeterministicLaplacianPE needs 'scipy' for graphs with more than "
                f"dense_max_nodes={self.dense_max_nodes} nodes (got {num_nodes}). Install "
                f"scipy, or raise dense_max_nodes to use the dense solver."
            )

        v0 = np.random.default_rng(0).standard_normal(num_nodes)
        transform = AddLaplacianEigenvectorPE(self.k, attr_name="pe", is_undirected=symmetric,
                                              v0=v0, **self.kwargs)
        transform.SPARSE_THRESHOLD = 0

        # PyG multiplies by random signs, which canonical_sign removes. The
        # fixed seed in a forked generator leaves the global generator as is.
        graph = Data(edge_index=edge_index.cpu(), num_nodes=num_nodes,
                     edge_weight=None if edge_weight is None else edge_weight.cpu())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return transform(graph).pe.double()

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.k}, attr_name={self.attr_name!r})"


class LapPEEncoder(torch.nn.Module):
    r"""Encode Laplacian eigenvector positional encodings into node features.

    Eigenvectors are defined only up to sign. With :obj:`sign_flip`, every
    graph of the batch multiplies each eigenvector by an independent random
    sign during training, as in `"Benchmarking Graph Neural Networks"
    <https://arxiv.org/abs/2003.00982>`_, so the model learns to ignore the
    sign. In evaluation mode nothing is flipped.

    With :obj:`sign_invariant`, the output is invariant to the sign of each
    eigenvector by construction, following SignNet (`"Sign and Basis
    Invariant Networks for Spectral Graph Representation Learning"
    <https://arxiv.org/abs/2202.13013>`_):

    .. math::
        \mathbf{h}_i = \rho\left(\big\Vert_{j=1}^{k}
        \left[\phi(v_{ij}) + \phi(-v_{ij})\right]\right)

    with a shared MLP :math:`\phi: \mathbb{R} \to \mathbb{R}^{H}` applied to
    each entry and a linear :math:`\rho`. Here :math:`\phi` receives one entry
    at a time, so the encoding depends on :math:`|v_{ij}|` only. SignNet's full
    form runs a graph network as :math:`\phi` to keep relative signs.

    Args:
        k (int): Number of eigenvectors, the width of the input.
        out_channels (int): Size of each output sample.
        sign_flip (bool, optional): If :obj:`True`, flip eigenvector signs at
            random per graph in training mode. Ignored when
            :obj:`sign_invariant` is :obj:`True`. (default: :obj:`True`)
        sign_invariant (bool, optional): If :obj:`True`, use the
            sign-invariant encoder. (default: :obj:`False`)
        hidden_channels (int, optional): Width :math:`H` of :math:`\phi`.
            (default: :obj:`16`)

    Shapes:
        - **input:** encodings :math:`(|\mathcal{V}|, k)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})`
    """

    def __init__(
        self,
        k: int,
        out_channels: int,
        sign_flip: bool = True,
        sign_invariant: bool = False,
        hidden_channels: int = 16,
    ) -> None:
        super().__init__()
        self.k = k
        self.out_channels = out_channels
        self.sign_flip = sign_flip
        self.sign_invariant = sign_invariant
        self.hidden_channels = hidden_channels

        if sign_invariant:
            self.phi = MLP([1, hidden_channels, hidden_channels], norm=None)
            self.lin = torch.nn.Linear(k * hidden_channels, out_channels)
        else:
            self.phi = None
            self.lin = torch.nn.Linear(k, out_channels)

        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.phi is not None:
            self.phi.reset_parameters()
        self.lin.reset_parameters()

    def forward(self, pe: Tensor, batch: Optional[Tensor] = None) -> Tensor:
        """Encode ``pe`` of shape ``[N, k]`` into ``[N, out_channels]``.

        Args:
            pe (torch.Tensor): ``[N, k]`` eigenvectors of every node, for
                example from :class:`DeterministicLaplacianPE`.
            batch (torch.Tensor, optional): ``[N]`` sorted graph index of
                every node. (default: :obj:`None`, one graph)
        """
        if pe.dim() != 2 or pe.size(1) != self.k:
            raise ValueError(
                f"'pe' must have shape [N, {self.k}], got {tuple(pe.shape)}. Build it with "
                f"DeterministicLaplacianPE(k={self.k})."
            )
        check_finite(pe, "pe")

        if self.sign_invariant:
            h = self.phi(pe.unsqueeze(-1)) + self.phi(-pe.unsqueeze(-1))
            return self.lin(h.flatten(1))

        if self.training and self.sign_flip:
            pe = pe * self._random_signs(pe, batch)
        return self.lin(pe)

    def _random_signs(self, pe: Tensor, batch: Optional[Tensor]) -> Tensor:
        # One sign per graph and eigenvector, broadcast to the graph's nodes.
        batch, ptr = resolve_segments(pe.size(0), batch, device=pe.device)
        num_graphs = ptr.numel() - 1
        sign = torch.randint(0, 2, (num_graphs, self.k), device=pe.device) * 2 - 1
        return sign.to(pe.dtype)[batch]

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.k}, {self.out_channels}, "
                f"sign_flip={self.sign_flip}, sign_invariant={self.sign_invariant})")


class RWSEEncoder(torch.nn.Module):
    r"""Encode random-walk structural encodings into node features: batch
    normalization of the return probabilities, then a linear layer.

    The input is the output of PyG's
    :class:`~torch_geometric.transforms.AddRandomWalkPE`, the probabilities
    :math:`(\mathbf{RW}^t)_{ii}` of returning to node :math:`i` after
    :math:`t = 1, \dots, T` steps of a random walk, from `"Graph Neural
    Networks with Learnable Structural and Positional Representations"
    <https://arxiv.org/abs/2110.07875>`_.

    Args:
        walk_length (int): Number of steps :math:`T`, the width of the input.
        out_channels (int): Size of each output sample.

    Shapes:
        - **input:** encodings :math:`(|\mathcal{V}|, T)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional, unused)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})`
    """

    def __init__(self, walk_length: int, out_channels: int) -> None:
        super().__init__()
        self.walk_length = walk_length
        self.out_channels = out_channels

        self.norm = BatchNorm(walk_length, allow_single_element=True)
        self.lin = torch.nn.Linear(walk_length, out_channels)

        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.norm.reset_parameters()
        self.lin.reset_parameters()

    def forward(self, pe: Tensor, batch: Optional[Tensor] = None) -> Tensor:
        """Encode ``pe`` of shape ``[N, walk_length]`` into
        ``[N, out_channels]``. The ``batch`` argument is accepted for a
        uniform signature. Batch statistics run over all nodes of the batch.
        """
        if pe.dim() != 2 or pe.size(1) != self.walk_length:
            raise ValueError(
                f"'pe' must have shape [N, {self.walk_length}], got {tuple(pe.shape)}. "
                f"Build it with AddRandomWalkPE(walk_length={self.walk_length})."
            )
        check_finite(pe, "pe")
        if pe.size(0) == 0:
            return pe.new_zeros(0, self.out_channels)
        return self.lin(self.norm(pe))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.walk_length}, {self.out_channels})"
