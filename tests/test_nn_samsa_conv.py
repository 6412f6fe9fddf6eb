import math

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from samsa_geo.backend import installed, pure_pytorch
from samsa_geo.nn import SAMSAConv, SamplingInfo
from samsa_geo.nn.samsa_conv import _sampling_info
from samsa_geo.ops import append_registers, samsa_sample, segment_attention
from samsa_geo.ops.segment import resolve_k


def make_batch(sizes, channels=8, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(sizes), channels, generator=generator, dtype=dtype)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return x, batch


def make_conv(in_channels=8, out_channels=4, heads=2, k=3, seed=0, **kwargs):
    torch.manual_seed(seed)
    return SAMSAConv(in_channels, out_channels, heads=heads, k=k, **kwargs).eval()


def graph_rows(batch, graph):
    return (batch == graph).nonzero().view(-1)


@pytest.mark.parametrize("kwargs, expected", [
    (dict(in_channels=16, out_channels=32, heads=4, k=8), "SAMSAConv(16, 32, heads=4, k=8)"),
    (dict(in_channels=16, out_channels=32, ratio=0.5), "SAMSAConv(16, 32, heads=1, ratio=0.5)"),
    (dict(in_channels=-1, out_channels=8, heads=2, k=4, concat=False),
     "SAMSAConv(-1, 8, heads=2, k=4, concat=False)"),
    (dict(in_channels=16, out_channels=8, k=4, num_registers=8),
     "SAMSAConv(16, 8, heads=1, k=4, num_registers=8)"),
    (dict(in_channels=16, out_channels=8, k=4, score_channels=12),
     "SAMSAConv(16, 8, heads=1, k=4, score_channels=12)"),
])
def test_samsa_conv_repr(kwargs, expected):
    assert repr(SAMSAConv(**kwargs)) == expected


@pytest.mark.parametrize("kwargs, match", [
    (dict(k=0), "'k'.*got 0"),
    (dict(k=-2), "'k'.*got -2"),
    (dict(k=2.5), "'k'.*got 2.5"),
    (dict(ratio=0.0), "'ratio'.*got 0.0"),
    (dict(ratio=1.5), "'ratio'.*got 1.5"),
    (dict(k=2, ratio=0.5), "exactly one of 'k' and 'ratio'"),
    (dict(), "exactly one of 'k' and 'ratio'"),
    (dict(k=2, heads=0), "'heads'.*got 0"),
    (dict(k=2, tau=0.0), "'tau'.*got 0.0"),
    (dict(k=2, num_registers=-1), "'num_registers'.*got -1"),
    (dict(k=2, dropout=1.0), "'dropout'.*got 1.0"),
    (dict(k=2, score_channels=0), "'score_channels'.*got 0"),
    (dict(k=2, score_channels=4.0), "'score_channels'.*got 4.0"),
])
def test_samsa_conv_invalid_option(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SAMSAConv(8, 4, **kwargs)


def test_samsa_conv_nan_input():
    conv = make_conv()
    x, batch = make_batch([4, 5])

    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="'x' contains 1 NaN"):
        conv(x, batch=batch)

    x[3, 1] = float("inf")
    with pytest.raises(ValueError, match="'x' contains 1 NaN or infinite"):
        conv(x, batch=batch)


def test_samsa_conv_unsorted_batch():
    conv = make_conv()
    x, _ = make_batch([3, 3])
    batch = torch.tensor([0, 1, 0, 1, 0, 1])

    with pytest.raises(ValueError, match="'batch' must be sorted"):
        conv(x, batch=batch)


def test_samsa_conv_batch_length():
    conv = make_conv()
    x, batch = make_batch([3, 3])

    with pytest.raises(ValueError, match="'batch' has 5 entries but 'x' has 6 rows"):
        conv(x, batch=batch[:5])


def test_samsa_conv_wrong_width():
    conv = make_conv(in_channels=8)
    x, batch = make_batch([3, 3], channels=7)

    with pytest.raises(ValueError, match="'x' has 7 features.*in_channels=8"):
        conv(x, batch=batch)


