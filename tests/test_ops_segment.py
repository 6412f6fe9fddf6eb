import pytest
import torch

from samsa_geo.ops.segment import batch_to_ptr, check_finite, resolve_segments


def test_check_finite_overflowing_sum_passes():
    x = torch.full((4, 3), 3e38)

    assert not torch.isfinite(x.sum())
    check_finite(x, "x")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_check_finite_counts_bad_entries(bad):
    x = torch.full((4, 3), 3e38)
    x[1, 2] = bad
    x[3, 0] = bad

    with pytest.raises(ValueError, match="'x' contains 2 NaN or infinite value"):
        check_finite(x, "x")


def test_check_finite_half_precision():
    x = torch.full((100,), 60000.0, dtype=torch.float16)
    check_finite(x, "x")

    x[7] = float("nan")
    with pytest.raises(ValueError, match="'x' contains 1 NaN"):
        check_finite(x, "x")


@pytest.mark.parametrize("sizes, num_graphs", [
    ([3, 1, 4], None),
    ([3, 0, 4], None),
    ([2, 5], 4),
    ([1] * 9, None),
    ([6], 1),
])
def test_resolve_segments_batch_ptr(sizes, num_graphs):
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    expected = batch_to_ptr(batch, num_graphs)

    out_batch, ptr = resolve_segments(batch.numel(), batch=batch, num_graphs=num_graphs)

    assert torch.equal(out_batch, batch)
    assert ptr.dtype == torch.long
    assert torch.equal(ptr, expected)


def test_resolve_segments_int32_batch():
    batch = torch.tensor([0, 0, 2, 2, 2], dtype=torch.int32)

    _, ptr = resolve_segments(5, batch=batch)

    assert ptr.tolist() == [0, 2, 2, 5]
    assert ptr.dtype == torch.long


@pytest.mark.parametrize("batch, num_graphs, message", [
    ([0, 1, 0], None, "'batch' must be sorted"),
    ([-1, 0, 0], None, "'batch' must be non-negative, got minimum -1"),
    ([1, 0, -2], None, "'batch' must be non-negative, got minimum -2"),
    ([0, 1, 2], 2, "graph index 2, but num_graphs=2"),
])
def test_resolve_segments_bad_batch(batch, num_graphs, message):
    batch = torch.tensor(batch)
    with pytest.raises(ValueError, match=message):
        resolve_segments(batch.numel(), batch=batch, num_graphs=num_graphs)


@pytest.mark.parametrize("ptr, message", [
    ([1, 3], r"start at 0 and end at the number of nodes \(3\), got ptr\[0\]=1"),
    ([0, 2], r"got ptr\[0\]=0 and ptr\[-1\]=2"),
    ([0, 2, 1, 3], "'ptr' must be non-decreasing"),
])
def test_resolve_segments_bad_ptr(ptr, message):
    with pytest.raises(ValueError, match=message):
        resolve_segments(3, ptr=torch.tensor(ptr))


def test_resolve_segments_ptr_only_one_entry():
    batch, ptr = resolve_segments(0, ptr=torch.tensor([0]))

    assert batch.numel() == 0
    assert ptr.tolist() == [0]
