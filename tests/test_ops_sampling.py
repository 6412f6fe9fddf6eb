import pytest
import torch

from samsa_geo.ops import (
    append_registers,
    segment_attention,
    segment_topk,
    samsa_sample,
)
from samsa_geo.ops.sampling import _samsa_sample

HEADS, DIM = 2, 3


def make_ptr(sizes):
    sizes = torch.tensor(sizes, dtype=torch.long)
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])


def make_inputs(sizes, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    ptr = make_ptr(sizes)
    num_nodes = int(ptr[-1])
    scores = torch.randn(num_nodes, HEADS, generator=generator, dtype=dtype).requires_grad_()
    values = torch.randn(num_nodes, HEADS, DIM, generator=generator, dtype=dtype).requires_grad_()
    tau = torch.ones(HEADS, dtype=dtype, requires_grad=True)
    return scores, values, tau, ptr


def gathered(values, index):
    heads = torch.arange(index.size(1)).view(1, -1, 1)
    rows = values[index.clamp(min=0), heads]
    return rows.masked_fill((index < 0).unsqueeze(-1), 0.0)


# One empty graph, one smaller than k, one with fewer than 2k nodes, one
# single node, one larger than 2k.
SIZES = [0, 2, 5, 1, 12]


def test_samsa_sample_eval_matches_topk():
    scores, values, tau, ptr = make_inputs(SIZES)
    result = samsa_sample(scores, values, tau, k=3, ptr=ptr)
    index, mask = segment_topk(scores.detach(), k=3, ptr=ptr)

    assert torch.equal(result.index, index)
    assert torch.equal(result.mask, mask)
    assert torch.equal(result.rows, gathered(values.detach(), index))
    assert result.scores is scores
    assert result.rows.shape == (5, HEADS, 3, DIM)


def test_samsa_sample_eval_deterministic():
    scores, values, tau, ptr = make_inputs(SIZES)
    first = samsa_sample(scores, values, tau, k=3, ptr=ptr)
    second = samsa_sample(scores, values, tau, k=3, ptr=ptr)

    assert torch.equal(first.index, second.index)
    assert torch.equal(first.rows, second.rows)


def test_samsa_sample_stochastic_generator():
    scores, values, tau, ptr = make_inputs(SIZES)
    draws = [
        samsa_sample(scores, values, tau, k=3, ptr=ptr, stochastic=True, generator=torch.Generator().manual_seed(5))
        for _ in range(2)
    ]

    assert torch.equal(draws[0].index, draws[1].index)
    assert not torch.equal(draws[0].scores, scores)
    assert torch.equal(draws[0].index, segment_topk(draws[0].scores.detach(), k=3, ptr=ptr)[0])


@pytest.mark.parametrize("hard", [True, False])
def test_samsa_sample_training_chosen_are_topk(hard):
    scores, values, tau, ptr = make_inputs(SIZES)
    result = samsa_sample(scores, values, tau, k=3, ptr=ptr, training=True, hard=hard)
    index, mask = segment_topk(result.scores.detach(), k=3, ptr=ptr)

    assert torch.equal(result.index, index)
    assert torch.equal(result.mask, mask)
    assert result.rows.shape == (5, HEADS, 3, DIM)


def test_samsa_sample_training_hard_rows_exact():
    scores, values, tau, ptr = make_inputs(SIZES)
    result = samsa_sample(scores, values, tau, k=3, ptr=ptr, training=True, hard=True)

    assert torch.equal(result.rows, gathered(values.detach(), result.index))


@pytest.mark.parametrize("hard", [True, False])
def test_samsa_sample_training_gradients(hard):
    scores, values, tau, ptr = make_inputs(SIZES)
    result = samsa_sample(scores, values, tau, k=3, ptr=ptr, training=True, hard=hard)
    weights = torch.randn(result.rows.shape)
    (result.rows * weights).sum().backward()

    assert scores.grad.abs().sum() > 0
    assert values.grad.abs().sum() > 0
    assert tau.grad.abs().sum() > 0

    # Hard mode: only chosen rows get a value gradient. Nodes ranked below
    # 2k_b get no score gradient in either mode.
    chosen = torch.zeros(values.shape[:2], dtype=torch.bool)
    heads = torch.arange(HEADS).view(1, -1, 1).expand_as(result.index)
    chosen[result.index[result.mask], heads[result.mask]] = True
    if hard:
        assert (values.grad[~chosen] == 0).all()
    top2k, top2k_mask = segment_topk(result.scores.detach(), k=6, ptr=ptr)
    ranked = torch.zeros_like(chosen)
    heads2k = torch.arange(HEADS).view(1, -1, 1).expand_as(top2k)
    ranked[top2k[top2k_mask], heads2k[top2k_mask]] = True
    assert (scores.grad[~ranked] == 0).all()


def test_samsa_sample_single_node_graph_no_runner_ups():
    scores, values, tau, ptr = make_inputs([1, 1])
    result = samsa_sample(scores, values, tau, k=2, ptr=ptr, training=True, hard=False)
    result.rows.sum().backward()

    assert torch.equal(result.rows, gathered(values.detach(), result.index))
    assert (scores.grad == 0).all()
    assert (tau.grad == 0).all()


def test_samsa_sample_ratio():
    scores, values, tau, ptr = make_inputs([4, 10])
    result = samsa_sample(scores, values, tau, ratio=0.5, ptr=ptr, training=True)

    assert result.mask.sum(-1).tolist() == [[2, 2], [5, 5]]


def test_samsa_sample_all_graphs_empty():
    scores, values, tau, ptr = make_inputs([0, 0])
    for training in (False, True):
        result = samsa_sample(scores, values, tau, k=2, ptr=ptr, training=training)
        assert result.rows.shape == (2, HEADS, 0, DIM)
        assert result.index.shape == (2, HEADS, 0)


def test_samsa_sample_one_large_graph():
    scores, values, tau, ptr = make_inputs([3000])
    result = samsa_sample(scores, values, tau, k=64, ptr=ptr, training=True)
    result.rows.sum().backward()

    assert result.mask.all()
    assert torch.isfinite(scores.grad).all()


def test_samsa_sample_many_tiny_graphs():
    sizes = torch.randint(0, 4, (2000,), generator=torch.Generator().manual_seed(1)).tolist()
    scores, values, tau, ptr = make_inputs(sizes)
    result = samsa_sample(scores, values, tau, k=2, ptr=ptr, training=True, hard=False)
    result.rows.sum().backward()

    expected = torch.tensor(sizes).clamp(max=2)
    assert torch.equal(result.mask[:, 0].sum(-1), expected)
    assert torch.isfinite(values.grad).all()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"scores": torch.zeros(5)}, r"'scores' must have shape \[N, H\]"),
        ({"values": torch.zeros(5, HEADS)}, "'values' must have shape"),
        ({"tau": torch.ones(HEADS + 1)}, "'tau' must have shape"),
        ({"tau": torch.tensor([1.0, -1.0])}, "'tau' must be positive"),
    ],
)
def test_samsa_sample_bad_input_raises(change, message):
    scores, values, tau, ptr = make_inputs([5])
    kwargs = dict(scores=scores.detach(), values=values.detach(), tau=tau.detach(), k=2, ptr=ptr, training=True)
    kwargs.update(change)

    with pytest.raises(ValueError, match=message):
        samsa_sample(**kwargs)


