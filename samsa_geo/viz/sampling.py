"""Per-graph views of a SAMSA layer's draw: local indices, head selection and
per-node summaries (sampled or not, number of heads, mean score).

A SAMSA layer reports its draw for a whole ragged batch as a ``SamplingInfo``
with three fields. ``index`` is ``[B, H, K]`` long, the global node rows that
each head sampled, with ``-1`` for padding. ``mask`` is ``[B, H, K]`` bool and
:obj:`True` where ``index`` is a sampled node. ``scores`` is ``[N, H]``, the
importance score of every node and head. The functions here read those fields
by name only, so any object that has them works.

Index tensors of one graph come in three layouts, all with ``-1`` for padding:
``[K]`` (one head), ``[H, K]`` (one layer) and ``[L, H, K]`` (several layers).
A list of ``[H, K]`` tensors, one per layer, may have a different ``K`` per
layer.
"""

import numbers
from typing import Any, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from samsa_geo.ops.segment import check_finite, resolve_segments

IndexLike = Union[Tensor, Sequence[Tensor]]


def as_tensor(value: Any, name: str) -> Tensor:
    """Convert a tensor, NumPy array or nested list to a detached CPU tensor.

    Args:
        value (torch.Tensor or numpy.ndarray or list): Input of any shape.
        name (str): Argument name used in error messages.
    """
    if isinstance(value, Tensor):
        return value.detach().cpu()
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"'{name}' must be a torch.Tensor or a NumPy array, got {type(value).__name__} "
            f"that torch.as_tensor cannot convert ({error})."
        ) from None


def sampling_for_graph(info: Any, ptr: Tensor, graph: int) -> Tuple[Tensor, Optional[Tensor]]:
    """Extract the draw of one graph from a batch-level ``SamplingInfo``.

    Global node rows become local rows of graph ``graph``, that is rows of
    ``pos[ptr[graph]:ptr[graph + 1]]``.

    Args:
        info (SamplingInfo): Object with the fields ``index`` (``[B, H, K]``
            long), ``mask`` (``[B, H, K]`` bool) and ``scores`` (``[N, H]``
            float, or :obj:`None`).
        ptr (torch.Tensor): ``[B + 1]`` CSR offsets of the batch the layer
            ran on, as in ``data.ptr``.
        graph (int): Graph ``b`` to extract, in ``[0, B)``.

    Returns:
        ``(index, scores)``: ``[H, K]`` long local indices with ``-1`` where
        ``mask`` is :obj:`False` or ``index`` is ``-1`` (padding, or a slot
        that a register token filled), and ``[n, H]`` scores of the graph's
        ``n`` nodes, or :obj:`None` if ``info.scores`` is :obj:`None`.

    Raises:
        ValueError: If the fields have the wrong shapes, ``graph`` is out of
            range, or a sampled row lies outside graph ``graph``.
    """
    for field in ("index", "mask", "scores"):
        if not hasattr(info, field):
            raise ValueError(
                f"'info' must have the fields index, mask and scores, but "
                f"{type(info).__name__} has no field '{field}'."
            )

    index = as_tensor(info.index, "info.index")
    mask = as_tensor(info.mask, "info.mask")
    if index.dim() != 3 or mask.shape != index.shape:
        raise ValueError(
            f"'info.index' and 'info.mask' must both have shape [B, H, K], got "
            f"{tuple(index.shape)} and {tuple(mask.shape)}."
        )

    ptr = as_tensor(ptr, "ptr")
    num_nodes = int(ptr[-1]) if ptr.numel() > 0 else 0
    _, ptr = resolve_segments(num_nodes, ptr=ptr)
    num_graphs = ptr.numel() - 1
    if num_graphs != index.size(0):
        raise ValueError(
            f"'ptr' describes {num_graphs} graphs but 'info.index' has {index.size(0)}. "
            f"Pass the ptr of the batch that the layer ran on."
        )
    if (
        isinstance(graph, bool)
        or not isinstance(graph, numbers.Integral)
        or not 0 <= graph < num_graphs
    ):
        raise ValueError(f"'graph' must be an int in [0, {num_graphs}), got {graph!r}.")
    graph = int(graph)

    start, end = int(ptr[graph]), int(ptr[graph + 1])
    valid = mask[graph].bool() & (index[graph] >= 0)
    rows = index[graph].long()
    outside = valid & ((rows < start) | (rows >= end))
    if bool(outside.any()):
        row = int(rows[outside][0])
        raise ValueError(
            f"'info.index' samples row {row} for graph {graph}, which owns rows "
            f"[{start}, {end}). Check that 'ptr' belongs to the batch the layer ran on."
        )
    local = torch.where(valid, rows - start, torch.full_like(rows, -1))

    scores = None
    if info.scores is not None:
        scores = as_tensor(info.scores, "info.scores")
        if scores.dim() != 2 or scores.size(0) != num_nodes:
            raise ValueError(
                f"'info.scores' must have shape [N, H] with N = ptr[-1] = {num_nodes}, "
                f"got {tuple(scores.shape)}."
            )
        scores = scores[start:end]
    return local, scores


