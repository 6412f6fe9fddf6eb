import math

import pytest
import torch

from samsa_geo.ops import segment_attention, segment_attention_reference

PATHS = ["dense", "bucketed"]
HEADS = 2


def make_inputs(sizes, num_keys=4, dim=8, value_dim=5, dtype=torch.float32, seed=0):
    """Random queries, keys and values for graphs of the given sizes. Graph b
    keeps min(num_keys, n_b) valid slots per head, with the rest padding."""
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.tensor(sizes, dtype=torch.long)
    ptr = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])
    batch = torch.repeat_interleave(torch.arange(sizes.numel()), sizes)
    num_graphs, num_nodes = sizes.numel(), int(ptr[-1])

    q = torch.randn(num_nodes, HEADS, dim, dtype=dtype, generator=generator)
    k = torch.randn(num_graphs, HEADS, num_keys, dim, dtype=dtype, generator=generator)
    v = torch.randn(num_graphs, HEADS, num_keys, value_dim, dtype=dtype, generator=generator)
    kept = sizes.clamp(max=num_keys)
    mask = torch.arange(num_keys).view(1, 1, -1) < kept.view(-1, 1, 1)
    mask = mask.expand(num_graphs, HEADS, num_keys).contiguous()
    return q, k, v, mask, batch, ptr


VARIED = [3, 0, 1, 30, 7, 0, 2, 120, 5]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sizes", [VARIED, [50], [1] * 40], ids=["varied", "one_graph", "tiny"])
def test_segment_attention_matches_reference(path, dtype, sizes):
    q, k, v, mask, batch, ptr = make_inputs(sizes, dtype=dtype)
    expected = segment_attention_reference(q, k, v, mask, batch, ptr)
    out = segment_attention(q, k, v, mask, batch, ptr, path=path)

    tolerance = 1e-5 if dtype == torch.float32 else 1e-10
    assert out.dtype == dtype
    assert torch.allclose(out, expected, atol=tolerance)
    assert torch.allclose(segment_attention(q, k, v, mask, batch, ptr), expected, atol=tolerance)


@pytest.mark.parametrize("path", PATHS)
def test_segment_attention_grads_match_reference(path):
    inputs = [x.requires_grad_() for x in make_inputs(VARIED, dtype=torch.float64)[:3]]
    _, _, _, mask, batch, ptr = make_inputs(VARIED, dtype=torch.float64)
    grad_out = torch.randn(int(ptr[-1]), HEADS, 5, dtype=torch.float64)

    out = segment_attention(*inputs, mask, batch, ptr, path=path)
    got = torch.autograd.grad(out, inputs, grad_out)
    expected_out = segment_attention_reference(*inputs, mask, batch, ptr)
    expected = torch.autograd.grad(expected_out, inputs, grad_out)

    for name, a, b in zip("qkv", got, expected):
        assert torch.allclose(a, b, atol=1e-10), name


@pytest.mark.parametrize("path", PATHS)
def test_segment_attention_one_valid_key(path):
    q, k, v, mask, batch, ptr = make_inputs([6, 4])
    mask[0] = False
    mask[0, :, 2] = True
    k[0, :, [0, 1, 3]] = float("nan")
    out = segment_attention(q, k, v, mask, batch, ptr, path=path)

    expected = v[0, :, 2].unsqueeze(0).expand(6, HEADS, v.size(-1))
    assert torch.allclose(out[:6], expected)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("path", PATHS)
def test_segment_attention_graphs_isolated(path):
    q, k, v, mask, batch, ptr = make_inputs(VARIED)
    out = segment_attention(q, k, v, mask, batch, ptr, path=path)

    k2, v2 = k.clone(), v.clone()
    k2[3] = torch.randn_like(k2[3])
    v2[3] = 100.0
    changed = segment_attention(q, k2, v2, mask, batch, ptr, path=path)

    in_graph = batch == 3
    assert torch.equal(out[~in_graph], changed[~in_graph])
    assert not torch.allclose(out[in_graph], changed[in_graph])


@pytest.mark.parametrize("path", PATHS)
def test_segment_attention_empty_graphs_finite_grads(path):
    q, k, v, mask, batch, ptr = make_inputs([0, 3, 0, 0, 2, 0])
    inputs = [x.requires_grad_() for x in (q, k, v)]
    out = segment_attention(*inputs, mask, batch, ptr, path=path)
    out.sum().backward()

    assert out.shape == (5, HEADS, 5)
    for x in inputs:
        assert torch.isfinite(x.grad).all()
    assert (k.grad[[0, 2, 3, 5]] == 0).all()


def test_segment_attention_all_graphs_empty():
    q, k, v, mask, batch, ptr = make_inputs([0, 0], num_keys=0)
    out = segment_attention(q, k, v, mask, batch, ptr)

    assert out.shape == (0, HEADS, 5)


def test_segment_attention_scale():
    q, k, v, mask, batch, ptr = make_inputs([4, 6])
    out = segment_attention(q, k, v, mask, batch, ptr, scale=0.3)

    assert torch.allclose(out, segment_attention_reference(q, k, v, mask, batch, ptr, scale=0.3), atol=1e-6)
    assert torch.allclose(
        segment_attention(q, k, v, mask, batch, ptr),
        segment_attention(q, k, v, mask, batch, ptr, scale=1 / math.sqrt(q.size(-1))),
    )


def test_segment_attention_ptr_only():
    q, k, v, mask, batch, ptr = make_inputs(VARIED)

    assert torch.equal(
        segment_attention(q, k, v, mask, ptr=ptr), segment_attention(q, k, v, mask, batch=batch)
    )


def test_segment_attention_dropout_changes_output():
    q, k, v, mask, batch, ptr = make_inputs([20])
    torch.manual_seed(0)
    out = segment_attention(q, k, v, mask, batch, ptr, dropout_p=0.5)

    assert not torch.allclose(out, segment_attention(q, k, v, mask, batch, ptr))


def test_segment_attention_keyless_graph_raises():
    q, k, v, mask, batch, ptr = make_inputs([3, 2])
    mask[1, 1] = False

    with pytest.raises(ValueError, match="Graph 1 has 2 nodes but a head without any valid key"):
        segment_attention(q, k, v, mask, batch, ptr)


@pytest.mark.parametrize(
    "index, replacement, message",
    [
        (0, torch.zeros(5, 8), r"'q' must have shape \[N, H, d\]"),
        (1, torch.zeros(2, HEADS, 4, 7), "'k' must have shape"),
        (2, torch.zeros(2, HEADS, 3, 5), "'v' must have shape"),
        (3, torch.ones(2, HEADS, 4), "'mask' must be a bool tensor"),
    ],
)
def test_segment_attention_bad_input_raises(index, replacement, message):
    inputs = list(make_inputs([3, 2]))
    inputs[index] = replacement

    with pytest.raises(ValueError, match=message):
        segment_attention(*inputs)


def test_segment_attention_bad_path_raises():
    with pytest.raises(ValueError, match="'path' must be"):
        segment_attention(*make_inputs([3]), path="chunked")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("path", PATHS)
def test_segment_attention_cuda_matches_reference(path):
    q, k, v, mask, batch, ptr = make_inputs(VARIED)
    expected = segment_attention_reference(q, k, v, mask, batch, ptr)
    out = segment_attention(q.cuda(), k.cuda(), v.cuda(), mask.cuda(), batch.cuda(), ptr.cuda(), path=path)

    assert torch.allclose(out.cpu(), expected, atol=1e-4)