def test_samsa_sample_nan_raises():
    scores, values, tau, ptr = make_inputs([5])
    scores = scores.detach().clone()
    scores[1, 0] = float("nan")

    with pytest.raises(ValueError, match="'scores' contains"):
        samsa_sample(scores, values, tau, k=2, ptr=ptr)


def test_samsa_sample_unsorted_batch_raises():
    scores, values, tau, _ = make_inputs([4])

    with pytest.raises(ValueError, match="sorted"):
        samsa_sample(scores, values, tau, k=2, batch=torch.tensor([1, 0, 0, 1]))


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("hard", [True, False])
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16])
def test_samsa_sample_bfloat16_autocast(training, hard, input_dtype):
    scores, values, tau, ptr = make_inputs(SIZES, seed=3)
    batch = torch.repeat_interleave(torch.arange(len(SIZES)), torch.tensor(SIZES))
    query = torch.randn(scores.size(0), HEADS, DIM)

    def run(scores, values):
        result = samsa_sample(
            scores,
            values,
            tau,
            k=3,
            ptr=ptr,
            training=training,
            hard=hard,
            generator=torch.Generator().manual_seed(0),
        )
        return segment_attention(query, result.rows, result.rows, result.mask, batch=batch, ptr=ptr)

    expected = run(scores, values)
    low_scores = scores.detach().to(input_dtype).requires_grad_()
    low_values = values.detach().to(input_dtype).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = run(low_scores, low_values)
    low.float().sum().backward()

    assert low.dtype == torch.bfloat16
    assert torch.isfinite(low).all()
    assert torch.allclose(low.float(), expected, atol=0.1, rtol=0.05)
    assert torch.isfinite(low_values.grad).all()
    if training:
        assert torch.isfinite(low_scores.grad).all()


def test_append_registers_layout():
    scores = torch.arange(5.0).view(5, 1)
    values = torch.arange(5.0).view(5, 1, 1)
    ptr = make_ptr([2, 0, 3])
    register_scores = torch.tensor([[10.0], [11.0]])
    register_values = torch.tensor([[[10.0]], [[11.0]]])

    scores_aug, values_aug, ptr_aug, origin = append_registers(
        scores, values, ptr, register_scores, register_values
    )

    assert ptr_aug.tolist() == [0, 4, 6, 11]
    assert scores_aug.view(-1).tolist() == [0, 1, 10, 11, 10, 11, 2, 3, 4, 10, 11]
    assert torch.equal(values_aug.view(-1), scores_aug.view(-1))
    assert origin.tolist() == [0, 1, -1, -2, -1, -2, 2, 3, 4, -1, -2]