def _check_integer(index: Tensor, name: str) -> Tensor:
    # An empty list converts to an empty float tensor, which contains no index.
    if index.numel() > 0 and (
        index.is_floating_point() or index.is_complex() or index.dtype == torch.bool
    ):
        raise ValueError(f"'{name}' must have an integer dtype (torch.long), got {index.dtype}.")
    return index.long()


def stack_layers(index: IndexLike) -> Tensor:
    """Bring a graph's sampled indices into the ``[L, H, K]`` layout.

    Args:
        index (torch.Tensor or list of torch.Tensor): ``[K]``, ``[H, K]`` or
            ``[L, H, K]`` indices, or a list of ``[H, K]`` tensors or arrays,
            one per layer. Shorter layers are padded with ``-1``. A list of
            ints is read as ``[K]``.

    Returns:
        ``[L, H, K]`` long tensor.
    """
    if (
        isinstance(index, (list, tuple))
        and len(index) > 0
        and all(hasattr(item, "shape") for item in index)
    ):
        layers = [
            _check_integer(as_tensor(layer, f"index[{i}]"), f"index[{i}]")
            for i, layer in enumerate(index)
        ]
        for i, layer in enumerate(layers):
            if layer.dim() != 2:
                raise ValueError(
                    f"Every layer in 'index' must have shape [H, K], got {tuple(layer.shape)} "
                    f"for layer {i}."
                )
        heads = {layer.size(0) for layer in layers}
        if len(heads) > 1:
            raise ValueError(
                f"All layers in 'index' must have the same number of heads, got {sorted(heads)}."
            )
        width = max(layer.size(1) for layer in layers)
        padded = [
            torch.nn.functional.pad(layer, (0, width - layer.size(1)), value=-1) for layer in layers
        ]
        return torch.stack(padded)

    index = _check_integer(as_tensor(index, "index"), "index")
    if index.dim() == 1:
        return index.view(1, 1, index.numel())
    if index.dim() == 2:
        return index.unsqueeze(0)
    if index.dim() == 3:
        return index
    raise ValueError(f"'index' must have shape [K], [H, K] or [L, H, K], got {tuple(index.shape)}.")


def _check_choice(value: Optional[int], size: int, name: str) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not -size <= value < size
    ):
        raise ValueError(
            f"'{name}' must be None or an int in [{-size}, {size}), got {value!r}. "
            f"None merges all of them."
        )


