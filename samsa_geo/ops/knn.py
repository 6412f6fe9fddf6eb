"""k-nearest-neighbour search on a ragged PyG batch: :func:`knn` between two
point sets and :func:`knn_graph` within one.

:func:`knn` dispatches to ``pyg-lib`` or ``torch-cluster`` when one is
installed and otherwise runs a pure-PyTorch search that never builds the full
``[M, N]`` distance matrix and keeps every step below ``chunk_size``
distances:

* **tiled** (graphs with at least :data:`TILE_MIN_POINTS` points in ``x`` and
  at most three columns): points and queries are ordered into the leaves of a
  k-d tree. Each tile of queries then searches only the point tiles whose
  bounding boxes may contain one of its ``k`` nearest neighbours.
* **brute force** (all other graphs): graphs of similar size are padded into
  blocks, and the queries of large graphs are split into row chunks.

Both rank candidates by the matrix-product form of the squared distance, then
recompute the exact squared distance of a few extra candidates and sort them
again, so that rounding in the matrix product does not reorder close
neighbours.

:func:`_knn_reference` is a per-graph loop over :func:`torch.cdist` and a full
sort, which the tests compare all paths against.
"""

from typing import Iterator, List, Optional, Tuple

import torch
from torch import Tensor

from samsa_geo import backend
from samsa_geo.ops.fps import check_points, has_pyg_lib_op
from samsa_geo.ops.segment import resolve_k, resolve_segments

# Default cap on the number of pairwise distances one step of the pure path
# computes at once (16 MiB in float32).
DEFAULT_CHUNK_SIZE = 1 << 22

# Extra candidates per query that the pure path re-ranks by exact distance.
_REFINE_EXTRA = 4

# Graphs with at least this many points in ``x`` and at most three columns
# take the tiled search of the pure path instead of brute force.
TILE_MIN_POINTS = 2048

# Points per tile and queries per tile of the tiled search. Small query tiles
# keep each tile's search radius close to its queries' own k-th distances.
_TILE_SIZE = 32
_QUERY_TILE_SIZE = 8

# Extra point tiles, beyond the ones needed to hold k points, whose points
# set a query tile's search radius.
_SEED_EXTRA = 3

# Box pruning loses its power in more dimensions, so wider inputs take brute
# force.
_TILE_MAX_DIM = 3

_FLOWS = ("source_to_target", "target_to_source")


