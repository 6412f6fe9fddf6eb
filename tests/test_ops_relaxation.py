import pytest
import torch

from samsa_geo.ops import samsa_relaxation, samsa_relaxation_reference

DOUBLE = torch.float64


def random_inputs(batch=2, heads=2, k=3, dim=4, seed=0, tau=(0.5, 2.0)):
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(batch, heads, k, dtype=DOUBLE, generator=generator)
    b = torch.randn(batch, heads, k, dtype=DOUBLE, generator=generator)
    t = torch.randn(batch, heads, k, dim, dtype=DOUBLE, generator=generator)
    u = torch.randn(batch, heads, k, dim, dtype=DOUBLE, generator=generator)
    tau = torch.tensor(tau[:heads], dtype=DOUBLE)
    return [x.requires_grad_() for x in (a, b, t, u, tau)]


def ragged_masks():
    """Graph 0: head 0 has all 3 runner-ups, head 1 has one. Graph 1: head 0
    has one chosen slot and no runner-ups, head 1 has all slots."""
    mask_a = torch.tensor([[[1, 1, 1], [1, 1, 0]], [[1, 0, 0], [1, 1, 1]]]).bool()
    mask_b = torch.tensor([[[1, 1, 1], [1, 0, 0]], [[0, 0, 0], [1, 1, 1]]]).bool()
    return mask_a, mask_b


def grads(fn, inputs, grad_out):
    out = fn(*inputs)
    result = torch.autograd.grad(out, inputs, grad_out, allow_unused=True)
    return out, [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, result)]


def by_hand(a, b, t, u, tau, mask_b, grad_out, slope_cap):
    """The hard-mode gradients of one graph, from the formulas with explicit
    loops: c_ij = <g_i, t_i - u_j> / n_R and s_ij = p (1 - p) / tau * gamma."""
    heads, k = a.shape
    grad_a = torch.zeros(heads, k, dtype=DOUBLE)
    grad_b = torch.zeros(heads, k, dtype=DOUBLE)
    grad_tau = torch.zeros(heads, dtype=DOUBLE)
    for h in range(heads):
        runners = [j for j in range(k) if mask_b[h, j]]
        gamma = min(1.0, float(tau[h])) if slope_cap else 1.0
        for i in range(k):
            for j in runners:
                p = torch.sigmoid((a[h, i] - b[h, j]) / tau[h])
                slope = p * (1 - p) / tau[h] * gamma
                c = torch.dot(grad_out[h, i], t[h, i] - u[h, j]) / len(runners)
                grad_a[h, i] += c * slope
                grad_b[h, j] -= c * slope
                grad_tau[h] -= c * slope * (a[h, i] - b[h, j]) / tau[h]
    return grad_a, grad_b, grad_tau


def test_relaxation_soft_gradcheck():
    inputs = random_inputs()
    mask_a, mask_b = ragged_masks()

    assert torch.autograd.gradcheck(
        lambda *x: samsa_relaxation(*x, mask_a, mask_b, hard=False), inputs
    )


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("slope_cap", [False, True])
def test_relaxation_matches_reference(hard, slope_cap):
    inputs = random_inputs(seed=1)
    mask_a, mask_b = ragged_masks()
    grad_out = torch.randn(2, 2, 3, 4, dtype=DOUBLE)

    out, result = grads(
        lambda *x: samsa_relaxation(*x, mask_a, mask_b, hard=hard, slope_cap=slope_cap),
        inputs,
        grad_out,
    )
    expected_out, expected = grads(
        lambda *x: samsa_relaxation_reference(*x, mask_a, mask_b, hard=hard, slope_cap=slope_cap),
        inputs,
        grad_out,
    )

    assert torch.allclose(out, expected_out)
    for name, got, want in zip("a b t u tau".split(), result, expected):
        assert torch.allclose(got, want), name