def select_index(
    index: IndexLike, layer: Optional[int] = None, head: Optional[int] = None
) -> Tensor:
    """Select the draws of one layer and/or one head.

    Args:
        index (torch.Tensor or list of torch.Tensor): Indices in any layout
            that :func:`stack_layers` accepts.
        layer (int, optional): Layer to keep. :obj:`None` keeps all layers.
            (default: :obj:`None`)
        head (int, optional): Head to keep in every kept layer. :obj:`None`
            keeps all heads. (default: :obj:`None`)

    Returns:
        ``[R, K]`` long tensor with one row per kept (layer, head) pair.
    """
    index = stack_layers(index)
    num_layers, num_heads, _ = index.shape

    _check_choice(layer, num_layers, "layer")
    _check_choice(head, num_heads, "head")
    if layer is not None:
        index = index[[layer]]
    if head is not None:
        index = index[:, [head]]
    num_layers, num_heads, k = index.shape
    return index.reshape(num_layers * num_heads, k)


def _check_rows(rows: Tensor, num_nodes: int) -> None:
    if rows.numel() == 0:
        return
    low, high = int(rows.min()), int(rows.max())
    if low < -1 or high >= num_nodes:
        raise ValueError(
            f"'index' must contain local node indices in [0, {num_nodes}) or -1 for padding, "
            f"got values in [{low}, {high}]. Convert a batch-level SamplingInfo with "
            f"sampling_for_graph first."
        )


def sampled_mask(
    index: IndexLike, num_nodes: int, layer: Optional[int] = None, head: Optional[int] = None
) -> Tensor:
    """Mark the nodes that at least one selected head sampled.

    Args:
        index (torch.Tensor or list of torch.Tensor): Local indices in any
            layout that :func:`stack_layers` accepts, ``-1`` for padding.
        num_nodes (int): Number of nodes ``n`` of the graph.
        layer (int, optional): Layer to keep, :obj:`None` for the union over
            layers. (default: :obj:`None`)
        head (int, optional): Head to keep, :obj:`None` for the union over
            heads. (default: :obj:`None`)

    Returns:
        ``[n]`` bool tensor.
    """
    rows = select_index(index, layer, head)
    _check_rows(rows, num_nodes)

    mask = torch.zeros(num_nodes, dtype=torch.bool)
    mask[rows[rows >= 0]] = True
    return mask


def count_heads(
    index: IndexLike, num_nodes: int, layer: Optional[int] = None, head: Optional[int] = None
) -> Tensor:
    """Count how many selected (layer, head) pairs sampled each node.

    A node that one head lists twice counts once for that head.

    Args:
        index (torch.Tensor or list of torch.Tensor): Local indices in any
            layout that :func:`stack_layers` accepts, ``-1`` for padding.
        num_nodes (int): Number of nodes ``n`` of the graph.
        layer (int, optional): Layer to keep, :obj:`None` for all layers.
            (default: :obj:`None`)
        head (int, optional): Head to keep, :obj:`None` for all heads.
            (default: :obj:`None`)

    Returns:
        ``[n]`` long tensor with values in ``[0, R]``, where ``R`` is the
        number of selected (layer, head) pairs.
    """
    rows = select_index(index, layer, head)
    _check_rows(rows, num_nodes)

    row_id = torch.arange(rows.size(0)).unsqueeze(1).expand_as(rows)
    valid = rows >= 0
    pairs = torch.unique(row_id[valid] * num_nodes + rows[valid])
    return torch.bincount(pairs % num_nodes, minlength=num_nodes)