def knn(
    x: Tensor,
    y: Tensor,
    k: int,
    batch_x: Optional[Tensor] = None,
    batch_y: Optional[Tensor] = None,
    cosine: bool = False,
    num_workers: int = 1,
    *,
    ptr_x: Optional[Tensor] = None,
    ptr_y: Optional[Tensor] = None,
    num_graphs: Optional[int] = None,
    chunk_size: Optional[int] = None,
) -> Tensor:
    r"""Find, for every point in ``y``, the ``k`` nearest points of ``x`` in
    the same graph, by Euclidean distance.

    Ragged batches: the query ``y[i]`` of graph ``b`` is only compared with
    the points of ``x`` in graph ``b``. It gets :math:`\min(k, n^x_b)` neighbours, so a graph
    with fewer than ``k`` points in ``x`` returns all of them, and a query in a
    graph without points in ``x`` gets none.

    Backends: ``pyg-lib`` if installed, else ``torch-cluster`` if installed
    (both use a k-d tree on CPU), else a pure-PyTorch search.
    Inside :func:`samsa_geo.backend.pure_pytorch` the pure path always runs.

    Args:
        x (torch.Tensor): ``[N, D]`` points to search in.
        y (torch.Tensor): ``[M, D]`` query points.
        k (int): Number of neighbours per query.
        batch_x (torch.Tensor, optional): ``[N]`` sorted graph index of every
            row of ``x``. (default: :obj:`None`, one graph)
        batch_y (torch.Tensor, optional): ``[M]`` sorted graph index of every
            row of ``y``. (default: :obj:`None`, one graph)
        cosine (bool, optional): Only :obj:`False` is supported. For cosine
            distance, normalize ``x`` and ``y`` to unit length first, which
            gives the same neighbours under Euclidean distance.
            (default: :obj:`False`)
        num_workers (int, optional): Number of CPU threads ``torch-cluster``
            may use for a single graph. The other backends ignore it.
            (default: :obj:`1`)
        ptr_x (torch.Tensor, optional): ``[B + 1]`` CSR offsets of ``x``,
            used instead of ``batch_x``. (default: :obj:`None`)
        ptr_y (torch.Tensor, optional): ``[B + 1]`` CSR offsets of ``y``,
            used instead of ``batch_y``. (default: :obj:`None`)
        num_graphs (int, optional): Number of graphs ``B``, so that trailing
            graphs can be empty. (default: the larger count of ``batch_x``
            and ``batch_y``)
        chunk_size (int, optional): Number of pairwise distances the pure
            path computes at once, exceeded only when a single query row or
            query tile needs more. (default: :obj:`4194304`)

    Returns:
        ``[2, E]`` long tensor ``assign_index``. Row 0 indexes ``y`` (the
        query) and row 1 indexes ``x`` (the neighbour), as in PyG. Edges are
        sorted by query and, within a query, by ascending distance. Equal
        distances come in no fixed order.

    Raises:
        ValueError: If ``x`` or ``y`` contains NaN or infinite values, their
            numbers of columns differ, ``k <= 0``, ``cosine=True``, or the
            batch vectors are invalid or describe different numbers of graphs.
    """
    x = check_points(x, "x")
    y = check_points(y, "y")
    if x.size(1) != y.size(1):
        raise ValueError(
            f"'x' and 'y' must have the same number of columns, got x with shape "
            f"{tuple(x.shape)} and y with shape {tuple(y.shape)}."
        )
    if cosine:
        raise ValueError(
            "cosine=True is not supported. Normalize 'x' and 'y' to unit length "
            "and call knn with cosine=False, which returns the same neighbours."
        )
    _check_k(k)
    chunk_size = _check_chunk_size(chunk_size)

    ptr_x, ptr_y = _resolve_pair(x, y, batch_x, batch_y, ptr_x, ptr_y, num_graphs)
    if x.size(0) == 0 or y.size(0) == 0:
        return torch.empty((2, 0), dtype=torch.long, device=y.device)

    if has_pyg_lib_op("knn"):
        return _knn_pyg_lib(x, y, k, ptr_x, ptr_y, num_workers)
    if backend.has("torch_cluster"):
        return _knn_torch_cluster(x, y, k, ptr_x, ptr_y, num_workers)
    return _knn_pure(x, y, k, ptr_x, ptr_y, chunk_size)


