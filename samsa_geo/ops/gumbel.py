r"""Gumbel noise and the Gumbel top-k trick on a ragged batch.

Adding independent standard Gumbel noise to scores :math:`s` and keeping the
:math:`k` largest perturbed scores draws :math:`k` items without replacement
from :math:`\mathrm{softmax}(s)`: item :math:`i` comes first with probability
:math:`e^{s_i} / \sum_j e^{s_j}`, the next from the remaining items in the
same way, and so on.
"""

from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from samsa_geo.ops.topk import _check_scores, segment_topk


def gumbel_noise(shape_like: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    r"""Draw standard Gumbel noise :math:`g = -\log(-\log u)` with
    :math:`u \sim \mathcal{U}(0, 1)`, shaped like ``shape_like``.

    The uniform draw is made in float32 (float64 for float64 input) and
    clamped to ``[tiny, 1 - eps]`` of that dtype, so the noise is always
    finite, also for float16 and bfloat16 outputs.

    Args:
        shape_like (torch.Tensor): Tensor whose shape, floating-point dtype
            and device the noise takes.
        generator (torch.Generator, optional): Random number generator on
            the device of ``shape_like``, for reproducible draws.
            (default: :obj:`None`)

    Returns:
        Tensor of the shape, dtype and device of ``shape_like``, without
        gradient.
    """
    if not shape_like.is_floating_point():
        raise ValueError(
            f"'shape_like' must have a floating-point dtype, got {shape_like.dtype}."
        )

    draw_dtype = torch.float64 if shape_like.dtype == torch.float64 else torch.float32
    info = torch.finfo(draw_dtype)
    uniform = torch.rand(
        shape_like.shape, dtype=draw_dtype, device=shape_like.device, generator=generator
    )
    uniform = uniform.clamp_(min=info.tiny, max=1.0 - info.eps)

    noise = -torch.log(-torch.log(uniform))
    return noise.to(shape_like.dtype)


def segment_gumbel_topk(
    scores: Tensor,
    k: Optional[Union[int, Tensor]] = None,
    ratio: Optional[float] = None,
    batch: Optional[Tensor] = None,
    ptr: Optional[Tensor] = None,
    num_graphs: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Draw :math:`k_b` nodes of every graph and head without replacement,
    with probabilities :math:`\mathrm{softmax}(s)` over the graph's nodes.

    Computes :math:`\tilde{s} = s + g` with standard Gumbel noise :math:`g`
    and returns :func:`~samsa_geo.ops.segment_topk` of :math:`\tilde{s}`.
    Arguments ``k``, ``ratio``, ``batch``, ``ptr`` and ``num_graphs`` and
    the ragged-batch semantics are those of
    :func:`~samsa_geo.ops.segment_topk`.

    Args:
        scores (torch.Tensor): ``[N]`` or ``[N, H]`` finite unnormalized
            log-probabilities.
        generator (torch.Generator, optional): Random number generator, for
            reproducible draws. (default: :obj:`None`)

    Returns:
        ``(index, mask, perturbed)``: ``[B, H, K]`` long node rows (``-1``
        padded, sorted by descending perturbed score), ``[B, H, K]`` bool
        mask, and ``perturbed`` of the shape of ``scores``. ``perturbed``
        keeps the autograd graph of ``scores``. For ``[N]`` scores,
        ``index`` and ``mask`` have shape ``[B, K]``.
    """
    _check_scores(scores)
    perturbed = scores + gumbel_noise(scores, generator=generator)
    index, mask = segment_topk(
        perturbed.detach(), k=k, ratio=ratio, batch=batch, ptr=ptr, num_graphs=num_graphs
    )
    return index, mask, perturbed