def test_samsa_conv_wrong_rank():
    conv = make_conv()

    with pytest.raises(ValueError, match=r"'x' must have shape \[num_nodes, in_channels\]"):
        conv(torch.randn(2, 3, 8))


@pytest.mark.parametrize("heads, concat, width", [(1, True, 4), (3, True, 12), (3, False, 4)])
def test_samsa_conv_output_shape(heads, concat, width):
    conv = make_conv(heads=heads, concat=concat)
    x, batch = make_batch([5, 2, 7])

    out = conv(x, batch=batch)

    assert out.shape == (14, width)
    assert torch.isfinite(out).all()


def test_samsa_conv_edge_index_ignored():
    conv = make_conv()
    x, batch = make_batch([5, 4])
    edge_index = torch.tensor([[0, 1, 5], [1, 2, 6]])

    out_with = conv(x, edge_index, batch=batch)
    out_without = conv(x, batch=batch)

    assert torch.equal(out_with, out_without)


def test_samsa_conv_segment_isolation():
    conv = make_conv(k=2)
    x, batch = make_batch([6, 5, 7])
    out = conv(x, batch=batch)

    changed = x.clone()
    rows = graph_rows(batch, 1)
    changed[rows] = torch.randn(len(rows), 8)
    out_changed = conv(changed, batch=batch)

    for graph in (0, 2):
        rows = graph_rows(batch, graph)
        assert torch.equal(out[rows], out_changed[rows])
    assert not torch.allclose(out[graph_rows(batch, 1)], out_changed[graph_rows(batch, 1)])


@pytest.mark.parametrize("kwargs", [dict(k=3), dict(ratio=0.5), dict(k=3, num_registers=4)])
def test_samsa_conv_batch_equals_single(kwargs):
    k = kwargs.pop("k", None)
    conv = make_conv(k=k, **kwargs)
    sizes = [6, 1, 9, 3]
    x, batch = make_batch(sizes)

    out = conv(x, batch=batch)

    for graph in range(len(sizes)):
        rows = graph_rows(batch, graph)
        single = conv(x[rows])
        assert torch.allclose(out[rows], single, atol=1e-5)


def test_samsa_conv_permutation_equivariance():
    conv = make_conv(k=3)
    x, batch = make_batch([5, 8, 4])
    out = conv(x, batch=batch)

    perm = torch.arange(17)
    rows = graph_rows(batch, 1)
    perm[rows] = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(1))]
    out_perm = conv(x[perm], batch=batch)

    assert torch.allclose(out_perm, out[perm], atol=1e-5)


def test_samsa_conv_eval_deterministic():
    conv = make_conv()
    x, batch = make_batch([6, 9])

    assert torch.equal(conv(x, batch=batch), conv(x, batch=batch))


def test_samsa_conv_one_node_graph():
    conv = make_conv(k=3)
    x, _ = make_batch([1])

    out, info = conv(x, return_sampling=True)

    assert out.shape == (1, 8)
    assert info.mask.sum().item() == 2  # one node under each of two heads
    assert (info.index[info.mask] == 0).all()


@pytest.mark.parametrize("sizes, k", [([2, 5, 1], 4), ([2, 3, 1], 10)])
def test_samsa_conv_graphs_smaller_than_k(sizes, k):
    conv = make_conv(k=k)
    x, batch = make_batch(sizes)

    out, info = conv(x, batch=batch, return_sampling=True)

    assert out.shape == (sum(sizes), 8)
    assert torch.isfinite(out).all()
    kept = info.mask.sum(dim=-1)
    for graph, size in enumerate(sizes):
        assert (kept[graph] == min(k, size)).all()


def test_samsa_conv_empty_batch():
    conv = make_conv()
    x = torch.empty(0, 8)

    out, info = conv(x, return_sampling=True)

    assert out.shape == (0, 8)
    assert info.scores.shape == (0, 2)
    assert not info.mask.any()


