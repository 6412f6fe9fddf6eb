import math

import pytest
import torch

from samsa_geo import backend
from samsa_geo.ops import fps, resolve_k, resolve_segments
from samsa_geo.ops.fps import _fps_pure, _fps_reference, _size_buckets

needs_cluster = pytest.mark.skipif(
    not backend.installed("torch_cluster"), reason="torch-cluster is not installed"
)

# Graph sizes of the ragged layouts the tests run on. Zeros are empty graphs.
LAYOUTS = {
    "one_graph": [300],
    "ragged": [7, 0, 1, 40, 2, 129],
    "many_tiny": [3, 1, 2, 5, 4] * 40,
    "empty_last": [10, 20, 0],
}


def _points(sizes, dim=3, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    pos = torch.randn(sum(sizes), dim, generator=generator, dtype=dtype)
    ptr = torch.tensor([0] + sizes).cumsum(0)
    return pos, ptr


def _reference(pos, ptr, ratio=None, k=None, start=None):
    counts = resolve_k(ptr[1:] - ptr[:-1], k=k, ratio=ratio)
    return _fps_reference(pos, ptr, counts, start)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("ratio", [0.1, 0.5, 1.0])
def test_fps_pure_matches_reference(layout, ratio):
    pos, ptr = _points(LAYOUTS[layout])
    with backend.pure_pytorch():
        index = fps(pos, ptr=ptr, ratio=ratio, random_start=False)
    assert torch.equal(index, _reference(pos, ptr, ratio=ratio))


@pytest.mark.parametrize("k", [1, 3, 50])
def test_fps_k_matches_reference(k):
    pos, ptr = _points(LAYOUTS["ragged"])
    with backend.pure_pytorch():
        index = fps(pos, ptr=ptr, k=k, random_start=False)
    assert torch.equal(index, _reference(pos, ptr, k=k))


def test_fps_batch_vector_equals_ptr():
    pos, ptr = _points([5, 8, 3])
    batch = torch.tensor([0] * 5 + [1] * 8 + [2] * 3)
    by_batch = fps(pos, batch, ratio=0.5, random_start=False)
    by_ptr = fps(pos, ptr=ptr, ratio=0.5, random_start=False)
    assert torch.equal(by_batch, by_ptr)


def test_fps_counts_and_layout():
    sizes = [7, 0, 1, 40, 2, 129]
    pos, ptr = _points(sizes)
    index = fps(pos, ptr=ptr, ratio=0.3, random_start=False)

    graph = torch.bucketize(index, ptr[1:], right=True)
    expected = [max(1, math.ceil(0.3 * n - 1e-7)) if n > 0 else 0 for n in sizes]
    assert torch.bincount(graph, minlength=len(sizes)).tolist() == expected
    assert bool((graph[1:] >= graph[:-1]).all())
    assert index.dtype == torch.long


def test_fps_graph_smaller_than_k():
    pos, ptr = _points([3, 10])
    index = fps(pos, ptr=ptr, k=5, random_start=False)
    assert sorted(index[:3].tolist()) == [0, 1, 2]
    assert index.numel() == 8


def test_fps_single_point_graph():
    pos, ptr = _points([1])
    assert fps(pos, ptr=ptr, ratio=0.5, random_start=False).tolist() == [0]
    assert fps(pos, ptr=ptr, ratio=0.5, random_start=True).tolist() == [0]


def test_fps_empty_input():
    index = fps(torch.empty(0, 3), ratio=0.5)
    assert index.shape == (0,)
    assert index.dtype == torch.long


def test_fps_trailing_empty_graphs():
    pos, _ = _points([4, 6])
    batch = torch.tensor([0] * 4 + [1] * 6)
    index = fps(pos, batch, ratio=0.5, random_start=False, num_graphs=4)
    assert index.numel() == 5


def test_fps_selection_is_farthest():
    pos = torch.tensor([[0.0], [1.0], [3.0], [10.0], [6.0]])
    index = fps(pos, k=4, random_start=False)
    assert index.tolist() == [0, 3, 4, 2]


def test_fps_equal_distances_pick_lowest_row():
    # From the center, all four corners of the square are equally far.
    pos = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    index = fps(pos, k=3, random_start=False)
    assert index.tolist() == [0, 1, 2]


def test_fps_ties_break_to_lowest_row():
    grid = torch.stack(torch.meshgrid(torch.arange(6.0), torch.arange(6.0), indexing="ij"), dim=-1)
    pos = grid.view(-1, 2)
    ptr = torch.tensor([0, 36])
    with backend.pure_pytorch():
        index = fps(pos, ratio=0.5, random_start=False)
    assert torch.equal(index, _reference(pos, ptr, ratio=0.5))


def test_fps_random_start_uses_generator():
    pos, ptr = _points(LAYOUTS["ragged"])
    first = fps(pos, ptr=ptr, ratio=0.5, generator=torch.Generator().manual_seed(3))
    again = fps(pos, ptr=ptr, ratio=0.5, generator=torch.Generator().manual_seed(3))
    other = fps(pos, ptr=ptr, ratio=0.5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_fps_random_start_matches_reference():
    sizes = [7, 0, 1, 40, 2, 129]
    pos, ptr = _points(sizes)
    with backend.pure_pytorch():
        index = fps(pos, ptr=ptr, ratio=0.5, generator=torch.Generator().manual_seed(5))

    counts = resolve_k(ptr[1:] - ptr[:-1], ratio=0.5)
    out_ptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    start = torch.zeros(len(sizes), dtype=torch.long)
    nonempty = counts > 0
    start[nonempty] = index[out_ptr[:-1][nonempty]] - ptr[:-1][nonempty]
    assert torch.equal(index, _fps_reference(pos, ptr, counts, start))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_fps_dtypes(dtype):
    pos, ptr = _points([20, 30], dtype=torch.float64)
    pos = pos.to(dtype)
    with backend.pure_pytorch():
        index = fps(pos, ptr=ptr, ratio=0.25, random_start=False)
    assert torch.equal(index, _reference(pos, ptr, ratio=0.25))


def test_fps_large_graph_matches_reference():
    pos, ptr = _points([20_000])
    counts = torch.tensor([40])
    index = _fps_pure(pos, ptr, counts)
    assert torch.equal(index, _fps_reference(pos, ptr, counts))


def test_fps_buckets_bound_padding():
    sizes = torch.tensor([1, 2, 3, 4, 5, 0, 17, 1000, 513, 9])
    buckets = _size_buckets(sizes)
    padded = sum(int(sizes[b].max()) * b.numel() for b in buckets)
    assert sorted(torch.cat(buckets).tolist()) == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert padded <= 2 * int(sizes.sum())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pos": torch.tensor([[0.0, float("nan")], [1.0, 1.0]])}, "'pos'"),
        ({"pos": torch.tensor([[0.0, float("inf")], [1.0, 1.0]])}, "'pos'"),
        ({"ratio": 0.0}, "'ratio'"),
        ({"ratio": 1.5}, "'ratio'"),
        ({"k": 0}, "'k'"),
        ({"k": -2}, "'k'"),
        ({"batch": torch.tensor([1, 0])}, "'batch'"),
        ({"batch": torch.tensor([0, 0, 0])}, "'batch'"),
        ({"ptr": torch.tensor([0, 3])}, "'ptr'"),
        ({"pos": torch.tensor([[0, 1], [2, 3]])}, "'pos'"),
        ({"pos": torch.zeros(2, 3, 4)}, "'pos'"),
    ],
)
def test_fps_invalid_input(kwargs, match):
    args = {"pos": torch.tensor([[0.0, 0.0], [1.0, 1.0]])}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fps(**args)


