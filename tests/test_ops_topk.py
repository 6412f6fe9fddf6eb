import pytest
import torch
from torch_geometric.nn.pool.select.topk import topk as pyg_topk

from samsa_geo.backend import installed, pure_pytorch
from samsa_geo.ops import segment_topk, segment_topk_reference

PATHS = ["dense", "sparse"]


def make_ptr(sizes):
    sizes = torch.tensor(sizes, dtype=torch.long)
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])


def tied_scores(num_nodes, heads, dtype, seed=0):
    """Scores from a small set of values, so that ties and both zeros occur."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.tensor([-2.5, -1.0, -0.0, 0.0, 0.5, 3.0])
    choice = torch.randint(len(values), (num_nodes, heads), generator=generator)
    return values[choice].to(dtype)


def assert_same(result, expected):
    assert torch.equal(result[0], expected[0])
    assert torch.equal(result[1], expected[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("selection", [{"k": 1}, {"k": 3}, {"k": 50}, {"ratio": 0.3}, {"ratio": 1.0}])
def test_segment_topk_matches_reference(dtype, path, selection):
    ptr = make_ptr([4, 0, 1, 9, 2, 0, 7, 3])
    scores = tied_scores(int(ptr[-1]), 3, dtype)

    expected = segment_topk_reference(scores, ptr=ptr, **selection)
    assert_same(segment_topk(scores, ptr=ptr, path=path, **selection), expected)
    assert_same(segment_topk(scores, ptr=ptr, **selection), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("pure", [False, True])
@pytest.mark.parametrize("selection", [{"k": 1}, {"ratio": 0.01}])
def test_segment_topk_segment_max_matches_reference(dtype, pure, selection):
    ptr = make_ptr([4, 0, 1, 9, 2, 0, 7, 3])
    scores = tied_scores(int(ptr[-1]), 3, dtype)
    expected = segment_topk_reference(scores, ptr=ptr, **selection)

    with pure_pytorch(pure):
        assert_same(segment_topk(scores, ptr=ptr, path="segment_max", **selection), expected)
        assert_same(segment_topk(scores, ptr=ptr, **selection), expected)


@pytest.mark.skipif(not installed("torch_scatter"), reason="torch_scatter is not installed")
def test_segment_topk_segment_max_backends_agree():
    generator = torch.Generator().manual_seed(5)
    sizes = torch.randint(0, 50, (300,), generator=generator)
    ptr = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])
    scores = tied_scores(int(ptr[-1]), 2, torch.float32, seed=5)

    compiled = segment_topk(scores, k=1, ptr=ptr, path="segment_max")
    with pure_pytorch():
        pure = segment_topk(scores, k=1, ptr=ptr, path="segment_max")
    assert_same(compiled, pure)


def test_segment_topk_segment_max_rejects_k2():
    with pytest.raises(ValueError, match="path='segment_max' keeps one node per graph"):
        segment_topk(torch.randn(5), k=2, path="segment_max")


@pytest.mark.parametrize("path", PATHS)
def test_segment_topk_random_matches_reference(path):
    generator = torch.Generator().manual_seed(1)
    sizes = torch.randint(0, 40, (60,), generator=generator)
    ptr = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])
    scores = torch.randn(int(ptr[-1]), 4, generator=generator)

    expected = segment_topk_reference(scores, k=6, ptr=ptr)
    assert_same(segment_topk(scores, k=6, ptr=ptr, path=path), expected)


@pytest.mark.parametrize("path", PATHS)
def test_segment_topk_ties_lower_row_first(path):
    scores = torch.tensor([1.0, 2.0, 2.0, 1.0, 2.0])
    index, mask = segment_topk(scores, k=4, path=path)

    assert index.tolist() == [[1, 2, 4, 0]]
    assert mask.all()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_segment_topk_signed_zero_ties(path, dtype):
    scores = torch.tensor([-0.0, 0.0, -0.0, -1.0, 0.0], dtype=dtype)
    index, _ = segment_topk(scores, k=5, path=path)

    assert index.tolist() == [[0, 1, 2, 4, 3]]


@pytest.mark.parametrize("path", PATHS)
def test_segment_topk_extreme_values(path):
    info = torch.finfo(torch.float32)
    scores = torch.tensor([info.max, info.min, info.tiny, -info.tiny, 1e-45, -1e-45, 0.0, 1.0])
    index, _ = segment_topk(scores, k=8, path=path)

    expected = [0, 7, 2, 4, 6, 5, 3, 1]
    assert index.tolist() == [expected]


@pytest.mark.parametrize("path", PATHS)
def test_segment_topk_small_graph_returns_all(path):
    scores = torch.tensor([[0.3], [0.9], [0.1], [0.5], [0.7]])
    index, mask = segment_topk(scores, k=3, ptr=make_ptr([2, 3]), path=path)

    assert index.shape == (2, 1, 3)
    assert index[0, 0].tolist() == [1, 0, -1]
    assert mask[0, 0].tolist() == [True, True, False]
    assert index[1, 0].tolist() == [4, 3, 2]


@pytest.mark.parametrize("path", PATHS)
def test_segment_topk_empty_graph_padding(path):
    scores = torch.randn(5, 2)
    index, mask = segment_topk(scores, k=2, ptr=make_ptr([0, 5, 0]), path=path)

    assert index.shape == (3, 2, 2)
    assert (index[0] == -1).all()
    assert (index[2] == -1).all()
    assert not mask[0].any()
    assert not mask[2].any()
    assert mask[1].all()


def test_segment_topk_trailing_empty_graphs():
    batch = torch.tensor([0, 0, 1])
    index, mask = segment_topk(torch.randn(3), k=1, batch=batch, num_graphs=4)

    assert index.shape == (4, 1)
    assert mask[:, 0].tolist() == [True, True, False, False]


def test_segment_topk_all_graphs_empty():
    index, mask = segment_topk(torch.zeros(0, 3), k=2, ptr=make_ptr([0, 0, 0]))

    assert index.shape == (3, 3, 0)
    assert mask.shape == (3, 3, 0)
    assert mask.dtype == torch.bool


def test_segment_topk_one_head_shape():
    index, mask = segment_topk(torch.randn(7), k=2, ptr=make_ptr([3, 4]))

    assert index.shape == (2, 2)
    assert mask.shape == (2, 2)


@pytest.mark.parametrize("path", PATHS)
def test_segment_topk_tensor_k(path):
    ptr = make_ptr([3, 4, 2])
    scores = torch.arange(9.0)
    k = torch.tensor([1, 3, 2])
    index, mask = segment_topk(scores, k=k, ptr=ptr, path=path)

    assert index.tolist() == [[2, -1, -1], [6, 5, 4], [8, 7, -1]]
    assert mask.sum(1).tolist() == [1, 3, 2]


@pytest.mark.parametrize("path", PATHS)
def test_segment_topk_one_large_graph(path):
    scores = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(2))
    index, mask = segment_topk(scores, k=300, path=path)

    expected = torch.topk(scores.t(), 300, dim=1).indices
    assert torch.equal(index[0], expected)
    assert mask.all()


@pytest.mark.parametrize("path", PATHS)
def test_segment_topk_many_tiny_graphs(path):
    generator = torch.Generator().manual_seed(3)
    sizes = torch.randint(1, 4, (3_000,), generator=generator)
    ptr = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])
    scores = tied_scores(int(ptr[-1]), 2, torch.float32, seed=3)

    expected = segment_topk_reference(scores, k=2, ptr=ptr)
    assert_same(segment_topk(scores, k=2, ptr=ptr, path=path), expected)


def test_segment_topk_batch_equals_ptr():
    ptr = make_ptr([3, 0, 5])
    batch = torch.tensor([0, 0, 0, 2, 2, 2, 2, 2])
    scores = torch.randn(8, 2)

    assert_same(
        segment_topk(scores, k=2, batch=batch, num_graphs=3),
        segment_topk(scores, k=2, ptr=ptr),
    )


def test_segment_topk_same_set_as_pyg():
    generator = torch.Generator().manual_seed(4)
    sizes = torch.randint(1, 30, (40,), generator=generator)
    batch = torch.repeat_interleave(torch.arange(40), sizes)
    scores = torch.randn(int(sizes.sum()), generator=generator)

    index, mask = segment_topk(scores, ratio=0.5, batch=batch)
    expected = pyg_topk(scores, 0.5, batch)

    assert sorted(index[mask].tolist()) == sorted(expected.tolist())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_segment_topk_non_finite_raises(bad):
    scores = torch.randn(4)
    scores[2] = bad

    with pytest.raises(ValueError, match="'scores' contains 1 NaN or infinite"):
        segment_topk(scores, k=2)


def test_segment_topk_unsorted_batch_raises():
    with pytest.raises(ValueError, match="sorted"):
        segment_topk(torch.randn(4), k=1, batch=torch.tensor([0, 1, 0, 1]))


@pytest.mark.parametrize(
    "scores, kwargs, message",
    [
        (torch.randn(2, 2, 2), {"k": 1}, r"shape \[N\] or \[N, H\]"),
        (torch.arange(4), {"k": 1}, "floating-point"),
        (torch.randn(4), {"k": 0}, "positive int"),
        (torch.randn(4), {"ratio": 1.5}, r"\(0, 1\]"),
        (torch.randn(4), {}, "exactly one"),
        (torch.randn(4), {"k": 2, "path": "fast"}, "'path' must be"),
    ],
)
def test_segment_topk_bad_input_raises(scores, kwargs, message):
    with pytest.raises(ValueError, match=message):
        segment_topk(scores, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("path, k", [("dense", 4), ("sparse", 4), ("segment_max", 1)])
def test_segment_topk_cuda_matches_cpu(path, k):
    ptr = make_ptr([5, 0, 40, 3])
    scores = tied_scores(int(ptr[-1]), 4, torch.float32)

    expected = segment_topk_reference(scores, k=k, ptr=ptr)
    index, mask = segment_topk(scores.cuda(), k=k, ptr=ptr.cuda(), path=path)

    assert torch.equal(index.cpu(), expected[0])
    assert torch.equal(mask.cpu(), expected[1])