def knn_graph(
    x: Tensor,
    k: int,
    batch: Optional[Tensor] = None,
    loop: bool = False,
    flow: str = "source_to_target",
    cosine: bool = False,
    num_workers: int = 1,
    *,
    ptr: Optional[Tensor] = None,
    num_graphs: Optional[int] = None,
    chunk_size: Optional[int] = None,
) -> Tensor:
    r"""Build the k-nearest-neighbour graph of a ragged batch of point sets.

    Every point :math:`i` receives edges from its :math:`k` nearest points
    :math:`j` in the same graph, by Euclidean distance, with the semantics of
    ``torch_cluster.knn_graph``. Without ``loop``, a node gets
    :math:`\min(k, n_b - 1)` neighbours and never itself. With ``loop``, it
    gets :math:`\min(k, n_b)` neighbours, normally including itself at
    distance zero, though a duplicate point may take that place.

    Args:
        x (torch.Tensor): ``[N, D]`` point positions or features.
        k (int): Number of neighbours per node.
        batch (torch.Tensor, optional): ``[N]`` sorted graph index of every
            node. (default: :obj:`None`, one graph)
        loop (bool, optional): If :obj:`True`, the graph contains self-loops.
            (default: :obj:`False`)
        flow (str, optional): ``"source_to_target"`` returns edges
            ``(j, i)`` from neighbour to query, the direction PyG's message
            passing aggregates over. ``"target_to_source"`` returns ``(i, j)``.
            (default: :obj:`"source_to_target"`)
        cosine (bool, optional): Only :obj:`False` is supported, see
            :func:`knn`. (default: :obj:`False`)
        num_workers (int, optional): Passed to ``torch-cluster``.
            (default: :obj:`1`)
        ptr (torch.Tensor, optional): ``[B + 1]`` CSR offsets, used instead of
            ``batch``. (default: :obj:`None`)
        num_graphs (int, optional): Number of graphs ``B`` when only ``batch``
            is given. (default: :obj:`None`)
        chunk_size (int, optional): Number of pairwise distances the pure
            path computes at once, exceeded only when a single query row or
            query tile needs more. (default: :obj:`4194304`)

    Returns:
        ``[2, E]`` long tensor ``edge_index``. Edges are grouped by the query
        node ``i`` in node order and, within a node, sorted by ascending
        distance.

    Raises:
        ValueError: If ``flow`` is not one of the two names above, or for any
            reason :func:`knn` raises.
    """
    if flow not in _FLOWS:
        raise ValueError(f"'flow' must be one of {_FLOWS}, got {flow!r}.")
    _check_k(k)

    x = check_points(x, "x")
    ptr = resolve_segments(x.size(0), batch, ptr, num_graphs, x.device)[1]
    neighbours = k if loop else k + 1
    row, col = knn(
        x, x, neighbours, cosine=cosine, num_workers=num_workers,
        ptr_x=ptr, ptr_y=ptr, chunk_size=chunk_size,
    )

    if not loop:
        not_self = row != col
        row, col = row[not_self], col[not_self]
        row, col = _first_per_query(row, col, k, x.size(0))

    if flow == "source_to_target":
        return torch.stack([col, row], dim=0)
    return torch.stack([row, col], dim=0)


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"'k' must be a positive int, got {k!r}.")


def _check_chunk_size(chunk_size: Optional[int]) -> int:
    if chunk_size is None:
        return DEFAULT_CHUNK_SIZE
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(
            f"'chunk_size' must be a positive int (a number of distances), got {chunk_size!r}."
        )
    return chunk_size


def _resolve_pair(
    x: Tensor,
    y: Tensor,
    batch_x: Optional[Tensor],
    batch_y: Optional[Tensor],
    ptr_x: Optional[Tensor],
    ptr_y: Optional[Tensor],
    num_graphs: Optional[int],
) -> Tuple[Tensor, Tensor]:
    """Resolve the segments of ``x`` and ``y`` to two ``ptr`` vectors with the
    same number of graphs, padding trailing empty graphs where one side ends
    early."""
    split_x = batch_x is not None or ptr_x is not None
    split_y = batch_y is not None or ptr_y is not None
    ptr_x = resolve_segments(x.size(0), batch_x, ptr_x, num_graphs, x.device)[1]
    ptr_y = resolve_segments(y.size(0), batch_y, ptr_y, num_graphs, y.device)[1]

    graphs_x, graphs_y = ptr_x.numel() - 1, ptr_y.numel() - 1
    if graphs_x != graphs_y and split_x != split_y:
        raise ValueError(
            f"'x' is split into {graphs_x} graph(s) but 'y' into {graphs_y}. Pass both "
            f"'batch_x' and 'batch_y' (or 'ptr_x' and 'ptr_y') so that every query has a graph."
        )

    graphs = max(graphs_x, graphs_y)
    ptr_x = torch.cat([ptr_x, ptr_x[-1:].expand(graphs - graphs_x)])
    ptr_y = torch.cat([ptr_y, ptr_y[-1:].expand(graphs - graphs_y)])
    return ptr_x, ptr_y