def test_append_registers_gradients():
    scores, values, _, ptr = make_inputs([3, 0, 4])
    register_scores = torch.randn(2, HEADS, requires_grad=True)
    register_values = torch.randn(2, HEADS, DIM, requires_grad=True)

    scores_aug, values_aug, _, _ = append_registers(scores, values, ptr, register_scores, register_values)
    (scores_aug.sum() + values_aug.sum()).backward()

    # Each register appears once per graph, empty graphs included.
    assert torch.equal(register_scores.grad, torch.full((2, HEADS), 3.0))
    assert torch.equal(register_values.grad, torch.full((2, HEADS, DIM), 3.0))
    assert torch.equal(scores.grad, torch.ones_like(scores))


def test_append_registers_then_sample():
    scores, values, tau, ptr = make_inputs([1, 0, 3])
    register_scores = torch.full((4, HEADS), 5.0, requires_grad=True)
    register_values = torch.randn(4, HEADS, DIM, requires_grad=True)

    scores_aug, values_aug, ptr_aug, origin = append_registers(
        scores, values, ptr, register_scores, register_values
    )
    result = samsa_sample(scores_aug, values_aug, tau, k=2, ptr=ptr_aug, training=True, hard=False)
    result.rows.sum().backward()

    # The high register scores put registers first, and a one-node graph
    # now has runner-ups, so the register scores get a gradient.
    assert (origin[result.index[0]] < 0).all()
    assert result.mask.all()
    assert register_scores.grad.abs().sum() > 0


def test_append_registers_bad_shape_raises():
    scores, values, _, ptr = make_inputs([3])

    with pytest.raises(ValueError, match="'register_values' must have shape"):
        append_registers(scores, values, ptr, torch.zeros(2, HEADS), torch.zeros(2, HEADS, DIM + 1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_samsa_sample_cuda_training():
    scores, values, tau, ptr = [x.detach().cuda() for x in make_inputs(SIZES)]
    for x in (scores, values, tau):
        x.requires_grad_()
    result = samsa_sample(scores, values, tau, k=3, ptr=ptr, training=True, hard=False)
    result.rows.sum().backward()

    assert result.rows.device.type == "cuda"
    assert torch.isfinite(scores.grad).all()


@pytest.mark.parametrize("hard", [True, False])
def test_samsa_sample_tensor_k_uneven(hard):
    # The small graph keeps more nodes than the large one, so the widest
    # top-2k list (3) is narrower than 2 * max k_b = 6.
    scores, values, tau, ptr = make_inputs([8, 3])
    k = torch.tensor([1, 3])
    result = samsa_sample(scores, values, tau, k=k, ptr=ptr, training=True, hard=hard,
                          generator=torch.Generator().manual_seed(2))
    index, mask = segment_topk(result.scores.detach(), k=k, ptr=ptr)
    result.rows.sum().backward()

    assert torch.equal(result.index, index)
    assert torch.equal(result.mask, mask)
    assert result.mask.sum(-1).tolist() == [[1, 1], [3, 3]]

    # Only the top min(2 k_b, n_b) nodes of each graph get a score gradient.
    top2k, top2k_mask = segment_topk(result.scores.detach(), k=torch.tensor([2, 3]), ptr=ptr)
    ranked = torch.zeros(scores.shape, dtype=torch.bool)
    heads = torch.arange(HEADS).view(1, -1, 1).expand_as(top2k)
    ranked[top2k[top2k_mask], heads[top2k_mask]] = True
    assert (scores.grad[~ranked] == 0).all()


@pytest.mark.parametrize("training", [False, True])
def test_samsa_sample_unchecked_matches_public(training):
    scores, values, tau, ptr = make_inputs(SIZES)
    batch = torch.repeat_interleave(torch.arange(len(SIZES)), torch.tensor(SIZES))
    sizes = ptr[1:] - ptr[:-1]
    k_per_graph = sizes.clamp(max=3)
    expected = samsa_sample(scores, values, tau, k=3, ptr=ptr, training=training,
                            generator=torch.Generator().manual_seed(3))

    # A wider top-2k list than needed only adds padding.
    for max_k2 in (None, 6, 12):
        result = _samsa_sample(scores, values, tau, batch, ptr, k_per_graph, 3, 12,
                               training=training, generator=torch.Generator().manual_seed(3),
                               max_k2=max_k2)
        for name in ("rows", "mask", "index", "scores"):
            assert torch.equal(getattr(result, name), getattr(expected, name)), (max_k2, name)
