r"""The SAMSA relaxation: a gradient for "which tokens were sampled".

Per graph and head, the chosen set :math:`T` contains the tokens of ranks
:math:`1..k_b` of the perturbed scores (scores :math:`a_i`, rows
:math:`t_i`) and the runner-up set :math:`R` the tokens of ranks
:math:`k_b+1..2k_b` (scores :math:`b_j`, rows :math:`u_j`). Every pair is
compared through

.. math::
    p_{ij} = \sigma\left(\frac{a_i - b_j}{\tau_h}\right),

with a positive temperature :math:`\tau_h` per head, and the soft output row
mixes the chosen row with the runner-ups,

.. math::
    o_i = \frac{1}{n_R} \sum_{j \in R} \left( p_{ij} t_i
    + (1 - p_{ij}) u_j \right),

where :math:`n_R \le k_b` is the number of runner-ups of that graph and head.
A graph and head without runner-ups (:math:`n_R = 0`) returns :math:`o_i = t_i`.

The k x k comparison is a batched ``[B, H, K, K]`` tensor, so memory is
``O(B * H * K * K)`` for :math:`p` plus ``O(B * H * K * D)`` for the rows.
"""

from typing import Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


def _check_inputs(
    a: Tensor, b: Tensor, t: Tensor, u: Tensor, tau: Tensor, mask_a: Tensor, mask_b: Tensor
) -> None:
    if a.dim() != 3 or b.dim() != 3:
        raise ValueError(
            f"'a' and 'b' must have shape [B, H, K], got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    if t.dim() != 4 or t.shape[:3] != a.shape:
        raise ValueError(f"'t' must have shape {tuple(a.shape) + ('D',)}, got {tuple(t.shape)}.")
    if u.dim() != 4 or u.shape[:3] != b.shape or u.size(3) != t.size(3):
        raise ValueError(
            f"'u' must have shape {tuple(b.shape) + (t.size(3),)}, got {tuple(u.shape)}."
        )
    if t.dtype != u.dtype:
        raise ValueError(f"'t' and 'u' must have the same dtype, got {t.dtype} and {u.dtype}.")
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(
            f"'a' and 'b' must agree in [B, H], got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    if mask_a.shape != a.shape or mask_a.dtype != torch.bool:
        raise ValueError(
            f"'mask_a' must be a bool tensor of shape {tuple(a.shape)}, "
            f"got {mask_a.dtype} of shape {tuple(mask_a.shape)}."
        )
    if mask_b.shape != b.shape or mask_b.dtype != torch.bool:
        raise ValueError(
            f"'mask_b' must be a bool tensor of shape {tuple(b.shape)}, "
            f"got {mask_b.dtype} of shape {tuple(mask_b.shape)}."
        )
    if tau.dim() != 1 or tau.numel() != a.size(1):
        raise ValueError(
            f"'tau' must have shape [H] = [{a.size(1)}], got {tuple(tau.shape)}."
        )
    _check_tau(tau)


def _check_tau(tau: Tensor) -> None:
    if tau.numel() > 0 and not bool((tau > 0).all()):
        raise ValueError(
            f"'tau' must be positive, got {tau.detach().tolist()}. "
            f"Parametrize it, for example as exp(log_tau), to keep it positive."
        )


def _zero_padding(
    a: Tensor, b: Tensor, t: Tensor, u: Tensor, mask_a: Tensor, mask_b: Tensor
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Zero the padded slots, so that values gathered at padding never reach
    an output or a gradient."""
    a = a.masked_fill(~mask_a, 0.0)
    b = b.masked_fill(~mask_b, 0.0)
    t = t.masked_fill(~mask_a.unsqueeze(-1), 0.0)
    u = u.masked_fill(~mask_b.unsqueeze(-1), 0.0)
    return a, b, t, u


def _pair_probabilities(a: Tensor, b: Tensor, tau: Tensor) -> Tuple[Tensor, Tensor]:
    """Return ``(p, diff)``, both ``[B, H, K, K]``, with ``diff = a_i - b_j``
    and ``p = sigmoid(diff / tau_h)``."""
    diff = a.unsqueeze(-1) - b.unsqueeze(-2)
    p = torch.sigmoid(diff / tau.view(1, -1, 1, 1))
    return p, diff


def _soft_weights(p: Tensor, mask_b: Tensor) -> Tuple[Tensor, Tensor]:
    """Return the weight ``[B, H, K]`` of every chosen row and the weights
    ``[B, H, K, K]`` of the runner-up rows in the soft output."""
    count_r = mask_b.sum(-1, keepdim=True).to(p.dtype)
    inv_count = 1.0 / count_r.clamp(min=1.0)
    valid_j = mask_b.unsqueeze(-2).to(p.dtype)

    weight_t = (p * valid_j).sum(-1) * inv_count
    weight_t = torch.where(count_r > 0, weight_t, torch.ones_like(weight_t))
    weight_u = (valid_j - p * valid_j) * inv_count.unsqueeze(-1)
    return weight_t, weight_u


def _mix_rows(weight_t: Tensor, weight_u: Tensor, t: Tensor, u: Tensor) -> Tensor:
    """Return ``weight_t * t + weight_u @ u`` in the dtype of the rows."""
    weight_t, weight_u = weight_t.to(t.dtype), weight_u.to(t.dtype)
    return weight_t.unsqueeze(-1) * t + weight_u @ u


def _score_grads(
    grad_rows: Tensor,
    t: Tensor,
    u: Tensor,
    p: Tensor,
    diff: Tensor,
    tau: Tensor,
    mask_b: Tensor,
    slope_cap: bool,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Return the gradients with respect to ``a``, ``b`` and ``tau``."""
    # c_ij = <g_i, t_i - u_j> / n_R over valid runner-ups j.
    count_r = mask_b.sum(-1, keepdim=True).to(p.dtype).clamp(min=1.0)
    dot_t = (grad_rows * t).sum(-1, keepdim=True).to(p.dtype)
    dot_u = (grad_rows @ u.transpose(-1, -2)).to(p.dtype)
    coeff = (dot_t - dot_u) * mask_b.unsqueeze(-2).to(p.dtype) / count_r.unsqueeze(-1)

    # The sigmoid slope p (1 - p) / tau peaks at 1 / (4 tau). Scaling it by
    # min(1, tau) keeps the peak at most 1 / 4 for small temperatures.
    tau_view = tau.view(1, -1, 1, 1)
    slope = p * (1.0 - p) / tau_view
    if slope_cap:
        slope = slope * tau_view.clamp(max=1.0)

    weighted = coeff * slope
    grad_a = weighted.sum(-1)
    grad_b = -weighted.sum(-2)
    grad_tau = -(weighted * diff).sum(dim=(0, 2, 3)) / tau
    return grad_a, grad_b, grad_tau


class SoftRelaxation(torch.autograd.Function):
    """Soft SAMSA relaxation with its exact analytic gradient.

    Only the ``[B, H, K]`` scores and ``[B, H, K, D]`` rows are saved for the
    backward pass, which recomputes the ``[B, H, K, K]`` pair terms."""

    @staticmethod
    def forward(ctx, a, b, t, u, tau, mask_a, mask_b):
        a, b, t, u = _zero_padding(a, b, t, u, mask_a, mask_b)
        p, _ = _pair_probabilities(a, b, tau)
        weight_t, weight_u = _soft_weights(p, mask_b)

        out = _mix_rows(weight_t, weight_u, t, u)
        out = out.masked_fill(~mask_a.unsqueeze(-1), 0.0)

        ctx.save_for_backward(a, b, t, u, tau, mask_a, mask_b)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        a, b, t, u, tau, mask_a, mask_b = ctx.saved_tensors
        grad_rows = grad_out.masked_fill(~mask_a.unsqueeze(-1), 0.0)
        p, diff = _pair_probabilities(a, b, tau)

        grad_a, grad_b, grad_tau = _score_grads(
            grad_rows, t, u, p, diff, tau, mask_b, slope_cap=False
        )

        weight_t, weight_u = _soft_weights(p, mask_b)
        grad_t = weight_t.to(grad_rows.dtype).unsqueeze(-1) * grad_rows
        grad_u = weight_u.to(grad_rows.dtype).transpose(-1, -2) @ grad_rows
        grad_u = grad_u.masked_fill(~mask_b.unsqueeze(-1), 0.0)
        return grad_a, grad_b, grad_t, grad_u, grad_tau, None, None


class HardRelaxation(torch.autograd.Function):
    """Straight-through SAMSA relaxation: the forward pass returns the chosen
    rows, the backward pass uses the soft gradient for the scores.

    The forward pass computes no pair terms. The backward pass computes the
    ``[B, H, K, K]`` pair terms from the saved scores."""

    @staticmethod
    def forward(ctx, a, b, t, u, tau, mask_a, mask_b, slope_cap):
        a, b, t, u = _zero_padding(a, b, t, u, mask_a, mask_b)

        ctx.slope_cap = slope_cap
        ctx.save_for_backward(a, b, t, u, tau, mask_a, mask_b)
        return t.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        a, b, t, u, tau, mask_a, mask_b = ctx.saved_tensors
        grad_rows = grad_out.masked_fill(~mask_a.unsqueeze(-1), 0.0)
        p, diff = _pair_probabilities(a, b, tau)

        grad_a, grad_b, grad_tau = _score_grads(
            grad_rows, t, u, p, diff, tau, mask_b, slope_cap=ctx.slope_cap
        )
        return grad_a, grad_b, grad_rows, None, grad_tau, None, None, None


def samsa_relaxation(
    a: Tensor,
    b: Tensor,
    t: Tensor,
    u: Tensor,
    tau: Tensor,
    mask_a: Tensor,
    mask_b: Tensor,
    hard: bool = True,
    slope_cap: bool = True,
) -> Tensor:
    r"""Apply the SAMSA relaxation to the chosen rows of every graph and head.

    With :math:`p_{ij} = \sigma((a_i - b_j) / \tau_h)` over the valid
    runner-ups :math:`j` and :math:`n_R` their number, the soft mode returns

    .. math::
        o_i = \frac{1}{n_R} \sum_j \left( p_{ij} t_i + (1 - p_{ij}) u_j \right),

    and :math:`o_i = t_i` when :math:`n_R = 0`. The hard mode
    (straight-through) returns :math:`o_i = t_i` exactly. Its backward pass
    passes the output gradient :math:`g_i` to :math:`t_i` unchanged, gives
    :math:`u` no gradient, and gives :math:`a`, :math:`b` and :math:`\tau`
    the soft mode's gradients:

    .. math::
        c_{ij} &= \langle g_i, t_i - u_j \rangle / n_R, \qquad
        s_{ij} = p_{ij} (1 - p_{ij}) / \tau_h \cdot \gamma_h

        \frac{\partial L}{\partial a_i} &= \sum_j c_{ij} s_{ij}, \qquad
        \frac{\partial L}{\partial b_j} = -\sum_i c_{ij} s_{ij}

        \frac{\partial L}{\partial \tau_h} &= -\sum_{b, i, j} c_{ij} s_{ij}
        \frac{a_i - b_j}{\tau_h}

    where :math:`\gamma_h = \min(1, \tau_h)` with ``slope_cap=True`` (the
    slope then peaks at no more than 1/4) and :math:`\gamma_h = 1` otherwise.
    The soft mode has exactly these gradients for :math:`a`, :math:`b` and
    :math:`\tau` with :math:`\gamma_h = 1`, and
    :math:`\partial L / \partial t_i = g_i \sum_j p_{ij} / n_R` and
    :math:`\partial L / \partial u_j = \sum_i (1 - p_{ij}) g_i / n_R`.

    Padded slots (``mask_a`` or ``mask_b`` :obj:`False`) may hold any finite
    or non-finite values: they are zeroed, padded output rows are zero, and
    padded inputs get zero gradients.

    Args:
        a (torch.Tensor): ``[B, H, K]`` scores of the chosen tokens.
        b (torch.Tensor): ``[B, H, K]`` scores of the runner-up tokens.
        t (torch.Tensor): ``[B, H, K, D]`` rows of the chosen tokens.
        u (torch.Tensor): ``[B, H, K, D]`` rows of the runner-up tokens.
        tau (torch.Tensor): ``[H]`` positive temperature per head.
        mask_a (torch.Tensor): ``[B, H, K]`` bool, valid chosen slots.
        mask_b (torch.Tensor): ``[B, H, K]`` bool, valid runner-up slots. A
            graph may have fewer runner-ups than chosen tokens, or none.
        hard (bool, optional): If :obj:`True`, use the straight-through
            hard mode, else the soft mode. (default: :obj:`True`)
        slope_cap (bool, optional): If :obj:`True`, scale the sigmoid slope
            by :math:`\min(1, \tau_h)` in the hard mode's backward pass. The
            soft mode always uses the exact gradient. (default: :obj:`True`)

    Returns:
        ``[B, H, K, D]`` output rows, zero at padded slots.

    Raises:
        ValueError: If shapes disagree, a mask is not bool, or ``tau`` is not
            positive.
    """
    _check_inputs(a, b, t, u, tau, mask_a, mask_b)
    return _samsa_relaxation(a, b, t, u, tau, mask_a, mask_b, hard=hard, slope_cap=slope_cap)


def _samsa_relaxation(
    a: Tensor,
    b: Tensor,
    t: Tensor,
    u: Tensor,
    tau: Tensor,
    mask_a: Tensor,
    mask_b: Tensor,
    hard: bool = True,
    slope_cap: bool = True,
) -> Tensor:
    """Run :func:`samsa_relaxation` without checking its inputs, for callers
    that build them with consistent shapes and a positive ``tau``."""
    if hard:
        return HardRelaxation.apply(a, b, t, u, tau, mask_a, mask_b, slope_cap)
    return SoftRelaxation.apply(a, b, t, u, tau, mask_a, mask_b)


def samsa_relaxation_reference(
    a: Tensor,
    b: Tensor,
    t: Tensor,
    u: Tensor,
    tau: Tensor,
    mask_a: Tensor,
    mask_b: Tensor,
    hard: bool = True,
    slope_cap: bool = True,
) -> Tensor:
    r"""Compute :func:`samsa_relaxation` with plain differentiable PyTorch
    operations, for tests.

    The hard mode adds ``soft - soft.detach()`` to ``t``, where ``soft`` is
    computed from detached rows and from probabilities whose slope is scaled
    by :math:`\min(1, \tau_h)`. Arguments and output are those of
    :func:`samsa_relaxation`.
    """
    _check_inputs(a, b, t, u, tau, mask_a, mask_b)
    a, b, t, u = _zero_padding(a, b, t, u, mask_a, mask_b)
    p, _ = _pair_probabilities(a, b, tau)

    if not hard:
        weight_t, weight_u = _soft_weights(p, mask_b)
        out = _mix_rows(weight_t, weight_u, t, u)
        return out.masked_fill(~mask_a.unsqueeze(-1), 0.0)

    if slope_cap:
        gamma = tau.detach().clamp(max=1.0).view(1, -1, 1, 1)
        p = p.detach() + gamma * (p - p.detach())
    weight_t, weight_u = _soft_weights(p, mask_b)
    soft = _mix_rows(weight_t, weight_u, t.detach(), u.detach())
    out = t + (soft - soft.detach())
    return out.masked_fill(~mask_a.unsqueeze(-1), 0.0)
