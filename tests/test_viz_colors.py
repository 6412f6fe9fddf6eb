from typing import NamedTuple

import matplotlib
import numpy as np
import pytest
import torch
from torch import Tensor

from samsa_geo.viz import (
    SAMPLED_COLOR,
    UNSAMPLED_COLOR,
    color_counts,
    color_sampled,
    color_sampling,
    color_scores,
    count_heads,
    local_sampling,
    sampled_mask,
    sampling_for_graph,
    select_index,
    select_scores,
    stack_layers,
)


class SamplingInfo(NamedTuple):
    index: Tensor
    mask: Tensor
    scores: Tensor


def make_info(sizes, heads=2, k=3, seed=0):
    """Draw k distinct nodes per graph and head, padding graphs smaller than k with -1."""
    generator = torch.Generator().manual_seed(seed)
    ptr = torch.tensor([0] + list(np.cumsum(sizes)))
    index = torch.full((len(sizes), heads, k), -1, dtype=torch.long)
    for b, n in enumerate(sizes):
        for h in range(heads):
            num_sampled = min(k, n)
            index[b, h, :num_sampled] = (
                torch.randperm(n, generator=generator)[:num_sampled] + ptr[b]
            )
    scores = torch.randn(int(ptr[-1]), heads, generator=generator)
    return SamplingInfo(index, index >= 0, scores), ptr


def count_reference(rows, num_nodes):
    counts = torch.zeros(num_nodes, dtype=torch.long)
    for row in rows.tolist():
        for node in set(row) - {-1}:
            counts[node] += 1
    return counts


@pytest.mark.parametrize("graph", [0, 1, 2, 3])
def test_sampling_for_graph_local_rows(graph):
    info, ptr = make_info([5, 0, 2, 7], heads=2, k=3)

    index, scores = sampling_for_graph(info, ptr, graph)

    start, end = int(ptr[graph]), int(ptr[graph + 1])
    for h in range(2):
        for j in range(3):
            row = int(info.index[graph, h, j])
            expected = row - start if row >= 0 else -1
            assert int(index[h, j]) == expected
    assert torch.equal(scores, info.scores[start:end])


def test_sampling_for_graph_empty_graph():
    info, ptr = make_info([4, 0, 3])

    index, scores = sampling_for_graph(info, ptr, 1)

    assert bool((index == -1).all())
    assert scores.shape == (0, 2)


def test_sampling_for_graph_respects_mask():
    info, ptr = make_info([6])
    mask = info.mask.clone()
    mask[0, 0, 1] = False

    index, _ = sampling_for_graph(SamplingInfo(info.index, mask, info.scores), ptr, 0)

    assert int(index[0, 1]) == -1
    assert int(index[0, 0]) == int(info.index[0, 0, 0])


def test_sampling_for_graph_rejects_foreign_row():
    info, ptr = make_info([4, 4])
    index = info.index.clone()
    index[0, 0, 0] = 6

    with pytest.raises(ValueError, match="row 6 for graph 0"):
        sampling_for_graph(SamplingInfo(index, index >= 0, info.scores), ptr, 0)


@pytest.mark.parametrize(
    "ptr, graph, message",
    [
        (torch.tensor([0, 8]), 0, "describes 1 graphs"),
        (torch.tensor([0, 4, 8]), 2, "'graph' must be an int"),
        (torch.tensor([0, 5, 4]), 0, "non-decreasing"),
    ],
)
def test_sampling_for_graph_rejects_bad_input(ptr, graph, message):
    info, _ = make_info([4, 4])

    with pytest.raises(ValueError, match=message):
        sampling_for_graph(info, ptr, graph)


class IndexOnly(NamedTuple):
    index: Tensor
    mask: Tensor


def test_sampling_for_graph_rejects_missing_field():
    index = torch.zeros(1, 1, 1, dtype=torch.long)

    with pytest.raises(ValueError, match="no field 'scores'"):
        sampling_for_graph(IndexOnly(index, index >= 0), torch.tensor([0, 1]), 0)


def test_local_sampling_layers_and_scores():
    info, ptr = make_info([3, 5], heads=2, k=3)

    index, scores = local_sampling([info, info], 5, ptr, 1)

    assert len(index) == 2
    assert torch.equal(index[0], sampling_for_graph(info, ptr, 1)[0])
    assert torch.equal(scores[1], info.scores[3:])


def test_local_sampling_needs_ptr_for_batch():
    info, _ = make_info([3, 5])

    with pytest.raises(ValueError, match="covers 2 graphs"):
        local_sampling(info, 5)