def test_samsa_conv_empty_graph_in_batch():
    conv = make_conv(k=2)
    x, _ = make_batch([3, 4])
    ptr = torch.tensor([0, 3, 3, 7])

    out, info = conv(x, ptr=ptr, return_sampling=True)

    assert out.shape == (7, 8)
    assert info.index.size(0) == 3
    assert not info.mask[1].any()
    assert torch.allclose(out[:3], conv(x[:3]), atol=1e-5)
    assert torch.allclose(out[3:], conv(x[3:]), atol=1e-5)


def test_samsa_conv_ratio_rounds_up_to_one():
    conv = make_conv(k=None, ratio=0.01)
    x, batch = make_batch([5, 30, 2])

    _, info = conv(x, batch=batch, return_sampling=True)

    assert (info.mask.sum(dim=-1) == torch.tensor([[1, 1], [1, 1], [1, 1]])).all()


def test_samsa_conv_one_head():
    conv = make_conv(heads=1, k=2)
    x, batch = make_batch([4, 6])

    out, info = conv(x, batch=batch, return_sampling=True)

    assert out.shape == (10, 4)
    assert info.index.shape == (2, 1, 2)


def test_samsa_conv_sampling_info():
    conv = make_conv(heads=3, k=4)
    sizes = [6, 2, 9]
    x, batch = make_batch(sizes)

    _, info = conv(x, batch=batch, return_sampling=True)

    assert isinstance(info, SamplingInfo)
    assert info.index.shape == (3, 3, 4)
    assert info.mask.shape == (3, 3, 4)
    assert info.scores.shape == (17, 3)
    assert (info.register_index == -1).all()
    assert (info.index[~info.mask] == -1).all()

    sampled = info.index[info.mask]
    graph_of_slot = torch.arange(3).view(3, 1, 1).expand(3, 3, 4)[info.mask]
    assert torch.equal(batch[sampled], graph_of_slot)

    for graph in range(3):
        for head in range(3):
            chosen = info.index[graph, head][info.mask[graph, head]]
            assert chosen.unique().numel() == chosen.numel()


def test_samsa_conv_eval_picks_top_scores():
    conv = make_conv(heads=2, k=3)
    x, batch = make_batch([7, 5])

    _, info = conv(x, batch=batch, return_sampling=True)

    for graph in range(2):
        rows = graph_rows(batch, graph)
        for head in range(2):
            expected = rows[info.scores[rows, head].topk(3).indices]
            chosen = info.index[graph, head][info.mask[graph, head]]
            assert set(chosen.tolist()) == set(expected.tolist())


def test_samsa_conv_registers_fill_small_graphs():
    conv = make_conv(heads=2, k=4, num_registers=3)
    sizes = [2, 6]
    x, batch = make_batch(sizes)

    out, info = conv(x, batch=batch, return_sampling=True)

    assert out.shape == (8, 8)
    assert (info.mask.sum(dim=-1) == 4).all()
    node_slots = info.index >= 0
    register_slots = info.register_index >= 0
    assert torch.equal(node_slots | register_slots, info.mask)
    assert not (node_slots & register_slots).any()
    assert (register_slots[0].sum(dim=-1) >= 2).all()
    assert (info.register_index[register_slots] < 3).all()


def test_samsa_conv_registers_change_output():
    x, batch = make_batch([5, 6])
    plain = make_conv(k=3)
    with_registers = make_conv(k=3, num_registers=4)
    with torch.no_grad():
        with_registers.register_scores.fill_(100.0)

    out, info = with_registers(x, batch=batch, return_sampling=True)

    assert (info.register_index[info.mask] >= 0).all()
    assert not torch.allclose(out, plain(x, batch=batch))


def test_samsa_conv_registers_empty_graph():
    conv = make_conv(k=3, num_registers=2)
    x, _ = make_batch([3, 4])
    ptr = torch.tensor([0, 3, 3, 7])

    out, info = conv(x, ptr=ptr, return_sampling=True)

    assert out.shape == (7, 8)
    assert (info.index[1] == -1).all()
    assert torch.allclose(out[:3], conv(x[:3]), atol=1e-5)
    assert torch.allclose(out[3:], conv(x[3:]), atol=1e-5)


