"""Per-node RGB colors that show what SAMSA sampled.

Three modes color the ``n`` nodes of one graph:

* ``"sampled"``: :data:`SAMPLED_COLOR` for nodes that a selected head
  sampled, :data:`UNSAMPLED_COLOR` for the rest.
* ``"score"``: the importance score through a colormap, normalized to the
  graph's own minimum and maximum.
* ``"count"``: the number of selected heads that sampled the node, through a
  sequential colormap.

Every function returns a ``[n, 3]`` float64 NumPy array with values in
``[0, 1]``, the layout that Open3D and RDKit take.
"""

from typing import Optional, Sequence, Tuple, Union

import matplotlib
import numpy as np
from torch import Tensor

from samsa_geo.ops.segment import check_finite
from samsa_geo.viz.sampling import (
    IndexLike,
    as_tensor,
    count_heads,
    sampled_mask,
    select_index,
    select_scores,
)

Color = Tuple[float, float, float]

#: Sampled nodes: matplotlib's ``"tab:red"``, ``#D62728``. The components are
#: exact 8-bit values, so PNG pixels and SVG hex strings reproduce them.
SAMPLED_COLOR: Color = (214 / 255, 39 / 255, 40 / 255)

#: Nodes that no selected head sampled: light grey ``#C8C8C8``, which stays
#: visible on a white background.
UNSAMPLED_COLOR: Color = (200 / 255, 200 / 255, 200 / 255)

#: Colormap of the ``"score"`` mode.
SCORE_CMAP = "viridis"

#: Colormap of the ``"count"`` mode. Counts from 1 to the maximum use its
#: range [0.35, 1], because its lighter end is hard to see on white.
COUNT_CMAP = "YlOrRd"
_COUNT_CMAP_RANGE = (0.35, 1.0)

MODES = ("sampled", "score", "count")


def _check_color(color: Sequence[float], name: str) -> np.ndarray:
    rgb = np.asarray(color, dtype=np.float64)
    if rgb.shape != (3,) or not np.all((rgb >= 0.0) & (rgb <= 1.0)):
        raise ValueError(f"'{name}' must be three floats in [0, 1] (RGB), got {color!r}.")
    return rgb


def _get_cmap(cmap: Union[str, matplotlib.colors.Colormap]) -> matplotlib.colors.Colormap:
    if isinstance(cmap, matplotlib.colors.Colormap):
        return cmap
    try:
        return matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(
            f"'cmap' must be a matplotlib colormap or its name, got {cmap!r}. "
            f"See matplotlib.colormaps for the names."
        ) from None


def color_sampled(
    mask: Union[Tensor, np.ndarray],
    sampled_color: Color = SAMPLED_COLOR,
    unsampled_color: Color = UNSAMPLED_COLOR,
) -> np.ndarray:
    """Color sampled nodes in one color and all others in a second.

    Args:
        mask (torch.Tensor or numpy.ndarray): ``[n]`` bool, :obj:`True` for
            sampled nodes.
        sampled_color (tuple of float, optional): RGB in ``[0, 1]`` of sampled
            nodes. (default: :data:`SAMPLED_COLOR`)
        unsampled_color (tuple of float, optional): RGB in ``[0, 1]`` of the
            other nodes. (default: :data:`UNSAMPLED_COLOR`)

    Returns:
        ``[n, 3]`` float64 array.
    """
    mask = as_tensor(mask, "mask").numpy()
    if mask.ndim != 1 or mask.dtype != np.bool_:
        raise ValueError(
            f"'mask' must be a one-dimensional bool array, got shape {mask.shape} "
            f"and dtype {mask.dtype}."
        )

    sampled = _check_color(sampled_color, "sampled_color")
    unsampled = _check_color(unsampled_color, "unsampled_color")
    return np.where(mask[:, None], sampled, unsampled)


def color_scores(
    scores: Union[Tensor, np.ndarray], cmap: Union[str, matplotlib.colors.Colormap] = SCORE_CMAP
) -> np.ndarray:
    """Color nodes by importance score through a colormap.

    Scores are rescaled to ``[0, 1]`` with the minimum and maximum of this
    graph, so colors compare nodes within one graph, not across graphs. If all
    scores are equal, every node gets the colormap's middle color.

    Args:
        scores (torch.Tensor or numpy.ndarray): ``[n]`` finite scores.
        cmap (str or matplotlib.colors.Colormap, optional): Colormap.
            (default: :obj:`"viridis"`)

    Returns:
        ``[n, 3]`` float64 array.
    """
    scores = as_tensor(scores, "scores")
    if scores.dim() != 1:
        raise ValueError(
            f"'scores' must have shape [n], got {tuple(scores.shape)}. "
            f"Select a head first, for example with select_scores."
        )
    check_finite(scores.double(), "scores")
    scores = scores.double().numpy()
    colormap = _get_cmap(cmap)
    if scores.size == 0:
        return np.zeros((0, 3))

    low, high = scores.min(), scores.max()
    if high > low:
        level = (scores - low) / (high - low)
    else:
        level = np.full_like(scores, 0.5)
    return colormap(level)[:, :3].astype(np.float64)