def select_scores(
    scores: Union[Tensor, Sequence[Tensor]],
    layer: Optional[int] = None,
    head: Optional[int] = None,
) -> Tensor:
    """Select the importance scores of one layer and/or head, averaging the rest.

    Args:
        scores (torch.Tensor or list of torch.Tensor): ``[n]``, ``[n, H]``
            or ``[L, n, H]`` scores, or a list of ``[n, H]`` scores, one per
            layer.
        layer (int, optional): Layer to keep, :obj:`None` for the mean over
            layers. (default: :obj:`None`)
        head (int, optional): Head to keep, :obj:`None` for the mean over
            heads. (default: :obj:`None`)

    Returns:
        ``[n]`` float tensor.
    """
    if (
        isinstance(scores, (list, tuple))
        and len(scores) > 0
        and all(hasattr(item, "shape") for item in scores)
    ):
        layers = [as_tensor(layer_scores, f"scores[{i}]") for i, layer_scores in enumerate(scores)]
        shapes = {tuple(layer_scores.shape) for layer_scores in layers}
        if len(shapes) > 1 or layers[0].dim() != 2:
            raise ValueError(
                f"'scores' as a list must contain one [n, H] tensor per layer, all of the "
                f"same shape, got shapes {sorted(shapes)}."
            )
        scores = torch.stack(layers)
    scores = as_tensor(scores, "scores")
    if scores.dim() == 1:
        scores = scores.view(1, scores.numel(), 1)
    elif scores.dim() == 2:
        scores = scores.unsqueeze(0)
    elif scores.dim() != 3:
        raise ValueError(
            f"'scores' must have shape [n], [n, H] or [L, n, H], got {tuple(scores.shape)}."
        )
    scores = scores.float()
    check_finite(scores, "scores")

    _check_choice(layer, scores.size(0), "layer")
    _check_choice(head, scores.size(2), "head")
    if layer is not None:
        scores = scores[[layer]]
    if head is not None:
        scores = scores[:, :, [head]]
    return scores.mean(dim=(0, 2))


def _is_sampling_info(value: Any) -> bool:
    return hasattr(value, "index") and hasattr(value, "mask")


def local_sampling(
    sampling: Any,
    num_nodes: int,
    ptr: Optional[Tensor] = None,
    graph: int = 0,
) -> Tuple[IndexLike, Optional[Tensor]]:
    """Turn what a caller passes as "the sampling" into local indices and scores.

    Args:
        sampling (SamplingInfo or list of SamplingInfo or torch.Tensor or list
            of torch.Tensor): A layer's batch-level ``SamplingInfo``, one per
            layer in a list, or local indices in any layout that
            :func:`stack_layers` accepts.
        num_nodes (int): Number of nodes ``n`` of the graph.
        ptr (torch.Tensor, optional): ``[B + 1]`` CSR offsets of the batch.
            May be left out for a ``SamplingInfo`` of a one-graph batch.
            (default: :obj:`None`)
        graph (int, optional): Graph ``b`` of the batch. (default: :obj:`0`)

    Returns:
        ``(index, scores)``: local indices (``[H, K]`` per layer in a list, or
        ``sampling`` itself if it already contains indices), and a list of
        ``[n, H]`` scores per layer, or :obj:`None` if the input has none.
    """
    if _is_sampling_info(sampling):
        infos = [sampling]
    elif (
        isinstance(sampling, (list, tuple))
        and len(sampling) > 0
        and all(map(_is_sampling_info, sampling))
    ):
        infos = list(sampling)
    else:
        if ptr is not None:
            raise ValueError(
                "'ptr' applies to a batch-level SamplingInfo, but 'sampling' contains "
                "local indices. Leave out 'ptr' and pass the graph's own nodes."
            )
        return sampling, None

    if ptr is None:
        num_graphs = as_tensor(infos[0].index, "info.index").size(0)
        if num_graphs != 1:
            raise ValueError(
                f"The SamplingInfo covers {num_graphs} graphs. Pass the batch's 'ptr' and the "
                f"'graph' to show."
            )
        ptr = torch.tensor([0, num_nodes])
    ptr = as_tensor(ptr, "ptr")

    indices, scores = [], []
    for info in infos:
        index, info_scores = sampling_for_graph(info, ptr, graph)
        indices.append(index)
        scores.append(info_scores)

    size = int(ptr[graph + 1] - ptr[graph])
    if size != num_nodes:
        raise ValueError(
            f"Graph {graph} has {size} nodes in 'ptr', but the drawing has {num_nodes}. "
            f"Pass the nodes of that graph."
        )
    if any(info_scores is None for info_scores in scores):
        scores = None
    return indices, scores
