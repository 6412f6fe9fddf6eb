import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import EdgeConv

from samsa_geo import backend
from samsa_geo.ops import knn, knn_graph, resolve_segments
from samsa_geo.ops.knn import _blocks, _kd_order, _knn_pure, _knn_reference

needs_cluster = pytest.mark.skipif(
    not backend.installed("torch_cluster"), reason="torch-cluster is not installed"
)

# (sizes of x, sizes of y) per graph for the ragged layouts. Zeros are empty.
LAYOUTS = {
    "one_graph": ([400], [150]),
    "ragged": ([7, 0, 1, 60, 3, 129], [5, 4, 2, 0, 9, 70]),
    "many_tiny": ([3, 1, 2, 5, 4] * 30, [2, 2, 1, 3, 4] * 30),
    "empty_last_y": ([10, 20, 6], [4, 5, 0]),
    "padded_last_y": ([10, 9], [7, 5]),
    "large": ([3_000, 20], [400, 5]),
}


def _cloud(sizes, dim=3, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    points = torch.randn(sum(sizes), dim, generator=generator, dtype=dtype)
    ptr = torch.tensor([0] + sizes).cumsum(0)
    return points, ptr


def _pair(layout, dim=3, dtype=torch.float64):
    sizes_x, sizes_y = LAYOUTS[layout]
    x, ptr_x = _cloud(sizes_x, dim, seed=0, dtype=dtype)
    y, ptr_y = _cloud(sizes_y, dim, seed=1, dtype=dtype)
    return x, y, ptr_x, ptr_y


def _grid(size):
    axis = torch.arange(float(size))
    return torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).view(-1, 2)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("k", [1, 4, 16])
@pytest.mark.parametrize("chunk_size", [None, 64])
def test_knn_pure_matches_reference(layout, k, chunk_size):
    x, y, ptr_x, ptr_y = _pair(layout)
    with backend.pure_pytorch():
        index = knn(x, y, k, ptr_x=ptr_x, ptr_y=ptr_y, chunk_size=chunk_size)
    expected, _ = _knn_reference(x, y, k, ptr_x, ptr_y)
    assert torch.equal(index, expected)


def test_knn_batch_vectors_equal_ptr():
    x, y, ptr_x, ptr_y = _pair("ragged")
    batch_x, _ = resolve_segments(x.size(0), ptr=ptr_x)
    batch_y, _ = resolve_segments(y.size(0), ptr=ptr_y)
    by_batch = knn(x, y, 3, batch_x, batch_y)
    by_ptr = knn(x, y, 3, ptr_x=ptr_x, ptr_y=ptr_y)
    assert torch.equal(by_batch, by_ptr)


def test_knn_float32_distances_match_reference():
    x, y, ptr_x, ptr_y = _pair("ragged", dtype=torch.float32)
    x = x * 100.0 + 1000.0
    y = y * 100.0 + 1000.0
    with backend.pure_pytorch():
        row, col = knn(x, y, 8, ptr_x=ptr_x, ptr_y=ptr_y)
    _, expected = _knn_reference(x, y, 8, ptr_x, ptr_y)
    dist = (x[col] - y[row]).norm(dim=-1)
    torch.testing.assert_close(dist, expected, rtol=1e-5, atol=1e-4)


def test_knn_ties_distances_match_reference():
    points = _grid(8)
    ptr = torch.tensor([0, 64])
    with backend.pure_pytorch():
        row, col = knn(points, points, 6, ptr_x=ptr, ptr_y=ptr)
    expected_index, expected = _knn_reference(points, points, 6, ptr, ptr)
    dist = (points[col] - points[row]).norm(dim=-1)
    assert torch.equal(row, expected_index[0])
    assert torch.equal(dist, expected)


def test_knn_graph_smaller_than_k():
    x, _ = _cloud([3, 10])
    y, _ = _cloud([2, 1], seed=1)
    row, col = knn(x, y, 5, ptr_x=torch.tensor([0, 3, 13]), ptr_y=torch.tensor([0, 2, 3]))
    assert torch.bincount(row).tolist() == [3, 3, 5]
    assert sorted(col[:3].tolist()) == [0, 1, 2]
    assert bool((col[6:] >= 3).all())


def test_knn_empty_graph_in_x():
    x, _ = _cloud([4, 0, 5])
    y, _ = _cloud([2, 3, 1], seed=1)
    row, col = knn(x, y, 2, ptr_x=torch.tensor([0, 4, 4, 9]), ptr_y=torch.tensor([0, 2, 5, 6]))
    assert torch.bincount(row, minlength=6).tolist() == [2, 2, 0, 0, 0, 2]
    assert bool((col[4:] >= 4).all())


def test_knn_empty_inputs():
    x, _ = _cloud([5])
    index = knn(x, torch.empty(0, 3, dtype=x.dtype), 3)
    assert index.shape == (2, 0)
    assert index.dtype == torch.long
    assert knn(torch.empty(0, 3, dtype=x.dtype), x, 3).shape == (2, 0)


