"""Per-graph, per-head top-k selection on a ragged PyG batch.

:func:`segment_topk` ranks the scores of every graph and head without a
Python loop over graphs. It picks one of three paths per input, and all of
them return identical results:

* **segment_max**: when every graph keeps at most one node, the per-graph
  argmax in ``O(N)``, through ``torch_scatter``'s ``segment_max_csr`` for
  float32 and float64 CPU tensors when it is installed, and two
  ``scatter_reduce`` passes otherwise.
* **dense**: scatter the scores into a ``[H, B, n_max]`` grid and run
  :func:`torch.topk` along each row. Float32 scores (and float16 and
  bfloat16, converted exactly) become int64 keys that combine the score and
  the local row number, so every key is unique and ties need no rule.
  Float64 scores take a stable sort of the grid instead. Used when padding
  wastes little (``B * n_max <= 2 * N``).
* **sparse**: one stable sort per head of ``[N]`` int64 keys that contain
  the graph index in the high 32 bits and an order-preserving integer image
  of the float32 score in the low 32 bits. Float64 scores do not fit into
  32 bits, so they take two stable sorts instead (score, then graph).

:func:`segment_topk_reference` is a per-graph, per-head Python loop that the
tests compare every path against.
"""

from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from samsa_geo.backend import has
from samsa_geo.ops.segment import check_finite, resolve_k, resolve_segments

# The dense path runs when the padded grid has at most this many entries per
# real score.
DENSE_MAX_PADDING = 2.0

_SIGN_BIT = 1 << 31
_LOW_31_BITS = (1 << 31) - 1


def _check_scores(scores: Tensor) -> Tensor:
    if not isinstance(scores, Tensor):
        raise TypeError(f"'scores' must be a torch.Tensor, got {type(scores).__name__}.")
    if scores.dim() not in (1, 2):
        raise ValueError(
            f"'scores' must have shape [N] or [N, H], got shape {tuple(scores.shape)}."
        )
    if not scores.is_floating_point():
        raise ValueError(
            f"'scores' must have a floating-point dtype, got {scores.dtype}. "
            f"Convert it with scores.float()."
        )
    check_finite(scores, "scores")
    return scores.unsqueeze(1) if scores.dim() == 1 else scores