def test_samsa_conv_training_gradients():
    conv = make_conv(k=2, num_registers=2).train()
    x, batch = make_batch([6, 5, 3])
    x.requires_grad_()

    out = conv(x, batch=batch, generator=torch.Generator().manual_seed(0))
    out.square().sum().backward()

    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name in ("lin_score.weight", "log_tau", "register_scores", "register_kv",
                 "lin_query.weight", "lin_kv.weight"):
        grad = dict(conv.named_parameters())[name].grad
        assert grad is not None, name
        assert grad.abs().sum() > 0, name


def test_samsa_conv_generator_reproducible():
    conv = make_conv(k=2).train()
    x, batch = make_batch([9, 8])

    first = conv(x, batch=batch, generator=torch.Generator().manual_seed(3))
    second = conv(x, batch=batch, generator=torch.Generator().manual_seed(3))

    assert torch.equal(first, second)


def test_samsa_conv_stochastic_eval():
    conv = make_conv(heads=1, k=2, stochastic_eval=True)
    x, batch = make_batch([30])

    draws = set()
    for seed in range(8):
        _, info = conv(x, batch=batch, return_sampling=True,
                       generator=torch.Generator().manual_seed(seed))
        draws.add(tuple(sorted(info.index.view(-1).tolist())))

    assert len(draws) > 1


def test_samsa_conv_soft_mode_trains():
    conv = make_conv(k=2, hard=False).train()
    x, batch = make_batch([6, 7])

    out = conv(x, batch=batch, generator=torch.Generator().manual_seed(0))
    out.sum().backward()

    assert conv.lin_score.weight.grad.abs().sum() > 0