def test_knn_trailing_empty_graphs_align():
    x, _ = _cloud([4, 3])
    y, _ = _cloud([2], seed=1)
    batch_x = torch.tensor([0] * 4 + [1] * 3)
    batch_y = torch.tensor([0, 0])
    row, col = knn(x, y, 10, batch_x, batch_y)
    assert row.tolist() == [0] * 4 + [1] * 4
    assert bool((col < 4).all())


def test_knn_brute_force_row_chunks():
    # One graph of 20,000 points with tiling off: chunk_size=100,000 splits
    # the 60 queries into 12 row chunks of 5 rows.
    x, ptr_x = _cloud([20_000], dtype=torch.float32)
    y, ptr_y = _cloud([60], seed=1, dtype=torch.float32)
    blocks = list(_blocks(ptr_x[1:] - ptr_x[:-1], ptr_y[1:] - ptr_y[:-1], 100_000))
    assert len(blocks) == 12
    assert all((hi - lo) * 20_000 <= 100_000 for _, lo, hi in blocks)

    index = _knn_pure(x, y, 8, ptr_x, ptr_y, chunk_size=100_000, tile_min_points=10**9)
    expected, _ = _knn_reference(x, y, 8, ptr_x, ptr_y)
    assert torch.equal(index, expected)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("chunk_size", [None, 5_000])
def test_knn_tiled_matches_reference(dim, chunk_size):
    x, ptr_x = _cloud([3_000, 40, 2_500], dim=dim)
    y, ptr_y = _cloud([500, 10, 700], dim=dim, seed=1)
    index = _knn_pure(x, y, 16, ptr_x, ptr_y, chunk_size=chunk_size or 1 << 22, tile_min_points=2_048)
    expected, _ = _knn_reference(x, y, 16, ptr_x, ptr_y)
    assert torch.equal(index, expected)


def test_knn_tiled_large_cloud():
    # 20,000 points, one graph, and a chunk size that forces many steps.
    x, ptr_x = _cloud([20_000], dtype=torch.float32)
    y, ptr_y = _cloud([300], seed=1, dtype=torch.float32)
    index = _knn_pure(x, y, 8, ptr_x, ptr_y, chunk_size=50_000, tile_min_points=2_048)
    expected, _ = _knn_reference(x, y, 8, ptr_x, ptr_y)
    assert torch.equal(index, expected)


def test_knn_tiled_duplicates_and_ties():
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 6, (3_000, 3), generator=generator).double()
    ptr = torch.tensor([0, 3_000])
    index = _knn_pure(x, x, 8, ptr, ptr, chunk_size=1 << 22, tile_min_points=2_048)
    expected_index, expected = _knn_reference(x, x, 8, ptr, ptr)
    dist = (x[index[1]] - x[index[0]]).norm(dim=-1)
    assert torch.equal(index[0], expected_index[0])
    assert torch.equal(dist, expected)


def test_kd_order_is_permutation():
    x, _ = _cloud([1_000])
    perm = _kd_order(x, 32)
    assert sorted(perm.tolist()) == list(range(1_000))


def test_kd_order_tiles_are_compact():
    # Leaves of 32 uniform points in the unit cube span about a 32/N share of
    # it, far less than a run of 32 rows in the original random order.
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(4_096, 3, generator=generator)
    tiles = x[_kd_order(x, 32)].view(-1, 32, 3)
    volume = (tiles.amax(1) - tiles.amin(1)).prod(-1)
    assert float(volume.max()) < 0.05