def _first_per_query(row: Tensor, col: Tensor, k: int, num_nodes: int) -> Tuple[Tensor, Tensor]:
    """Keep the first ``k`` edges of every query. Edges are sorted by query,
    so this drops the farthest one when a duplicate point displaced the query
    itself from its ``k + 1`` neighbours."""
    degree = torch.bincount(row, minlength=num_nodes)
    start = torch.cumsum(degree, dim=0) - degree
    rank = torch.arange(row.numel(), device=row.device) - start[row]
    keep = rank < k
    return row[keep], col[keep]


def _knn_pyg_lib(x: Tensor, y: Tensor, k: int, ptr_x: Tensor, ptr_y: Tensor, num_workers: int) -> Tensor:
    # NOTE: untested, because pyg-lib>=0.6 was not installable here. The call
    # follows torch.ops.pyg.knn(x, y, ptr_x, ptr_y, k, cosine, num_workers) in
    # pyg-lib's main branch, whose CPU kernel returns (query, neighbour) rows
    # like torch-cluster's and skips graphs that are empty on either side.
    return torch.ops.pyg.knn(x.contiguous(), y.contiguous(), ptr_x, ptr_y, k, False, num_workers)


def _knn_torch_cluster(x: Tensor, y: Tensor, k: int, ptr_x: Tensor, ptr_y: Tensor, num_workers: int) -> Tensor:
    import torch_cluster  # noqa: F401, registers torch.ops.torch_cluster

    if ptr_x.numel() == 2:
        return torch.ops.torch_cluster.knn(x.contiguous(), y.contiguous(), None, None, k, False, num_workers)
    return torch.ops.torch_cluster.knn(x.contiguous(), y.contiguous(), ptr_x, ptr_y, k, False, num_workers)


def _knn_pure(
    x: Tensor,
    y: Tensor,
    k: int,
    ptr_x: Tensor,
    ptr_y: Tensor,
    chunk_size: int,
    tile_min_points: int = TILE_MIN_POINTS,
) -> Tensor:
    sizes_x = ptr_x[1:] - ptr_x[:-1]
    sizes_y = ptr_y[1:] - ptr_y[:-1]
    counts = resolve_k(sizes_x, k=k)

    # Every query owns a contiguous run of ``counts[b]`` output slots.
    query_counts = torch.repeat_interleave(counts, sizes_y, output_size=y.size(0))
    slot_start = torch.cumsum(query_counts, dim=0) - query_counts
    out = torch.empty((2, int(query_counts.sum())), dtype=torch.long, device=y.device)

    tiled = (sizes_x >= tile_min_points) & (sizes_y > 0)
    if x.size(1) > _TILE_MAX_DIM:
        tiled.zero_()

    for graph in torch.nonzero(tiled).view(-1).tolist():
        for query, neighbour, real in _knn_tiled(x, y, k, int(ptr_x[graph]), int(sizes_x[graph]),
                                                 int(ptr_y[graph]), int(sizes_y[graph]), chunk_size):
            _write_edges(out, slot_start, query, neighbour, real)

    brute_sizes_x = sizes_x.masked_fill(tiled, 0)
    for graphs, row_lo, row_hi in _blocks(brute_sizes_x, sizes_y, chunk_size):
        query, neighbour, real = _knn_block(x, y, k, ptr_x[graphs], sizes_x[graphs],
                                            ptr_y[graphs], sizes_y[graphs], row_lo, row_hi)
        _write_edges(out, slot_start, query, neighbour, real)
    return out


def _write_edges(out: Tensor, slot_start: Tensor, query: Tensor, neighbour: Tensor, real: Tensor) -> None:
    """Write ``[..., K]`` neighbours of ``[...]`` queries into their slots,
    skipping entries where ``real`` is :obj:`False`."""
    rank = torch.arange(neighbour.size(-1), device=out.device)
    slots = slot_start[query].unsqueeze(-1) + rank
    out[0, slots[real]] = query.unsqueeze(-1).expand_as(neighbour)[real]
    out[1, slots[real]] = neighbour[real]