def test_local_sampling_rejects_size_mismatch():
    info, ptr = make_info([3, 5])

    with pytest.raises(ValueError, match="Graph 1 has 5 nodes"):
        local_sampling(info, 4, ptr, 1)


@pytest.mark.parametrize(
    "index, shape",
    [
        (torch.tensor([0, 2, -1]), (1, 1, 3)),
        (torch.tensor([[0, 2], [1, -1]]), (1, 2, 2)),
        (torch.zeros(3, 2, 4, dtype=torch.long), (3, 2, 4)),
        ([torch.tensor([[0, 1, 2]]), torch.tensor([[3]])], (2, 1, 3)),
    ],
)
def test_stack_layers_shapes(index, shape):
    assert tuple(stack_layers(index).shape) == shape


def test_stack_layers_pads_short_layer():
    stacked = stack_layers([torch.tensor([[0, 1, 2]]), torch.tensor([[3]])])

    assert stacked[1].tolist() == [[3, -1, -1]]


def test_stack_layers_rejects_head_mismatch():
    with pytest.raises(ValueError, match="same number of heads"):
        stack_layers([torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 3, dtype=torch.long)])


@pytest.mark.parametrize(
    "layer, head, expected",
    [
        (None, None, [[0, 1], [2, 3], [4, 5], [6, 7]]),
        (1, None, [[4, 5], [6, 7]]),
        (None, 0, [[0, 1], [4, 5]]),
        (-1, -1, [[6, 7]]),
    ],
)
def test_select_index_layer_head(layer, head, expected):
    index = torch.arange(8).view(2, 2, 2)

    assert select_index(index, layer, head).tolist() == expected


@pytest.mark.parametrize(
    "layer, head, name", [(2, None, "layer"), (None, 5, "head"), (0.5, None, "layer")]
)
def test_select_index_rejects_choice(layer, head, name):
    with pytest.raises(ValueError, match=f"'{name}' must be None or an int"):
        select_index(torch.zeros(2, 2, 3, dtype=torch.long), layer, head)


@pytest.mark.parametrize(
    "index",
    [
        torch.tensor([4, 0, -1]),
        torch.tensor([[0, 1, 2], [2, 3, -1], [-1, -1, -1]]),
        torch.randint(-1, 9, (3, 4, 5), generator=torch.Generator().manual_seed(1)),
    ],
)
def test_count_heads_matches_reference(index):
    rows = stack_layers(index).reshape(-1, index.size(-1))

    assert torch.equal(count_heads(index, 9), count_reference(rows, 9))


def test_count_heads_counts_duplicate_once():
    counts = count_heads(torch.tensor([[2, 2, 2], [2, 0, -1]]), 3)

    assert counts.tolist() == [1, 0, 2]


def test_sampled_mask_union_and_head():
    index = torch.tensor([[0, 3], [1, -1]])

    assert sampled_mask(index, 5).tolist() == [True, True, False, True, False]
    assert sampled_mask(index, 5, head=1).tolist() == [False, True, False, False, False]


@pytest.mark.parametrize("index", [torch.tensor([0, 5]), torch.tensor([-2, 0])])
def test_sampled_mask_rejects_out_of_range(index):
    with pytest.raises(ValueError, match="local node indices in \\[0, 5\\)"):
        sampled_mask(index, 5)


def test_sampled_mask_rejects_float_index():
    with pytest.raises(ValueError, match="integer dtype"):
        sampled_mask(torch.tensor([0.0, 1.0]), 5)


def test_select_scores_mean_and_choice():
    scores = torch.tensor([[[1.0, 3.0], [0.0, 2.0]], [[5.0, 7.0], [4.0, 6.0]]])

    assert select_scores(scores).tolist() == [4.0, 3.0]
    assert select_scores(scores, layer=0).tolist() == [2.0, 1.0]
    assert select_scores(scores, layer=1, head=0).tolist() == [5.0, 4.0]
    assert select_scores([scores[0], scores[1]], head=1).tolist() == [5.0, 4.0]


def test_select_scores_rejects_nan():
    with pytest.raises(ValueError, match="'scores' contains 1 NaN"):
        select_scores(torch.tensor([[0.0, float("nan")]]))


def test_color_sampled_two_colors():
    colors = color_sampled(torch.tensor([True, False]))

    assert colors.shape == (2, 3)
    assert np.allclose(colors[0], SAMPLED_COLOR)
    assert np.allclose(colors[1], UNSAMPLED_COLOR)