def test_knn_blocks_group_small_graphs():
    sizes = torch.tensor([5] * 200)
    blocks = list(_blocks(sizes, sizes, 1000))
    assert len(blocks) == 5
    assert sum(graphs.numel() for graphs, _, _ in blocks) == 200


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x": torch.tensor([[float("nan"), 0.0]])}, "'x'"),
        ({"y": torch.tensor([[0.0, float("inf")]])}, "'y'"),
        ({"y": torch.zeros(1, 3)}, "columns"),
        ({"k": 0}, "'k'"),
        ({"k": 2.5}, "'k'"),
        ({"cosine": True}, "cosine"),
        ({"batch_x": torch.tensor([1, 0])}, "'batch'"),
        ({"batch_y": torch.tensor([0, 0, 0])}, "'batch'"),
        ({"batch_x": torch.tensor([0, 1])}, "batch_y"),
        ({"chunk_size": 0}, "'chunk_size'"),
    ],
)
def test_knn_invalid_input(kwargs, match):
    args = {"x": torch.tensor([[0.0, 0.0], [1.0, 1.0]]), "y": torch.tensor([[0.5, 0.5]]), "k": 1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        knn(**args)


@pytest.mark.parametrize("pure", [True, False])
@pytest.mark.parametrize("loop", [False, True])
def test_knn_graph_degrees(loop, pure):
    x, ptr = _cloud([1, 3, 30])
    with backend.pure_pytorch(pure):
        source, target = knn_graph(x, 4, ptr=ptr, loop=loop)
    degree = torch.bincount(target, minlength=34)
    small = 1 if loop else 0
    middle = 3 if loop else 2
    assert degree.tolist() == [small] + [middle] * 3 + [4] * 30
    assert bool((source == target).any()) == loop


def test_knn_graph_matches_reference():
    x, ptr = _cloud([7, 0, 50, 2])
    with backend.pure_pytorch():
        edge_index = knn_graph(x, 5, ptr=ptr, flow="target_to_source")
    index, _ = _knn_reference(x, x, 6, ptr, ptr)
    expected = index[:, index[0] != index[1]]
    assert torch.equal(edge_index, expected)


def test_knn_graph_flow_direction():
    x, _ = _cloud([20])
    forward = knn_graph(x, 3, flow="source_to_target")
    backward = knn_graph(x, 3, flow="target_to_source")
    assert torch.equal(forward, backward.flip(0))


@pytest.mark.parametrize("pure", [True, False])
def test_knn_graph_duplicate_points(pure):
    x = torch.tensor([[0.0, 0.0]] * 4 + [[5.0, 5.0]])
    with backend.pure_pytorch(pure):
        source, target = knn_graph(x, 3)
    assert torch.bincount(target, minlength=5).tolist() == [3] * 5
    assert not bool((source == target).any())


def test_knn_graph_invalid_flow():
    with pytest.raises(ValueError, match="'flow'"):
        knn_graph(torch.zeros(3, 2), 2, flow="both")


def test_knn_graph_feeds_edgeconv():
    # A real PyG DataLoader batch, and EdgeConv with max aggregation, against
    # the same update computed by hand from the reference neighbours.
    generator = torch.Generator().manual_seed(0)
    clouds = [Data(pos=torch.randn(n, 3, generator=generator)) for n in (12, 3, 25)]
    batch = next(iter(DataLoader(clouds, batch_size=3)))
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8))
    conv = EdgeConv(mlp, aggr="max")

    edge_index = knn_graph(batch.pos, 4, batch.batch)
    out = conv(batch.pos, edge_index)

    index, _ = _knn_reference(batch.pos, batch.pos, 5, batch.ptr, batch.ptr)
    query, neighbour = index[:, index[0] != index[1]]
    messages = mlp(torch.cat([batch.pos[query], batch.pos[neighbour] - batch.pos[query]], dim=-1))
    expected = torch.full_like(out, float("-inf")).scatter_reduce(
        0, query.unsqueeze(-1).expand_as(messages), messages, reduce="amax"
    )
    assert isinstance(batch, Batch)
    torch.testing.assert_close(out, expected)


@needs_cluster
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_knn_torch_cluster_agrees(layout):
    x, y, ptr_x, ptr_y = _pair(layout)
    with backend.pure_pytorch(False):
        fast = knn(x, y, 6, ptr_x=ptr_x, ptr_y=ptr_y)
    with backend.pure_pytorch():
        pure = knn(x, y, 6, ptr_x=ptr_x, ptr_y=ptr_y)
    assert torch.equal(fast[0], pure[0])
    for query in torch.unique(pure[0]).tolist():
        assert set(fast[1, fast[0] == query].tolist()) == set(pure[1, pure[0] == query].tolist())


@needs_cluster
def test_knn_torch_cluster_ties_agree():
    points = _grid(8)
    with backend.pure_pytorch(False):
        row_fast, col_fast = knn(points, points, 6)
    with backend.pure_pytorch():
        row, col = knn(points, points, 6)
    assert torch.equal(row_fast, row)
    fast = (points[col_fast] - points[row_fast]).norm(dim=-1).view(-1, 6).sort(dim=1).values
    pure = (points[col] - points[row]).norm(dim=-1).view(-1, 6).sort(dim=1).values
    assert torch.equal(fast, pure)


@needs_cluster
@pytest.mark.parametrize("loop", [False, True])
def test_knn_graph_torch_cluster_agrees(loop):
    import torch_cluster

    x, ptr = _cloud([7, 1, 50, 2])
    batch, _ = resolve_segments(x.size(0), ptr=ptr)
    expected = torch_cluster.knn_graph(x, 5, batch, loop=loop)
    with backend.pure_pytorch():
        edge_index = knn_graph(x, 5, batch, loop=loop)
    assert torch.equal(edge_index[1], expected[1])
    for node in range(x.size(0)):
        assert set(edge_index[0, edge_index[1] == node].tolist()) == set(
            expected[0, expected[1] == node].tolist()
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_knn_cuda_matches_cpu():
    x, y, ptr_x, ptr_y = _pair("ragged")
    with backend.pure_pytorch():
        cpu = knn(x, y, 5, ptr_x=ptr_x, ptr_y=ptr_y)
        cuda = knn(x.cuda(), y.cuda(), 5, ptr_x=ptr_x.cuda(), ptr_y=ptr_y.cuda())
    assert torch.equal(cuda.cpu(), cpu)


def test_knn_graph_large_cloud():
    # 3,000 points take the tiled search inside knn_graph.
    x, ptr = _cloud([3_000])
    with backend.pure_pytorch():
        edge_index = knn_graph(x, 10, flow="target_to_source")
    index, _ = _knn_reference(x, x, 11, ptr, ptr)
    expected = index[:, index[0] != index[1]]
    assert torch.equal(edge_index, expected)