def test_samsa_conv_fixed_tau():
    conv = make_conv(k=2, tau=0.5, learn_tau=False)

    assert "log_tau" not in dict(conv.named_parameters())
    assert torch.allclose(conv.temperature, torch.full((2,), 0.5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_samsa_conv_dtype(dtype):
    conv = make_conv(k=3).to(dtype)
    x, batch = make_batch([5, 7], dtype=dtype)

    out = conv(x, batch=batch)

    assert out.dtype == dtype
    assert torch.isfinite(out).all()


def test_samsa_conv_bfloat16_autocast():
    conv = make_conv(k=3)
    x, batch = make_batch([5, 7])
    reference = conv(x, batch=batch)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x, batch=batch)

    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out.float()).all()
    assert torch.allclose(out.float(), reference, atol=0.1, rtol=0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_samsa_conv_cuda():
    conv = make_conv(k=3, num_registers=2)
    x, batch = make_batch([5, 7, 1])
    reference = conv(x, batch=batch)

    out = conv.cuda()(x.cuda(), batch=batch.cuda())

    assert out.is_cuda
    assert torch.allclose(out.cpu(), reference, atol=1e-4)


def test_samsa_conv_reset_parameters():
    conv = make_conv(k=3, tau=2.0, num_registers=2)
    x, batch = make_batch([5, 4])
    with torch.no_grad():
        for parameter in conv.parameters():
            parameter.fill_(0.5)

    conv.reset_parameters()

    assert torch.allclose(conv.log_tau, torch.full((2,), math.log(2.0)))
    assert torch.equal(conv.norm.weight, torch.ones(8))
    assert torch.equal(conv.score_norm.weight, torch.ones(8))
    assert torch.equal(conv.register_scores, torch.zeros(2, 2))
    for name in ("lin_query", "lin_kv", "lin_score", "lin_out"):
        weight = getattr(conv, name).weight
        assert not (weight == 0.5).all(), name
    assert torch.isfinite(conv(x, batch=batch)).all()


def test_samsa_conv_lazy_in_channels():
    conv = make_conv(in_channels=-1, k=2)
    x, batch = make_batch([4, 6], channels=5)

    out = conv(x, batch=batch)

    assert out.shape == (10, 8)
    assert conv.in_channels == 5
    assert conv.lin_query.weight.shape == (8, 5)
    assert repr(conv) == "SAMSAConv(5, 4, heads=2, k=2)"
    with pytest.raises(ValueError, match="'x' has 6 features"):
        conv(torch.randn(3, 6))


def test_samsa_conv_data_loader():
    generator = torch.Generator().manual_seed(0)
    dataset = [
        Data(x=torch.randn(n, 8, generator=generator),
             edge_index=torch.stack([torch.arange(n - 1), torch.arange(1, n)]))
        for n in (4, 9, 1, 6, 12, 3)
    ]
    loader = DataLoader(dataset, batch_size=3, shuffle=False)
    conv = make_conv(k=3)

    for index, data in enumerate(loader):
        out = conv(data.x, data.edge_index, data.batch)
        assert out.shape == (data.num_nodes, 8)

        for graph in range(data.num_graphs):
            single = conv(dataset[3 * index + graph].x)
            assert torch.allclose(out[data.ptr[graph]:data.ptr[graph + 1]], single, atol=1e-5)


def samsa_conv_reference(conv, x, batch):
    """Evaluate a SAMSAConv without registers in evaluation mode, one graph
    and one head at a time, with plain top-k and softmax attention."""
    H, C = conv.heads, conv.out_channels
    x_norm = conv.norm(x)
    query = conv.lin_query(x_norm).view(-1, H, C)
    key, value = conv.lin_kv(x_norm).view(-1, H, 2 * C).split(C, dim=-1)
    scores = conv.score(x)

    out = torch.zeros(x.size(0), H, C, dtype=x.dtype)
    for graph in batch.unique().tolist():
        rows = graph_rows(batch, graph)
        k = min(conv.k, len(rows))
        for head in range(H):
            chosen = rows[scores[rows, head].topk(k).indices]
            logits = query[rows, head] @ key[chosen, head].T / C**0.5
            out[rows, head] = logits.softmax(dim=-1) @ value[chosen, head]

    out = out.reshape(-1, H * C) if conv.concat else out.mean(dim=1)
    return conv.lin_out(out)


@pytest.mark.parametrize("heads, k, concat", [(1, 2, True), (3, 4, True), (2, 3, False)])
def test_samsa_conv_matches_reference(heads, k, concat):
    conv = make_conv(heads=heads, k=k, concat=concat)
    x, batch = make_batch([6, 1, 9, 4])

    out = conv(x, batch=batch)

    assert torch.allclose(out, samsa_conv_reference(conv, x, batch), atol=1e-5)


@pytest.mark.skipif(not any(installed(name) for name in ("torch_scatter", "pyg_lib")),
                    reason="no optional backend (torch_scatter, pyg_lib) is installed")
def test_samsa_conv_pure_pytorch_backend():
    conv = make_conv(k=3, num_registers=2)
    x, batch = make_batch([6, 1, 9, 4])
    out = conv(x, batch=batch)

    with pure_pytorch():
        out_pure = conv(x, batch=batch)

    assert torch.allclose(out, out_pure, atol=1e-5)


@pytest.mark.parametrize("in_channels, score_channels, hidden", [
    (128, None, 16),
    (256, None, 32),
    (32, None, 8),
    (5, None, 5),
    (16, 48, 48),
])
def test_samsa_conv_score_channels(in_channels, score_channels, hidden):
    conv = SAMSAConv(in_channels, 4, k=2, score_channels=score_channels)

    assert conv.score_channels == score_channels
    assert conv.score_mlp[0].weight.shape == (hidden, in_channels)
    assert conv.score_mlp[2].weight.shape == (in_channels, hidden)


def test_samsa_conv_lazy_score_channels():
    conv = make_conv(in_channels=-1, k=2)
    x, batch = make_batch([4, 6], channels=80)

    conv(x, batch=batch)

    assert conv.score_channels is None
    assert conv.score_mlp[0].weight.shape == (10, 80)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("kwargs", [
    dict(k=3),
    dict(k=1),
    dict(ratio=0.4),
    dict(k=3, num_registers=2),
    dict(k=4, hard=False),
])
def test_samsa_conv_matches_checked_kernels(training, kwargs):
    # The layer calls the unchecked kernels, and the public ones must agree
    # bit for bit, in output, sampling and gradients.
    kwargs = dict(kwargs)
    k = kwargs.pop("k", None)
    conv = make_conv(k=k, **kwargs).train(training)
    x, batch = make_batch([6, 1, 9, 0, 4])
    x.requires_grad_()
    ptr = torch.tensor([0, 6, 7, 16, 16, 20])
    out, info = conv(x, ptr=ptr, return_sampling=True,
                     generator=torch.Generator().manual_seed(4))
    inputs = [x] + list(conv.parameters())
    grads = torch.autograd.grad(out.square().sum(), inputs, allow_unused=True)

    expected, expected_info = checked_forward(conv, x, ptr, torch.Generator().manual_seed(4))
    expected_grads = torch.autograd.grad(expected.square().sum(), inputs, allow_unused=True)

    assert torch.equal(out, expected)
    for name in SamplingInfo._fields:
        assert torch.equal(getattr(info, name), getattr(expected_info, name)), name
    for grad, expected_grad in zip(grads, expected_grads):
        assert (grad is None) == (expected_grad is None)
        assert grad is None or torch.equal(grad, expected_grad)


def checked_forward(conv, x, ptr, generator):
    """Run SAMSAConv's forward pass through the public, checked kernels."""
    H, C = conv.heads, conv.out_channels
    x_norm = conv.norm(x)
    query = conv.lin_query(x_norm).view(-1, H, C)
    kv = conv.lin_kv(x_norm).view(-1, H, 2 * C)
    scores = conv.score(x)

    pool_scores, pool_kv, pool_ptr, origin = scores, kv, ptr, None
    if conv.num_registers > 0:
        pool_scores, pool_kv, pool_ptr, origin = append_registers(
            scores, kv, ptr, conv.register_scores, conv.register_kv)
    k = conv.k if conv.k is not None else resolve_k(ptr[1:] - ptr[:-1], ratio=conv.ratio)
    if isinstance(k, torch.Tensor):
        # samsa_sample rejects a zero in a tensor k. An empty graph keeps
        # min(k_b, 0) = 0 nodes for any k_b, so 1 gives the same result.
        k = k.clamp(min=1)
    sample = samsa_sample(pool_scores, pool_kv, conv.temperature, k=k, ptr=pool_ptr,
                          training=conv.training, hard=conv.hard, generator=generator)
    key, value = sample.rows.split(C, dim=-1)
    out = segment_attention(query, key, value, sample.mask, ptr=ptr)

    out = out.reshape(-1, H * C) if conv.concat else out.mean(dim=1)
    return conv.lin_out(out), _sampling_info(sample.index, sample.mask, scores, origin)


def test_samsa_conv_ratio_empty_graph():
    conv = make_conv(k=None, ratio=0.5)
    x, _ = make_batch([4, 5])
    ptr = torch.tensor([0, 4, 4, 9])

    out, info = conv(x, ptr=ptr, return_sampling=True)

    assert out.shape == (9, 8)
    assert info.mask.sum(-1).tolist() == [[2, 2], [0, 0], [3, 3]]


def test_samsa_conv_nan_register_scores():
    conv = make_conv(k=3, num_registers=2)
    x, batch = make_batch([4, 5])
    with torch.no_grad():
        conv.register_scores[1, 0] = float("nan")

    with pytest.raises(ValueError, match="'scores' contains 2 NaN"):
        conv(x, batch=batch)


def test_samsa_conv_integer_features_raise():
    conv = make_conv(in_channels=4, k=2)
    x = torch.randint(0, 5, (6, 4))

    with pytest.raises(ValueError, match="'x' must contain floating-point features, got dtype torch.int64"):
        conv(x)
