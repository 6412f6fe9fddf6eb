"""Farthest point sampling (FPS) on a ragged PyG batch.

:func:`fps` dispatches to ``pyg-lib`` or ``torch-cluster`` when one is
installed and otherwise runs a pure-PyTorch path. Every backend starts each
graph at that graph's first row: a random start is realized by swapping the
start point with the first row before the call and mapping the indices back
afterwards. All backends therefore see the same input, break ties the same way
(the lowest row wins, as :func:`torch.argmax` does), and return the same
indices for the same ``generator`` state.

The pure path iterates over selection steps, not over graphs. It groups graphs
whose sizes lie within a factor of two into padded ``[G, L]`` blocks, so memory
stays ``O(N)``. Every step updates the running minimum distance and takes a
row-wise argmax for all graphs of a block at once.

:func:`_fps_reference` is a per-graph Python loop that the tests compare all
paths against.
"""

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from samsa_geo import backend
from samsa_geo.ops.segment import check_finite, resolve_k, resolve_segments


def check_points(points: Tensor, name: str) -> Tensor:
    """Check a point or feature matrix and return it as ``[N, D]``.

    A one-dimensional tensor becomes ``[N, 1]``, as in ``torch-cluster``.

    Raises:
        TypeError: If ``points`` is not a tensor.
        ValueError: If ``points`` is not floating point, has more than two
            dimensions or zero columns, or contains NaN or infinite values.
    """
    if not isinstance(points, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor, got {type(points).__name__}.")
    if points.dim() == 1:
        points = points.view(-1, 1)
    if points.dim() != 2:
        raise ValueError(
            f"'{name}' must have shape [N, D], got shape {tuple(points.shape)}. "
            f"Flatten the trailing dimensions first."
        )
    if points.size(1) == 0:
        raise ValueError(f"'{name}' must have at least one column, got shape {tuple(points.shape)}.")
    if not points.is_floating_point():
        raise ValueError(
            f"'{name}' must have a floating-point dtype, got {points.dtype}. "
            f"Convert it with {name}.float()."
        )
    check_finite(points, name)
    return points


def fps(
    pos: Tensor,
    batch: Optional[Tensor] = None,
    ratio: Optional[float] = 0.5,
    random_start: bool = True,
    *,
    k: Optional[int] = None,
    ptr: Optional[Tensor] = None,
    num_graphs: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""Sample points by farthest point sampling (FPS), per graph, as in
    `"PointNet++: Deep Hierarchical Feature Learning on Point Sets in a Metric
    Space" <https://arxiv.org/abs/1706.02413>`_.

    In graph :math:`b` with points :math:`\mathbf{p}_j`, FPS starts at a point
    :math:`s_1` and adds, one at a time, the point farthest from all points
    chosen so far:

    .. math::
        s_{i+1} = \operatorname*{argmax}_{j} \, \min_{l \le i}
        \| \mathbf{p}_j - \mathbf{p}_{s_l} \|_2^2

    until it has chosen :math:`k_b` points. With ``ratio``,
    :math:`k_b = \lceil \mathrm{ratio} \cdot n_b \rceil`. With ``k``,
    :math:`k_b = \min(k, n_b)`. Ties in the argmax go to the lowest row. With
    ``random_start``, the start point first trades rows with its graph's first
    point, which only changes how ties break.

    Ragged batches: graphs never mix, an empty graph contributes no index, and
    a graph keeps at least one point unless it is empty.

    Backends: ``pyg-lib`` if installed (only for ``ratio``), else
    ``torch-cluster`` if installed, else pure PyTorch. Inside
    :func:`samsa_geo.backend.pure_pytorch` the pure path always runs.

    Args:
        pos (torch.Tensor): ``[N, D]`` point positions (or features).
        batch (torch.Tensor, optional): ``[N]`` sorted graph index of every
            point. (default: :obj:`None`, one graph)
        ratio (float, optional): Fraction of each graph to keep, in (0, 1].
            Ignored when ``k`` is given. (default: :obj:`0.5`)
        random_start (bool, optional): If :obj:`False`, every graph starts at
            its first point, so results are deterministic and identical across
            backends. If :obj:`True`, the start point of each graph is drawn
            uniformly with ``generator``. (default: :obj:`True`)
        k (int, optional): Fixed number of points per graph, keeping all of a
            graph with fewer points. Takes precedence over ``ratio``.
            (default: :obj:`None`)
        ptr (torch.Tensor, optional): ``[B + 1]`` CSR offsets, used instead of
            ``batch``. (default: :obj:`None`)
        num_graphs (int, optional): Number of graphs ``B`` when only ``batch``
            is given, so that trailing graphs can be empty.
            (default: :obj:`None`)
        generator (torch.Generator, optional): Random number generator for the
            start points. (default: :obj:`None`, the global generator)

    Returns:
        ``[M]`` long tensor of row indices into ``pos``, with
        :math:`M = \sum_b k_b`. Indices are grouped by graph in graph order,
        and within a graph listed in selection order (the first is the start
        point).

    Raises:
        ValueError: If ``pos`` contains NaN or infinite values, ``ratio`` lies
            outside (0, 1], ``k <= 0``, or ``batch`` or ``ptr`` is invalid.
    """
    pos = check_points(pos, "pos")
    _, ptr = resolve_segments(pos.size(0), batch, ptr, num_graphs, pos.device)
    sizes = ptr[1:] - ptr[:-1]
    if k is not None:
        ratio = None
    counts = resolve_k(sizes, k=k, ratio=ratio)

    if pos.size(0) == 0:
        return torch.empty(0, dtype=torch.long, device=pos.device)

    if not random_start:
        return _fps_first_start(pos, ptr, counts, ratio)

    start = _draw_start(sizes, generator, pos.device)
    perm = _swap_to_front(ptr, start)
    index = _fps_first_start(pos[perm], ptr, counts, ratio)
    return perm[index]


def _draw_start(sizes: Tensor, generator: Optional[torch.Generator], device: torch.device) -> Tensor:
    """Draw a uniform start row per graph, as an offset inside the graph."""
    rand_device = generator.device if generator is not None else device
    uniform = torch.rand(sizes.numel(), generator=generator, device=rand_device).to(device)
    start = (uniform * sizes).long()
    return torch.minimum(start, (sizes - 1).clamp(min=0))


def _swap_to_front(ptr: Tensor, start: Tensor) -> Tensor:
    """Return the row permutation that swaps each graph's start row with its
    first row."""
    num_nodes = int(ptr[-1])
    nonempty = ptr[1:] > ptr[:-1]
    first = ptr[:-1][nonempty]
    chosen = first + start[nonempty]

    perm = torch.arange(num_nodes, device=ptr.device)
    perm[first] = chosen
    perm[chosen] = first
    return perm


def _fps_first_start(pos: Tensor, ptr: Tensor, counts: Tensor, ratio: Optional[float]) -> Tensor:
    """Run FPS from the first row of every graph on the best backend.

    ``ratio`` is the user's ratio, or :obj:`None` when ``k`` fixed the counts.
    """
    if ratio is not None and has_pyg_lib_op("fps"):
        index = _fps_pyg_lib(pos, ptr, counts, ratio)
        if index is not None:
            return index
    if backend.has("torch_cluster"):
        return _fps_torch_cluster(pos, ptr, counts)
    return _fps_pure(pos, ptr, counts)


def has_pyg_lib_op(name: str) -> bool:
    """Return whether pyg-lib is installed and enabled and provides
    ``pyg_lib.ops.<name>``. PyG 2.8 requires pyg-lib>=0.6 for ``fps`` and
    ``knn``."""
    if not backend.has("pyg_lib"):
        return False
    import pyg_lib

    return hasattr(pyg_lib.ops, name)


def _nonempty_segments(ptr: Tensor, counts: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Drop empty graphs, which the compiled kernels do not handle, and return
    ``(ptr, sizes, counts)`` of the remaining graphs. The rows do not change."""
    sizes = ptr[1:] - ptr[:-1]
    nonempty = sizes > 0
    ptr_nonempty = torch.cat([ptr[:1], ptr[1:][nonempty]])
    return ptr_nonempty, sizes[nonempty], counts[nonempty]


def _fps_pyg_lib(pos: Tensor, ptr: Tensor, counts: Tensor, ratio: float) -> Optional[Tensor]:
    """Call ``pyg_lib.ops.fps``, or return :obj:`None` when its per-graph
    counts would differ from :func:`resolve_k`'s."""
    # NOTE: untested, because pyg-lib>=0.6 was not installable here. The call
    # follows pyg_lib.ops.fps(src, ptr, ratio, random_start) in pyg-lib's main
    # branch, which PyG 2.8's torch_geometric.nn.fps also calls.
    ptr_nonempty, sizes, counts = _nonempty_segments(ptr, counts)

    # pyg-lib's CPU kernel (csrc/ops/cpu/fps_kernel.cpp) keeps
    # ceil(float32(n_b) * ratio) points per graph.
    pyg_lib_counts = torch.ceil(sizes.float() * ratio).long()
    if not torch.equal(pyg_lib_counts, counts):
        return None
    return torch.ops.pyg.fps(pos, ptr_nonempty, float(ratio), False)


def _fps_torch_cluster(pos: Tensor, ptr: Tensor, counts: Tensor) -> Tensor:
    import torch_cluster  # noqa: F401, registers torch.ops.torch_cluster

    ptr_nonempty, sizes, counts = _nonempty_segments(ptr, counts)

    # torch-cluster 1.6.3 keeps ceil(n_b * ratio_b) points per graph and
    # accepts a [B] ratio. A ratio of (k_b - 0.5) / n_b gives exactly k_b, far
    # from any rounding boundary.
    ratio = (counts.double() - 0.5) / sizes.double()
    return torch.ops.torch_cluster.fps(pos.contiguous(), ptr_nonempty, ratio, False)


def _size_buckets(sizes: Tensor) -> List[Tensor]:
    """Group the non-empty graphs into buckets whose sizes lie within a factor
    of two, so that padding a bucket at most doubles its memory."""
    nonempty = torch.nonzero(sizes > 0).view(-1)
    if nonempty.numel() == 0:
        return []
    level = torch.ceil(torch.log2(sizes[nonempty].double())).long()
    return [nonempty[level == value] for value in torch.unique(level)]


def _fps_pure(pos: Tensor, ptr: Tensor, counts: Tensor) -> Tensor:
    sizes = ptr[1:] - ptr[:-1]
    out_ptr = torch.zeros_like(ptr)
    torch.cumsum(counts, dim=0, out=out_ptr[1:])
    out = torch.empty(int(out_ptr[-1]), dtype=torch.long, device=pos.device)

    for graphs in _size_buckets(sizes):
        selected, steps = _fps_block(pos, ptr[graphs], sizes[graphs], counts[graphs])

        offsets = torch.arange(steps, device=pos.device)
        keep = offsets < counts[graphs].unsqueeze(1)
        target = out_ptr[graphs].unsqueeze(1) + offsets
        out[target[keep]] = (selected + ptr[graphs].unsqueeze(1))[keep]
    return out


def _fps_block(pos: Tensor, first: Tensor, sizes: Tensor, counts: Tensor) -> Tuple[Tensor, int]:
    """Run FPS on ``G`` graphs padded to ``[G, L]`` and return the ``[G, S]``
    local indices of the selection steps, with ``S = max(counts)``."""
    num_blocks, length = sizes.numel(), int(sizes.max())
    steps = int(counts.max())
    device = pos.device

    # Gather the graphs into [D, G, L] coordinates. Padding rows repeat the
    # graph's first point and get a distance of -1, so argmax never picks them.
    local = torch.arange(length, device=device)
    valid = local < sizes.unsqueeze(1)
    rows = torch.where(valid, first.unsqueeze(1) + local, first.unsqueeze(1))
    coords = pos[rows].permute(2, 0, 1).contiguous()

    min_dist = torch.full((num_blocks, length), float("inf"), dtype=pos.dtype, device=device)
    min_dist.masked_fill_(~valid, -1.0)
    dist = torch.empty_like(min_dist)
    diff = torch.empty_like(min_dist)

    graph = torch.arange(num_blocks, device=device)
    current = torch.zeros(num_blocks, dtype=torch.long, device=device)
    selected = torch.empty((num_blocks, steps), dtype=torch.long, device=device)
    selected[:, 0] = current

    for step in range(1, steps):
        # Squared distance to the point chosen last, summed over coordinates
        # in order, as torch-cluster and pyg-lib sum it.
        chosen = coords[:, graph, current].unsqueeze(-1)
        torch.sub(coords[0], chosen[0], out=dist)
        dist.mul_(dist)
        for d in range(1, coords.size(0)):
            torch.sub(coords[d], chosen[d], out=diff)
            dist.add_(diff.mul_(diff))

        torch.minimum(min_dist, dist, out=min_dist)
        current = min_dist.argmax(dim=1)
        selected[:, step] = current
    return selected, steps


def _fps_reference(pos: Tensor, ptr: Tensor, counts: Tensor, start: Optional[Tensor] = None) -> Tensor:
    """Run FPS one graph at a time with a plain Python loop.

    Args:
        pos (torch.Tensor): ``[N, D]`` points.
        ptr (torch.Tensor): ``[B + 1]`` CSR offsets.
        counts (torch.Tensor): ``[B]`` number of points to choose per graph.
        start (torch.Tensor, optional): ``[B]`` start row of every graph,
            relative to the graph's first row. (default: all zeros)

    Returns:
        ``[sum(counts)]`` long tensor of row indices, in the layout of
        :func:`fps`.
    """
    out = []
    for b in range(ptr.numel() - 1):
        lo, hi = int(ptr[b]), int(ptr[b + 1])
        count = int(counts[b])
        if count == 0:
            continue
        points = pos[lo:hi]
        current = 0 if start is None else int(start[b])
        chosen = [current]
        min_dist = ((points - points[current]) ** 2).sum(dim=1)
        while len(chosen) < count:
            current = int(torch.argmax(min_dist))
            chosen.append(current)
            min_dist = torch.minimum(min_dist, ((points - points[current]) ** 2).sum(dim=1))
        out.append(torch.tensor(chosen, dtype=torch.long) + lo)
    if not out:
        return torch.empty(0, dtype=torch.long, device=pos.device)
    return torch.cat(out).to(pos.device)