def _blocks(sizes_x: Tensor, sizes_y: Tensor, chunk_size: int) -> Iterator[Tuple[Tensor, int, int]]:
    """Yield ``(graphs, row_lo, row_hi)`` blocks that together cover every
    query row of every graph with points in ``x``.

    Graphs whose sizes in ``x`` and in ``y`` both lie within a factor of two
    share a bucket and get padded together. A block of ``G`` graphs covers
    query rows ``row_lo:row_hi`` of each and computes at most ``chunk_size``
    distances, unless a single query row of a single graph exceeds it.
    """
    active = torch.nonzero((sizes_x > 0) & (sizes_y > 0)).view(-1)
    if active.numel() == 0:
        return
    level_x = torch.ceil(torch.log2(sizes_x[active].double())).long()
    level_y = torch.ceil(torch.log2(sizes_y[active].double())).long()
    bucket = level_x * 64 + level_y

    for value in torch.unique(bucket).tolist():
        graphs = active[bucket == value]
        length_x = int(sizes_x[graphs].max())
        length_y = int(sizes_y[graphs].max())
        rows_per_block = max(1, chunk_size // length_x)

        if length_y <= rows_per_block:
            graphs_per_block = rows_per_block // length_y
            for part in graphs.split(graphs_per_block):
                yield part, 0, length_y
            continue

        for graph in graphs.split(1):
            rows = int(sizes_y[graph])
            for row_lo in range(0, rows, rows_per_block):
                yield graph, row_lo, min(rows, row_lo + rows_per_block)


def _pad_rows(points: Tensor, first: Tensor, sizes: Tensor, lo: int, hi: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Gather rows ``lo:hi`` of ``G`` graphs into ``[G, hi - lo, D]``. Padding
    repeats each graph's first row. Also return the ``[G, hi - lo]`` global row
    indices, which are the first row at padding, and the validity mask."""
    local = torch.arange(lo, hi, device=points.device)
    valid = local < sizes.unsqueeze(1)
    rows = torch.where(valid, first.unsqueeze(1) + local, first.unsqueeze(1))
    return points[rows], rows, valid


def _knn_block(
    x: Tensor,
    y: Tensor,
    k: int,
    first_x: Tensor,
    sizes_x: Tensor,
    first_y: Tensor,
    sizes_y: Tensor,
    row_lo: int,
    row_hi: int,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Search one block and return ``query [G, R]``, ``neighbour [G, R, K]``
    and the ``[G, R, K]`` mask of entries that are real neighbours."""
    points, _, valid_x = _pad_rows(x, first_x, sizes_x, 0, int(sizes_x.max()))
    queries, query_rows, valid_y = _pad_rows(y, first_y, sizes_y, row_lo, row_hi)

    # Center each graph on its first point, so that the matrix-product form
    # |q|^2 - 2 q.p + |p|^2 loses less precision far from the origin.
    center = points[:, :1]
    points, queries = points - center, queries - center
    approx = _approx_sq_dist(points, queries)
    approx.masked_fill_(~valid_x.unsqueeze(1), float("inf"))

    local = _refine(approx, points, queries, valid_x, k)
    rank = torch.arange(local.size(-1), device=x.device)
    real = valid_y.unsqueeze(-1) & (rank < torch.clamp(sizes_x, max=k).view(-1, 1, 1))
    return query_rows, local + first_x.view(-1, 1, 1), real


def _approx_sq_dist(points: Tensor, queries: Tensor) -> Tensor:
    """Return ``[G, R, L]`` squared distances between ``[G, R, D]`` queries
    and ``[G, L, D]`` points in the matrix-product form."""
    approx = torch.baddbmm(
        points.square().sum(-1).unsqueeze(1), queries, points.transpose(1, 2), alpha=-2.0
    )
    return approx.add_(queries.square().sum(-1).unsqueeze(-1))


def _refine(
    approx: Tensor,
    points: Tensor,
    queries: Tensor,
    real: Tensor,
    k: int,
    rows: Optional[Tensor] = None,
) -> Tensor:
    """Return the ``[G, R, min(k, L)]`` columns of the nearest points, in
    ascending exact distance.

    Args:
        approx (torch.Tensor): ``[G, R, L]`` approximate squared distances
            between ``[G, R, D]`` queries and ``[G, L, D]`` points, ``inf``
            where ``real`` is :obj:`False`.
        real (torch.Tensor): ``[G, L]`` mask of the columns that are real
            candidates.
        rows (torch.Tensor, optional): ``[G, L]`` original rows of the
            columns. Ties go to the lower row. (default: the column index)
    """
    # Take a few extra candidates by the approximate distance, then rank them
    # by the exact squared distance.
    num_queries = queries.size(1)
    candidates = min(k + _REFINE_EXTRA, points.size(1))
    candidate = approx.topk(candidates, dim=-1, largest=False, sorted=False).indices
    if rows is None:
        candidate, _ = candidate.sort(dim=-1)
    else:
        key = torch.gather(rows.unsqueeze(1).expand(-1, num_queries, -1), 2, candidate)
        candidate = torch.gather(candidate, -1, key.argsort(dim=-1))

    flat = candidate.flatten(1).unsqueeze(-1).expand(-1, -1, points.size(-1))
    gathered = torch.gather(points, 1, flat).view(*candidate.shape, -1)
    exact = (gathered - queries.unsqueeze(2)).square().sum(-1)
    candidate_real = torch.gather(real.unsqueeze(1).expand(-1, num_queries, -1), 2, candidate)
    exact.masked_fill_(~candidate_real, float("inf"))

    order = exact.argsort(dim=-1, stable=True)[..., : min(k, points.size(1))]
    return torch.gather(candidate, -1, order)


def _kd_order(points: Tensor, tile_size: int) -> Tensor:
    """Return a permutation of ``[n, D]`` points whose consecutive runs of
    ``tile_size`` rows are the leaves of a k-d tree, so that each run is
    spatially compact. Only the last run may be shorter.

    Every level sorts each segment along its widest axis and splits it after
    ``ceil(T / 2)`` tiles, where ``T`` is the segment's tile count. All
    segments of a level are sorted together by one key, the segment index plus
    the coordinate scaled to [0, 1].
    """
    count, dim = points.shape
    device = points.device
    perm = torch.arange(count, device=device)
    starts = torch.zeros(1, dtype=torch.long, device=device)

    while True:
        ends = torch.cat([starts[1:], starts.new_tensor([count])])
        lengths = ends - starts
        if int(lengths.max()) <= tile_size:
            return perm

        segment = torch.repeat_interleave(torch.arange(starts.numel(), device=device), lengths)
        ordered = points[perm]
        index = segment.unsqueeze(1).expand(-1, dim)
        low = ordered.new_full((starts.numel(), dim), float("inf")).scatter_reduce(0, index, ordered, "amin")
        high = ordered.new_full((starts.numel(), dim), float("-inf")).scatter_reduce(0, index, ordered, "amax")
        axis = (high - low).argmax(dim=1)

        extent = (high - low).gather(1, axis.unsqueeze(1)).squeeze(1).clamp(min=torch.finfo(points.dtype).tiny)
        coord = ordered.gather(1, axis[segment].unsqueeze(1)).squeeze(1)
        scaled = ((coord - low.gather(1, axis.unsqueeze(1)).squeeze(1)[segment]) / extent[segment]).double()
        perm = perm[(segment.double() * 2.0 + scaled.clamp(0.0, 1.0)).argsort()]

        split = lengths > tile_size
        tiles = -(-lengths[split] // tile_size)
        middle = starts[split] + (-(-tiles // 2)) * tile_size
        starts = torch.cat([starts, middle]).sort().values


def _tile(points: Tensor, size: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Cut ``[n, D]`` points into ``[T, size, D]`` tiles, padding the last tile
    with copies of the last point, and return the tiles, their ``[T, size]``
    real-row mask and their ``[T, D]`` bounding-box corners."""
    count = points.size(0)
    num_tiles = -(-count // size)
    padded = torch.cat([points, points[-1:].expand(num_tiles * size - count, -1)])
    tiles = padded.view(num_tiles, size, -1)
    real = (torch.arange(num_tiles * size, device=points.device) < count).view(num_tiles, size)
    return tiles, real, tiles.amin(dim=1), tiles.amax(dim=1)


def _box_sq_dist(low_a: Tensor, high_a: Tensor, low_b: Tensor, high_b: Tensor) -> Tensor:
    """Return ``[A, B]`` squared distances between axis-aligned boxes, a lower
    bound for the squared distance of any two points inside them."""
    gap = torch.maximum(low_b.unsqueeze(0) - high_a.unsqueeze(1), low_a.unsqueeze(1) - high_b.unsqueeze(0))
    return gap.clamp_(min=0).square_().sum(-1)


def _knn_tiled(
    x: Tensor,
    y: Tensor,
    k: int,
    first_x: int,
    size_x: int,
    first_y: int,
    size_y: int,
    chunk_size: int,
) -> Iterator[Tuple[Tensor, Tensor, Tensor]]:
    """Search one large low-dimensional graph exactly, tile by tile.

    Points and queries are ordered by :func:`_kd_order` and cut into tiles of
    ``_TILE_SIZE`` points and ``_QUERY_TILE_SIZE`` queries. For a query tile, the exact ``k``-th neighbour
    distance among its nearest point tiles gives a radius ``R`` for the whole
    tile. Every point within ``R`` of a query lies in a point tile whose box
    is within ``R`` of the query tile's box, so searching only those tiles is
    exact. Yields ``(query [Q], neighbour [Q, K], real [Q, K])`` like
    :func:`_knn_block`.
    """
    count = min(k, size_x)
    center = x[first_x]
    points = x[first_x: first_x + size_x] - center
    queries = y[first_y: first_y + size_y] - center

    perm_x = _kd_order(points, _TILE_SIZE)
    perm_y = _kd_order(queries, _QUERY_TILE_SIZE)
    point_tiles, point_real, point_low, point_high = _tile(points[perm_x], _TILE_SIZE)
    query_tiles, query_real, query_low, query_high = _tile(queries[perm_y], _QUERY_TILE_SIZE)
    # Original row of every padded point and query.
    row_x = torch.cat([perm_x, perm_x[-1:].expand(point_real.numel() - size_x)]).view_as(point_real)
    row_y = torch.cat([perm_y, perm_y[-1:].expand(query_real.numel() - size_y)]).view_as(query_real)

    point_center = (point_low + point_high) / 2
    num_point_tiles = point_tiles.size(0)
    seed_tiles = min(num_point_tiles, -(-count // _TILE_SIZE) + _SEED_EXTRA)
    tiles_per_step = max(1, chunk_size // (num_point_tiles * _TILE_SIZE))

    for lo in range(0, query_tiles.size(0), tiles_per_step):
        hi = min(query_tiles.size(0), lo + tiles_per_step)
        # NOTE: the box bounds cover every pair of query and point tiles, so
        # this step grows quadratically. At 100,000 uniform random points it
        # took about a quarter of the search time (CPU, one thread, cProfile).
        lower = _box_sq_dist(query_low[lo:hi], query_high[lo:hi], point_low, point_high)

        # Radius: the largest k-th neighbour distance of the tile's queries
        # among the nearest point tiles, widened slightly against rounding.
        query_center = (query_low[lo:hi] + query_high[lo:hi]) / 2
        seed = torch.cdist(query_center, point_center).topk(seed_tiles, dim=1, largest=False).indices
        seed_points = point_tiles[seed].flatten(1, 2)
        seed_dist = (query_tiles[lo:hi].unsqueeze(2) - seed_points.unsqueeze(1)).square().sum(-1)
        seed_dist.masked_fill_(~point_real[seed].flatten(1).unsqueeze(1), float("inf"))
        radius = seed_dist.kthvalue(count, dim=-1).values.amax(dim=1)
        radius = radius * (1 + 1e-4) + torch.finfo(x.dtype).tiny

        # Search the query tiles in descending order of candidate count, so
        # that each group pads to a similar width.
        near = lower <= radius.unsqueeze(1)
        widths = near.sum(1)
        by_width = widths.argsort(descending=True)
        start = 0
        while start < hi - lo:
            width = int(widths[by_width[start]])
            group = by_width[start: start + max(1, chunk_size // (_QUERY_TILE_SIZE * width * _TILE_SIZE))]
            start += group.numel()

            tiles, tile_ok = _compact_true(near[group], width)
            query = group + lo
            yield _search_tiles(
                point_tiles, point_real, row_x, tiles, tile_ok,
                query_tiles[query], query_real[query], row_y[query], count, first_x, first_y,
            )


def _compact_true(mask: Tensor, width: int) -> Tuple[Tensor, Tensor]:
    """Return the ``[Q, width]`` column indices of the :obj:`True` entries of
    every row of a ``[Q, C]`` mask, padded with column 0, and the mask of the
    entries that are real."""
    row, column = mask.nonzero(as_tuple=True)
    slot = mask.cumsum(dim=1)[row, column] - 1
    index = torch.zeros((mask.size(0), width), dtype=torch.long, device=mask.device)
    index[row, slot] = column
    count = mask.sum(dim=1, keepdim=True)
    return index, torch.arange(width, device=mask.device) < count


def _search_tiles(
    point_tiles: Tensor,
    point_real: Tensor,
    row_x: Tensor,
    tiles: Tensor,
    tile_ok: Tensor,
    query_tiles: Tensor,
    query_real: Tensor,
    row_y: Tensor,
    count: int,
    first_x: int,
    first_y: int,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Search ``[Q, C]`` candidate point tiles for ``Q`` query tiles."""
    points = point_tiles[tiles].flatten(1, 2)
    real = (point_real[tiles] & tile_ok.unsqueeze(-1)).flatten(1)
    rows = row_x[tiles].flatten(1)

    approx = _approx_sq_dist(points, query_tiles)
    approx.masked_fill_(~real.unsqueeze(1), float("inf"))
    local = _refine(approx, points, query_tiles, real, count, rows)

    neighbour = torch.gather(rows.unsqueeze(1).expand(-1, local.size(1), -1), 2, local)
    ranks = torch.arange(local.size(-1), device=points.device)
    real_out = query_real.unsqueeze(-1) & (ranks < count)
    query = row_y + first_y
    return query.flatten(), (neighbour + first_x).flatten(0, 1), real_out.flatten(0, 1)


def _knn_reference(x: Tensor, y: Tensor, k: int, ptr_x: Tensor, ptr_y: Tensor) -> Tuple[Tensor, Tensor]:
    """Search one graph at a time with :func:`torch.cdist` and a full sort.

    Returns:
        ``(assign_index, dist)``: the ``[2, E]`` edges in the layout of
        :func:`knn`, with ties broken by the lower row of ``x``, and the
        ``[E]`` Euclidean distance of every edge.
    """
    edges: List[Tensor] = []
    dists: List[Tensor] = []
    for b in range(ptr_x.numel() - 1):
        x_lo, x_hi = int(ptr_x[b]), int(ptr_x[b + 1])
        y_lo, y_hi = int(ptr_y[b]), int(ptr_y[b + 1])
        if x_lo == x_hi or y_lo == y_hi:
            continue
        dist = torch.cdist(y[y_lo:y_hi], x[x_lo:x_hi], compute_mode="donot_use_mm_for_euclid_dist")
        sorted_dist, order = dist.sort(dim=1, stable=True)
        count = min(k, x_hi - x_lo)
        query = torch.arange(y_lo, y_hi, device=y.device).repeat_interleave(count)
        edges.append(torch.stack([query, order[:, :count].reshape(-1) + x_lo]))
        dists.append(sorted_dist[:, :count].reshape(-1))
    if not edges:
        return torch.empty((2, 0), dtype=torch.long, device=y.device), y.new_empty(0)
    return torch.cat(edges, dim=1), torch.cat(dists)