def color_counts(
    counts: Union[Tensor, np.ndarray],
    max_count: Optional[int] = None,
    cmap: Union[str, matplotlib.colors.Colormap] = COUNT_CMAP,
    unsampled_color: Color = UNSAMPLED_COLOR,
) -> np.ndarray:
    """Color nodes by how many heads sampled them.

    A count of 0 gets ``unsampled_color``. Counts from 1 to ``max_count`` run
    through the colormap range [0.35, 1], so more heads give a darker color
    with the default colormap.

    Args:
        counts (torch.Tensor or numpy.ndarray): ``[n]`` integer counts in
            ``[0, max_count]``.
        max_count (int, optional): Count of the darkest color, usually the
            number of heads ``H`` or of (layer, head) pairs ``L * H``. Pass it
            so that colors compare across graphs. (default: the largest entry
            of ``counts``)
        cmap (str or matplotlib.colors.Colormap, optional): Sequential
            colormap. (default: :obj:`"YlOrRd"`)
        unsampled_color (tuple of float, optional): RGB in ``[0, 1]`` of nodes
            with count 0. (default: :data:`UNSAMPLED_COLOR`)

    Returns:
        ``[n, 3]`` float64 array.
    """
    counts = as_tensor(counts, "counts")
    if counts.dim() != 1 or counts.is_floating_point() or counts.is_complex():
        raise ValueError(
            f"'counts' must be a one-dimensional integer array, got shape {tuple(counts.shape)} "
            f"and dtype {counts.dtype}."
        )
    counts = counts.long().numpy()
    largest = int(counts.max()) if counts.size > 0 else 0
    if max_count is None:
        max_count = max(largest, 1)
    if isinstance(max_count, bool) or not isinstance(max_count, int) or max_count < 1:
        raise ValueError(f"'max_count' must be a positive int, got {max_count!r}.")
    if counts.size > 0 and (int(counts.min()) < 0 or largest > max_count):
        raise ValueError(
            f"'counts' must lie in [0, max_count={max_count}], got values in "
            f"[{int(counts.min())}, {largest}]. Pass the number of heads as 'max_count'."
        )

    colormap = _get_cmap(cmap)
    unsampled = _check_color(unsampled_color, "unsampled_color")
    low, high = _COUNT_CMAP_RANGE
    step = (counts - 1) / (max_count - 1) if max_count > 1 else np.ones(counts.shape)
    rgb = colormap(low + (high - low) * np.clip(step, 0.0, 1.0))[:, :3].astype(np.float64)
    rgb[counts == 0] = unsampled
    return rgb


def color_sampling(
    index: IndexLike,
    num_nodes: int,
    mode: str = "sampled",
    scores: Optional[Union[Tensor, Sequence[Tensor]]] = None,
    layer: Optional[int] = None,
    head: Optional[int] = None,
) -> np.ndarray:
    """Color the nodes of one graph by what the selected heads sampled.

    With ``layer`` or ``head`` left at :obj:`None`, the view merges them:
    ``"sampled"`` shows the union, ``"count"`` counts over all selected
    (layer, head) pairs and ``"score"`` shows the mean score.

    Args:
        index (torch.Tensor or list of torch.Tensor): ``[K]``, ``[H, K]`` or
            ``[L, H, K]`` local indices, or a list of ``[H, K]`` indices per
            layer, ``-1`` for padding. Ignored in the ``"score"`` mode, where
            it may be :obj:`None`.
        num_nodes (int): Number of nodes ``n`` of the graph.
        mode (str, optional): ``"sampled"``, ``"score"`` or ``"count"``.
            (default: :obj:`"sampled"`)
        scores (torch.Tensor or list of torch.Tensor, optional): ``[n]``,
            ``[n, H]`` or ``[L, n, H]`` scores, or a list of ``[n, H]`` scores
            per layer. Required in the ``"score"`` mode.
            (default: :obj:`None`)
        layer (int, optional): Layer to show. (default: :obj:`None`)
        head (int, optional): Head to show. (default: :obj:`None`)

    Returns:
        ``[n, 3]`` float64 array.
    """
    if mode not in MODES:
        raise ValueError(f"'mode' must be one of {MODES}, got {mode!r}.")

    if mode == "score":
        if scores is None:
            raise ValueError("mode='score' needs 'scores'. Pass the [n, H] scores of the graph.")
        level = select_scores(scores, layer, head)
        if level.numel() != num_nodes:
            raise ValueError(f"'scores' has {level.numel()} nodes, but num_nodes={num_nodes}.")
        return color_scores(level)

    if index is None:
        raise ValueError(f"mode={mode!r} needs 'index'. Pass the sampled indices of the graph.")
    if mode == "sampled":
        return color_sampled(sampled_mask(index, num_nodes, layer, head))

    rows = select_index(index, layer, head)
    return color_counts(count_heads(rows, num_nodes), max_count=max(rows.size(0), 1))