def _prepare(
    scores: Tensor,
    k: Optional[Union[int, Tensor]],
    ratio: Optional[float],
    batch: Optional[Tensor],
    ptr: Optional[Tensor],
    num_graphs: Optional[int],
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    scores_2d = _check_scores(scores)
    batch, ptr = resolve_segments(scores.size(0), batch, ptr, num_graphs, scores.device)
    sizes = ptr[1:] - ptr[:-1]
    k_per_graph = resolve_k(sizes, k, ratio)
    return scores_2d, batch, ptr, k_per_graph


def _finish(index: Tensor, mask: Tensor, one_head: bool) -> Tuple[Tensor, Tensor]:
    if one_head:
        return index[:, 0], mask[:, 0]
    return index, mask


def _descending_key32(scores: Tensor) -> Tensor:
    """Map float scores to int64 values in ``[-2**31, 2**31)`` whose ascending
    order is the descending order of the scores, with ``-0.0`` equal to
    ``+0.0``."""
    # Adding +0.0 turns -0.0 into +0.0, so that both zeros get one key.
    # Float16 and bfloat16 convert to float32 exactly.
    bits = (scores.float() + 0.0).view(torch.int32).long()

    # Signed bit patterns of negative floats grow as the value falls, so
    # flipping their low 31 bits restores the order. The result is a signed
    # integer in the same order as the floats.
    ascending = torch.where(bits < 0, bits ^ _LOW_31_BITS, bits)
    return ~ascending


def _sorted_order(scores_2d: Tensor, batch: Tensor) -> Tensor:
    """Return ``[H, N]`` row numbers sorted by graph, then by descending score,
    then by row number."""
    if scores_2d.dtype == torch.float64:
        _, by_score = torch.sort(scores_2d.t() + 0.0, dim=1, descending=True, stable=True)
        _, by_graph = torch.sort(batch[by_score], dim=1, stable=True)
        return by_score.gather(1, by_graph)

    key = (batch << 32) | (_descending_key32(scores_2d.t()) + _SIGN_BIT)
    if key.size(0) == 1:
        # On CPU with torch 2.13, a flat sort of 100,000 keys took about 2/3 of
        # the time of a sort along dim 1 of the same keys as a [1, N] tensor.
        return torch.sort(key.view(-1), stable=True).indices.view(1, -1)
    return torch.sort(key, dim=1, stable=True).indices


def _topk_sparse(
    scores_2d: Tensor, batch: Tensor, ptr: Tensor, k_per_graph: Tensor, max_k: int
) -> Tuple[Tensor, Tensor]:
    num_nodes, heads = scores_2d.shape
    num_graphs = ptr.numel() - 1
    order = _sorted_order(scores_2d, batch)

    # Graph b occupies positions ptr[b]:ptr[b+1] of every sorted row, best
    # first, so a position's rank within its graph is the same for all heads.
    rank = torch.arange(num_nodes, device=ptr.device) - ptr[batch]
    selected = rank < k_per_graph[batch]
    rank, graph = rank[selected], batch[selected]

    index = torch.full((num_graphs, heads, max_k), -1, dtype=torch.long, device=ptr.device)
    index[graph, :, rank] = order[:, selected].t()
    mask = torch.arange(max_k, device=ptr.device).view(1, 1, -1) < k_per_graph.view(-1, 1, 1)
    return index, mask.expand_as(index).contiguous()


def _topk_dense(
    scores_2d: Tensor, batch: Tensor, ptr: Tensor, k_per_graph: Tensor, max_k: int, n_max: int
) -> Tuple[Tensor, Tensor]:
    num_nodes, heads = scores_2d.shape
    num_graphs = ptr.numel() - 1
    local = torch.arange(num_nodes, device=ptr.device) - ptr[batch]

    # Each grid cell gets a unique key: the score in the high bits and the
    # local row number in the low bits, so torch.topk needs no tie rule.
    # Float64 scores keep their full precision through a stable sort instead.
    if scores_2d.dtype == torch.float64:
        grid = scores_2d.new_full((heads, num_graphs, n_max), float("-inf"))
        grid[:, batch, local] = scores_2d.t()
        _, local_top = torch.sort(grid, dim=2, descending=True, stable=True)
        local_top = local_top[:, :, :max_k]
    else:
        empty_key = torch.iinfo(torch.long).max
        grid = torch.full((heads, num_graphs, n_max), empty_key, dtype=torch.long, device=ptr.device)
        grid[:, batch, local] = (_descending_key32(scores_2d.t()) << 32) | local
        local_top = torch.topk(grid, max_k, dim=2, largest=False, sorted=True).values
        local_top = local_top & 0xFFFFFFFF

    index = (local_top + ptr[:-1].view(1, -1, 1)).permute(1, 0, 2)
    mask = torch.arange(max_k, device=ptr.device).view(1, 1, -1) < k_per_graph.view(-1, 1, 1)
    mask = mask.expand_as(index)
    return index.masked_fill(~mask, -1), mask.contiguous()


def _segment_argmax(scores_2d: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Return the ``[B, H]`` first row of the maximum of every graph and head,
    and ``N`` for empty graphs."""
    num_nodes, heads = scores_2d.shape
    group = batch.view(-1, 1).expand(num_nodes, heads)
    seg_max = scores_2d.new_full((num_graphs, heads), float("-inf"))
    seg_max = seg_max.scatter_reduce(0, group, scores_2d, reduce="amax")

    # -0.0 == +0.0, so both zeros count as the maximum, and the lowest row wins.
    rows = torch.arange(num_nodes, device=batch.device).view(-1, 1)
    candidate = torch.where(scores_2d == seg_max[batch], rows, num_nodes)
    first = torch.full((num_graphs, heads), num_nodes, dtype=torch.long, device=batch.device)
    return first.scatter_reduce(0, group, candidate, reduce="amin")


def _topk_one(
    scores_2d: Tensor, batch: Tensor, ptr: Tensor, k_per_graph: Tensor
) -> Tuple[Tensor, Tensor]:
    # On CPU, torch_scatter 2.1.2 returns the first of several equal maxima,
    # as the tie rule requires, and the tests check it against the reference.
    # Its CUDA kernel is not checked for that, so CUDA tensors take the
    # scatter_reduce path.
    use_scatter = (
        has("torch_scatter")
        and scores_2d.device.type == "cpu"
        and scores_2d.dtype in (torch.float32, torch.float64)
    )
    if use_scatter:
        from torch_scatter import segment_max_csr

        _, first = segment_max_csr(scores_2d.contiguous(), ptr)
    else:
        first = _segment_argmax(scores_2d, batch, ptr.numel() - 1)

    index = first.unsqueeze(-1)
    mask = (k_per_graph > 0).view(-1, 1, 1).expand_as(index)
    return index.masked_fill(~mask, -1), mask.contiguous()


def _select_topk(
    scores_2d: Tensor,
    batch: Tensor,
    ptr: Tensor,
    k_per_graph: Tensor,
    path: Optional[str] = None,
    max_k: Optional[int] = None,
    n_max: Optional[int] = None,
) -> Tuple[Tensor, Tensor]:
    """Run :func:`segment_topk` on checked inputs: ``[N, H]`` finite scores,
    ``batch`` and ``ptr`` from :func:`resolve_segments`, and the ``[B]`` kept
    count of every graph from :func:`resolve_k`. Returns ``[B, H, K]``
    ``(index, mask)``. Callers that have already checked their inputs use it
    to skip a second check.

    ``max_k`` sets the output width ``K``. It must lie in
    ``[max_b k_b, n_max]``, and slots past ``k_b`` are padding. ``n_max`` is
    the largest graph size. Callers that know both pass them, which saves a
    host read. Without them, ``K = max_b k_b``."""
    num_nodes, heads = scores_2d.shape
    num_graphs = ptr.numel() - 1
    if num_nodes == 0:
        index = torch.empty((num_graphs, heads, 0), dtype=torch.long, device=scores_2d.device)
        return index, index.bool()

    if max_k is None or n_max is None:
        # One host read for both maxima, which also set output and grid shapes.
        sizes = ptr[1:] - ptr[:-1]
        max_k, n_max = torch.stack([k_per_graph.max(), sizes.max()]).tolist()

    if path is None and max_k == 1:
        path = "segment_max"
    elif path is None:
        path = "dense" if num_graphs * n_max <= DENSE_MAX_PADDING * num_nodes else "sparse"

    if path == "segment_max":
        if max_k > 1:
            raise ValueError(
                f"path='segment_max' keeps one node per graph, but a graph keeps {max_k}. "
                f"Use path=None, 'dense' or 'sparse'."
            )
        return _topk_one(scores_2d, batch, ptr, k_per_graph)
    if path == "dense":
        return _topk_dense(scores_2d, batch, ptr, k_per_graph, max_k, n_max)
    if path == "sparse":
        return _topk_sparse(scores_2d, batch, ptr, k_per_graph, max_k)
    raise ValueError(
        f"'path' must be None, 'dense', 'sparse' or 'segment_max', got {path!r}."
    )


def segment_topk(
    scores: Tensor,
    k: Optional[Union[int, Tensor]] = None,
    ratio: Optional[float] = None,
    batch: Optional[Tensor] = None,
    ptr: Optional[Tensor] = None,
    num_graphs: Optional[int] = None,
    path: Optional[str] = None,
) -> Tuple[Tensor, Tensor]:
    r"""Select the :math:`k_b` highest scores of every graph :math:`b` and
    every head :math:`h` of a ragged batch.

    The kept count is :math:`k_b = \min(k, n_b)` for an integer ``k``, and
    :math:`k_b = \min(n_b, \max(1, \lceil \mathrm{ratio} \cdot n_b \rceil))`
    for a ``ratio``, as in PyG's ``topk`` pooling. A graph with fewer than
    ``k`` nodes returns all of its nodes, and an empty graph returns only
    padding. Ranks are sorted by descending score. Equal scores are ranked by
    row number, lower first, and ``-0.0`` equals ``+0.0``.

    Args:
        scores (torch.Tensor): ``[N]`` or ``[N, H]`` finite floating-point
            scores, one column per head.
        k (int or torch.Tensor, optional): Number of nodes to keep per graph,
            a positive int or a ``[B]`` long tensor of positive counts.
            (default: :obj:`None`)
        ratio (float, optional): Fraction of each graph to keep, in (0, 1].
            Pass exactly one of ``k`` and ``ratio``. (default: :obj:`None`)
        batch (torch.Tensor, optional): ``[N]`` sorted graph index of every
            node. (default: :obj:`None`, one graph)
        ptr (torch.Tensor, optional): ``[B + 1]`` CSR offsets, used instead
            of ``batch`` when given. (default: :obj:`None`)
        num_graphs (int, optional): Number of graphs ``B`` when only
            ``batch`` is given. (default: :obj:`None`)
        path (str, optional): ``"dense"``, ``"sparse"`` or, when every
            graph keeps at most one node, ``"segment_max"``, to force a path
            for tests and benchmarks. All return identical results.
            (default: :obj:`None`, ``"segment_max"`` when ``K = 1``, else
            chosen from the padding waste)

    Returns:
        ``(index, mask)``:

        - **index** (*torch.Tensor*): ``[B, H, K]`` long row numbers into
          ``scores``, with ``K = max_b k_b`` (0 when every graph is empty).
          Slot ``r`` of graph ``b`` and head ``h`` contains the node of rank
          ``r``. Padded slots are ``-1``.
        - **mask** (*torch.Tensor*): ``[B, H, K]`` bool, :obj:`True` on the
          first ``k_b`` slots of graph ``b``.

        For ``[N]`` scores both outputs have shape ``[B, K]``.

    Raises:
        ValueError: If ``scores`` is not 1-D or 2-D, not floating point or
            contains NaN or infinity, or if ``k``, ``ratio``, ``batch`` or
            ``ptr`` are invalid.
    """
    scores_2d, batch, ptr, k_per_graph = _prepare(scores, k, ratio, batch, ptr, num_graphs)
    index, mask = _select_topk(scores_2d, batch, ptr, k_per_graph, path)
    return _finish(index, mask, scores.dim() == 1)


def segment_topk_reference(
    scores: Tensor,
    k: Optional[Union[int, Tensor]] = None,
    ratio: Optional[float] = None,
    batch: Optional[Tensor] = None,
    ptr: Optional[Tensor] = None,
    num_graphs: Optional[int] = None,
) -> Tuple[Tensor, Tensor]:
    """Compute :func:`segment_topk` with a Python loop over graphs and heads.

    Each graph and head is ranked by one stable descending sort, which puts
    equal scores in row order. Arguments and outputs are those of
    :func:`segment_topk`.
    """
    scores_2d, batch, ptr, k_per_graph = _prepare(scores, k, ratio, batch, ptr, num_graphs)
    num_graphs, heads = ptr.numel() - 1, scores_2d.size(1)
    max_k = int(k_per_graph.max()) if num_graphs > 0 else 0

    index = torch.full((num_graphs, heads, max_k), -1, dtype=torch.long, device=scores.device)
    for b in range(num_graphs):
        start, end, k_b = int(ptr[b]), int(ptr[b + 1]), int(k_per_graph[b])
        for h in range(heads):
            order = torch.sort(scores_2d[start:end, h] + 0.0, descending=True, stable=True).indices
            index[b, h, :k_b] = order[:k_b] + start

    return _finish(index, index >= 0, scores.dim() == 1)