def test_color_sampled_rejects_bad_color():
    with pytest.raises(ValueError, match="'sampled_color' must be three floats"):
        color_sampled(torch.tensor([True]), sampled_color=(255, 0, 0))


def test_color_scores_normalized_per_graph():
    viridis = matplotlib.colormaps["viridis"]

    colors = color_scores(torch.tensor([10.0, 20.0, 30.0]))

    assert np.allclose(colors[0], viridis(0.0)[:3])
    assert np.allclose(colors[1], viridis(0.5)[:3])
    assert np.allclose(colors[2], viridis(1.0)[:3])


def test_color_scores_constant_and_empty():
    viridis = matplotlib.colormaps["viridis"]

    assert np.allclose(color_scores(torch.ones(4)), viridis(0.5)[:3])
    assert color_scores(torch.zeros(0)).shape == (0, 3)


def test_color_scores_rejects_nan():
    with pytest.raises(ValueError, match="'scores' contains 1 NaN"):
        color_scores(torch.tensor([0.0, float("nan")]))


def test_color_counts_zero_and_max():
    reds = matplotlib.colormaps["YlOrRd"]

    colors = color_counts(torch.tensor([0, 1, 4]), max_count=4)

    assert np.allclose(colors[0], UNSAMPLED_COLOR)
    assert np.allclose(colors[1], reds(0.35)[:3])
    assert np.allclose(colors[2], reds(1.0)[:3])


@pytest.mark.parametrize(
    "counts, max_count, message",
    [
        (torch.tensor([0, 5]), 4, "must lie in \\[0, max_count=4\\]"),
        (torch.tensor([0.5]), 4, "integer array"),
        (torch.tensor([1]), 0, "'max_count' must be a positive int"),
    ],
)
def test_color_counts_rejects_bad_input(counts, max_count, message):
    with pytest.raises(ValueError, match=message):
        color_counts(counts, max_count=max_count)


def test_color_sampling_count_uses_heads_as_max():
    reds = matplotlib.colormaps["YlOrRd"]
    index = torch.tensor([[0, 1], [0, 2], [0, -1]])

    colors = color_sampling(index, 4, mode="count")

    assert np.allclose(colors[0], reds(1.0)[:3])
    assert np.allclose(colors[1], reds(0.35)[:3])
    assert np.allclose(colors[3], UNSAMPLED_COLOR)


def test_color_sampling_score_needs_scores():
    with pytest.raises(ValueError, match="mode='score' needs 'scores'"):
        color_sampling(torch.tensor([0]), 2, mode="score")


def test_color_sampling_rejects_mode():
    with pytest.raises(ValueError, match="'mode' must be one of"):
        color_sampling(torch.tensor([0]), 2, mode="heads")


@pytest.mark.parametrize(
    "index, expected",
    [
        ([1, 3], [False, True, False, True]),
        ([], [False, False, False, False]),
        (torch.zeros(2, 0, dtype=torch.long), [False, False, False, False]),
        (np.array([[0, -1]]), [True, False, False, False]),
    ],
)
def test_sampled_mask_input_layouts(index, expected):
    assert sampled_mask(index, 4).tolist() == expected


def test_color_sampling_empty_graph():
    assert color_sampling(torch.zeros(2, 0, dtype=torch.long), 0).shape == (0, 3)
    assert color_sampling(None, 0, mode="score", scores=torch.zeros(0, 2)).shape == (0, 3)
    assert color_sampling(torch.full((2, 3), -1), 0, mode="count").shape == (0, 3)


def test_sampling_for_graph_real_layer():
    nn = pytest.importorskip("samsa_geo.nn")
    torch.manual_seed(0)
    conv = nn.SAMSAConv(8, 8, heads=2, k=3, num_registers=2).eval()
    x = torch.randn(10, 8)
    batch = torch.tensor([0, 0, 0, 0, 0, 2, 2, 3, 3, 3])
    ptr = torch.tensor([0, 5, 5, 7, 10])

    _, info = conv(x, batch=batch, num_graphs=4, return_sampling=True)

    for graph in range(4):
        index, scores = sampling_for_graph(info, ptr, graph)
        start = int(ptr[graph])
        nodes = info.mask[graph] & (info.index[graph] >= 0)
        assert torch.equal(index[nodes], info.index[graph][nodes] - start)
        assert bool((index[~nodes] == -1).all()), "register or padding slot kept a node index"
        assert torch.equal(scores, info.scores[start : int(ptr[graph + 1])])