def test_relaxation_soft_values_by_hand():
    a = torch.tensor([[[1.0, 0.0]]], dtype=DOUBLE)
    b = torch.tensor([[[0.5, 0.0]]], dtype=DOUBLE)
    t = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=DOUBLE)
    u = torch.tensor([[[[2.0, 2.0], [9.0, 9.0]]]], dtype=DOUBLE)
    tau = torch.tensor([1.0], dtype=DOUBLE)
    mask_a = torch.tensor([[[True, True]]])
    mask_b = torch.tensor([[[True, False]]])

    out = samsa_relaxation(a, b, t, u, tau, mask_a, mask_b, hard=False)

    # One runner-up: o_i = p_i t_i + (1 - p_i) u_0.
    p = torch.sigmoid(torch.tensor([0.5, -0.5], dtype=DOUBLE))
    expected = p.view(2, 1) * t[0, 0] + (1 - p).view(2, 1) * u[0, 0, 0]
    assert torch.allclose(out[0, 0], expected)


def test_relaxation_hard_forward_exact():
    a, b, t, u, tau = random_inputs(seed=2)
    mask_a, mask_b = ragged_masks()
    out = samsa_relaxation(a, b, t, u, tau, mask_a, mask_b, hard=True)

    assert torch.equal(out[mask_a], t[mask_a])
    assert (out[~mask_a] == 0).all()


@pytest.mark.parametrize("slope_cap", [False, True])
@pytest.mark.parametrize("tau", [(0.3, 0.7), (1.0, 2.5), (0.5, 4.0)])
@pytest.mark.parametrize(
    "runner_mask",
    [[[1, 1], [1, 1]], [[1, 0], [1, 1]], [[0, 0], [1, 0]], [[0, 0], [0, 0]]],
    ids=["full", "one_runner", "none_and_one", "none"],
)
def test_relaxation_hard_backward_by_hand(slope_cap, tau, runner_mask):
    a, b, t, u, tau = random_inputs(batch=1, heads=2, k=2, dim=3, seed=3, tau=tau)
    mask_a = torch.ones(1, 2, 2, dtype=torch.bool)
    mask_b = torch.tensor([runner_mask]).bool()
    grad_out = torch.randn(1, 2, 2, 3, dtype=DOUBLE, generator=torch.Generator().manual_seed(4))

    _, (grad_a, grad_b, grad_t, grad_u, grad_tau) = grads(
        lambda *x: samsa_relaxation(*x, mask_a, mask_b, hard=True, slope_cap=slope_cap),
        [a, b, t, u, tau],
        grad_out,
    )
    with torch.no_grad():
        want_a, want_b, want_tau = by_hand(a[0], b[0], t[0], u[0], tau, mask_b[0], grad_out[0], slope_cap)

    assert torch.allclose(grad_a[0], want_a)
    assert torch.allclose(grad_b[0], want_b)
    assert torch.allclose(grad_tau, want_tau)
    assert torch.equal(grad_t, grad_out)
    assert (grad_u == 0).all()


def test_relaxation_one_head_by_hand():
    a, b, t, u, tau = random_inputs(batch=1, heads=1, k=2, dim=3, seed=5, tau=(0.2,))
    mask_a = torch.ones(1, 1, 2, dtype=torch.bool)
    mask_b = torch.ones(1, 1, 2, dtype=torch.bool)
    grad_out = torch.randn(1, 1, 2, 3, dtype=DOUBLE)

    _, (grad_a, grad_b, _, _, grad_tau) = grads(
        lambda *x: samsa_relaxation(*x, mask_a, mask_b), [a, b, t, u, tau], grad_out
    )
    with torch.no_grad():
        want_a, want_b, want_tau = by_hand(a[0], b[0], t[0], u[0], tau, mask_b[0], grad_out[0], True)

    assert torch.allclose(grad_a[0], want_a)
    assert torch.allclose(grad_b[0], want_b)
    assert torch.allclose(grad_tau, want_tau)


def test_relaxation_no_runner_ups_soft():
    a, b, t, u, tau = random_inputs(batch=1, heads=1, k=2, dim=3, seed=6, tau=(1.0,))
    mask_a = torch.ones(1, 1, 2, dtype=torch.bool)
    mask_b = torch.zeros(1, 1, 2, dtype=torch.bool)
    grad_out = torch.randn(1, 1, 2, 3, dtype=DOUBLE)

    out, (grad_a, grad_b, grad_t, grad_u, grad_tau) = grads(
        lambda *x: samsa_relaxation(*x, mask_a, mask_b, hard=False), [a, b, t, u, tau], grad_out
    )

    assert torch.equal(out, t)
    assert (grad_a == 0).all()
    assert (grad_b == 0).all()
    assert (grad_u == 0).all()
    assert (grad_tau == 0).all()
    assert torch.equal(grad_t, grad_out)