@needs_cluster
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_fps_torch_cluster_agrees(layout):
    pos, ptr = _points(LAYOUTS[layout])
    with backend.pure_pytorch(False):
        fast = fps(pos, ptr=ptr, ratio=0.3, random_start=False)
        seeded = fps(pos, ptr=ptr, ratio=0.3, generator=torch.Generator().manual_seed(1))
    with backend.pure_pytorch():
        pure = fps(pos, ptr=ptr, ratio=0.3, random_start=False)
        pure_seeded = fps(pos, ptr=ptr, ratio=0.3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(fast, pure)
    assert torch.equal(seeded, pure_seeded)


@needs_cluster
def test_fps_torch_cluster_direct_call():
    import torch_cluster

    pos, ptr = _points([50, 70])
    batch, _ = resolve_segments(pos.size(0), ptr=ptr)
    expected = torch_cluster.fps(pos, batch, ratio=0.5, random_start=False)
    with backend.pure_pytorch():
        assert torch.equal(fps(pos, batch, ratio=0.5, random_start=False), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fps_cuda_matches_cpu():
    pos, ptr = _points(LAYOUTS["ragged"])
    with backend.pure_pytorch():
        cpu = fps(pos, ptr=ptr, ratio=0.5, random_start=False)
        cuda = fps(pos.cuda(), ptr=ptr.cuda(), ratio=0.5, random_start=False)
    assert torch.equal(cuda.cpu(), cpu)