@pytest.mark.parametrize("hard", [False, True])
def test_relaxation_padding_ignored(hard):
    a, b, t, u, tau = [x.detach() for x in random_inputs(seed=7)]
    mask_a, mask_b = ragged_masks()
    a[~mask_a] = float("nan")
    b[~mask_b] = float("inf")
    t[~mask_a] = float("nan")
    u[~mask_b] = float("nan")
    inputs = [x.requires_grad_() for x in (a, b, t, u, tau)]

    out, result = grads(
        lambda *x: samsa_relaxation(*x, mask_a, mask_b, hard=hard), inputs, torch.ones(2, 2, 3, 4, dtype=DOUBLE)
    )

    assert torch.isfinite(out).all()
    assert (out[~mask_a] == 0).all()
    for got in result:
        assert torch.isfinite(got).all()
    assert (result[0][~mask_a] == 0).all()
    assert (result[1][~mask_b] == 0).all()


def test_relaxation_slope_cap_bounds_gradient():
    # One pair with a_1 = b_1 and <g, t - u> = 1: grad_a is the slope itself,
    # 1 / (4 tau) without the cap and 1 / 4 with it.
    a = torch.zeros(1, 1, 1, dtype=DOUBLE, requires_grad=True)
    b = torch.zeros(1, 1, 1, dtype=DOUBLE)
    t = torch.tensor([[[[1.0]]]], dtype=DOUBLE)
    u = torch.zeros(1, 1, 1, 1, dtype=DOUBLE)
    tau = torch.tensor([0.01], dtype=DOUBLE)
    mask = torch.ones(1, 1, 1, dtype=torch.bool)

    capped = torch.autograd.grad(samsa_relaxation(a, b, t, u, tau, mask, mask, slope_cap=True).sum(), a)[0]
    uncapped = torch.autograd.grad(samsa_relaxation(a, b, t, u, tau, mask, mask, slope_cap=False).sum(), a)[0]

    assert torch.allclose(capped, torch.tensor(0.25, dtype=DOUBLE))
    assert torch.allclose(uncapped, torch.tensor(25.0, dtype=DOUBLE))


def test_relaxation_float32_matches_float64():
    inputs = random_inputs(seed=8)
    mask_a, mask_b = ragged_masks()
    single = [x.detach().float().requires_grad_() for x in inputs]
    grad_out = torch.randn(2, 2, 3, 4, dtype=DOUBLE)

    out64, grads64 = grads(lambda *x: samsa_relaxation(*x, mask_a, mask_b, hard=False), inputs, grad_out)
    out32, grads32 = grads(lambda *x: samsa_relaxation(*x, mask_a, mask_b, hard=False), single, grad_out.float())

    assert out32.dtype == torch.float32
    assert torch.allclose(out32.double(), out64, atol=1e-5)
    for got, want in zip(grads32, grads64):
        assert torch.allclose(got.double(), want, atol=1e-5)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"tau": torch.tensor([1.0, 0.0], dtype=DOUBLE)}, "'tau' must be positive"),
        ({"tau": torch.ones(3, dtype=DOUBLE)}, r"'tau' must have shape \[H\]"),
        ({"t": torch.zeros(2, 2, 2, 4, dtype=DOUBLE)}, "'t' must have shape"),
        ({"u": torch.zeros(2, 2, 3, 5, dtype=DOUBLE)}, "'u' must have shape"),
        ({"mask_a": torch.ones(2, 2, 3)}, "'mask_a' must be a bool tensor"),
        ({"a": torch.zeros(2, 2, dtype=DOUBLE)}, r"shape \[B, H, K\]"),
    ],
)
def test_relaxation_bad_input_raises(change, message):
    a, b, t, u, tau = [x.detach() for x in random_inputs()]
    mask_a, mask_b = ragged_masks()
    kwargs = dict(a=a, b=b, t=t, u=u, tau=tau, mask_a=mask_a, mask_b=mask_b)
    kwargs.update(change)

    with pytest.raises(ValueError, match=message):
        samsa_relaxation(**kwargs)
