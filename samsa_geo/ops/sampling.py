"""The SAMSA sampling step: pick ``k_b`` key/value rows per graph and head.

:func:`samsa_sample` is what a SAMSA layer calls between scoring its tokens
and attending. :func:`append_registers` adds learnable register tokens to
every graph of a batch before sampling.
"""

from typing import NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

from samsa_geo.ops.gumbel import gumbel_noise
from samsa_geo.ops.relaxation import _check_tau, _samsa_relaxation
from samsa_geo.ops.segment import check_finite, resolve_k, resolve_segments
from samsa_geo.ops.topk import _select_topk


class SampleResult(NamedTuple):
    """Output of :func:`samsa_sample`.

    Attributes:
        rows (torch.Tensor): ``[B, H, K, D]`` sampled value rows, zero at
            padded slots.
        mask (torch.Tensor): ``[B, H, K]`` bool, valid slots.
        index (torch.Tensor): ``[B, H, K]`` long row numbers into the ``N``
            input rows, ``-1`` at padded slots.
        scores (torch.Tensor): ``[N, H]`` scores used for ranking: the
            Gumbel-perturbed scores when noise was added, else the input.
    """

    rows: Tensor
    mask: Tensor
    index: Tensor
    scores: Tensor


def _check_sample_inputs(scores: Tensor, values: Tensor, tau: Tensor) -> None:
    if scores.dim() != 2:
        raise ValueError(f"'scores' must have shape [N, H], got {tuple(scores.shape)}.")
    if values.dim() != 3 or values.shape[:2] != scores.shape:
        raise ValueError(
            f"'values' must have shape [N, H, D] = [{scores.size(0)}, {scores.size(1)}, D], "
            f"got {tuple(values.shape)}."
        )
    if tau.dim() != 1 or tau.numel() != scores.size(1):
        raise ValueError(f"'tau' must have shape [H] = [{scores.size(1)}], got {tuple(tau.shape)}.")
    check_finite(scores, "scores")


def _gather_rows(table: Tensor, index: Tensor) -> Tensor:
    """Gather ``table[index[b, h, r], h]`` for ``[N, H, ...]`` tables and
    ``[B, H, K]`` indices, with zeros at padded (``-1``) slots."""
    heads = torch.arange(index.size(1), device=index.device).view(1, -1, 1)
    rows = table[index.clamp(min=0), heads]
    pad = (index < 0).view(index.shape + (1,) * (rows.dim() - 3))
    return rows.masked_fill(pad, 0.0)


def _split_ranks(
    index: Tensor, k_per_graph: Tensor, max_k: int
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Split ``[B, H, K2]`` top-2k indices into the chosen ranks ``0..k_b-1``
    and the runner-up ranks ``k_b..2k_b-1``, each ``[B, H, max_k]``.

    ``K2 >= max_k`` because the graph that keeps ``max_k`` nodes has at
    least that many."""
    slot = torch.arange(max_k, device=index.device).view(1, 1, -1)
    width = index.size(2)

    chosen = index[:, :, :max_k]
    mask_a = (slot < k_per_graph.view(-1, 1, 1)) & (chosen >= 0)
    chosen = chosen.masked_fill(~mask_a, -1)

    # Runner-up slot j of graph b sits at rank k_b + j of the top-2k list.
    position = (k_per_graph.view(-1, 1, 1) + slot).expand(index.size(0), index.size(1), max_k)
    runner = index.gather(2, position.clamp(max=max(width - 1, 0)))
    mask_b = (slot < k_per_graph.view(-1, 1, 1)) & (position < width) & (runner >= 0)
    runner = runner.masked_fill(~mask_b, -1)
    return chosen, mask_a, runner, mask_b


def samsa_sample(
    scores: Tensor,
    values: Tensor,
    tau: Tensor,
    k: Optional[Union[int, Tensor]] = None,
    ratio: Optional[float] = None,
    batch: Optional[Tensor] = None,
    ptr: Optional[Tensor] = None,
    num_graphs: Optional[int] = None,
    training: bool = False,
    hard: bool = True,
    stochastic: bool = False,
    slope_cap: bool = True,
    generator: Optional[torch.Generator] = None,
) -> SampleResult:
    r"""Sample ``k_b`` value rows of every graph and head, as SAMSA does.

    In training, the scores get standard Gumbel noise, and the top
    :math:`2 k_b` perturbed scores of each graph and head are split into the
    chosen ranks :math:`1..k_b` (scores :math:`a`, rows :math:`t`) and the
    runner-up ranks :math:`k_b+1..2k_b` (scores :math:`b`, rows :math:`u`).
    :func:`~samsa_geo.ops.samsa_relaxation` then combines them, so that the
    gradient reaches ``scores`` (through :math:`a` and :math:`b`), ``values``
    (through :math:`t`, and :math:`u` in soft mode) and ``tau``. A graph with
    fewer than :math:`2 k_b` nodes has fewer runner-ups, or none.

    In evaluation, the rows of the top :math:`k_b` scores are gathered
    without noise, so two calls return the same rows, unless
    ``stochastic=True`` adds Gumbel noise first. No relaxation runs, so
    ``scores`` gets no gradient.

    Args:
        scores (torch.Tensor): ``[N, H]`` finite score of every node and head.
        values (torch.Tensor): ``[N, H, D]`` rows to sample, for example
            keys and values concatenated along ``D``.
        tau (torch.Tensor): ``[H]`` positive temperature per head.
        k (int or torch.Tensor, optional): Rows to keep per graph, an int or
            a ``[B]`` long tensor. (default: :obj:`None`)
        ratio (float, optional): Fraction of each graph to keep, in (0, 1].
            Pass exactly one of ``k`` and ``ratio``. (default: :obj:`None`)
        batch (torch.Tensor, optional): ``[N]`` sorted graph index of every
            node. (default: :obj:`None`, one graph)
        ptr (torch.Tensor, optional): ``[B + 1]`` CSR offsets, used instead
            of ``batch`` when given. (default: :obj:`None`)
        num_graphs (int, optional): Number of graphs ``B`` when only
            ``batch`` is given. (default: :obj:`None`)
        training (bool, optional): If :obj:`True`, sample with noise and the
            relaxation. (default: :obj:`False`)
        hard (bool, optional): If :obj:`True`, the relaxation returns the
            chosen rows exactly (straight-through), else the soft mixture.
            (default: :obj:`True`)
        stochastic (bool, optional): If :obj:`True`, add Gumbel noise in
            evaluation too. (default: :obj:`False`)
        slope_cap (bool, optional): If :obj:`True`, cap the sigmoid slope of
            the hard mode's backward pass. (default: :obj:`True`)
        generator (torch.Generator, optional): Random number generator for
            the Gumbel noise. (default: :obj:`None`)

    Returns:
        :class:`SampleResult` ``(rows, mask, index, scores)`` with shapes
        ``[B, H, K, D]``, ``[B, H, K]``, ``[B, H, K]`` and ``[N, H]``, where
        ``K = max_b k_b``.
    """
    _check_sample_inputs(scores, values, tau)
    if training:
        _check_tau(tau)
    batch, ptr = resolve_segments(scores.size(0), batch, ptr, num_graphs, scores.device)
    sizes = ptr[1:] - ptr[:-1]
    k_per_graph = resolve_k(sizes, k, ratio)

    # One host read for the maxima that set the output shapes. A [B] tensor
    # k may keep more nodes in a smaller graph, so the largest
    # min(2 k_b, n_b) is read too.
    max_k, n_max, max_k2 = 0, 0, 0
    if sizes.numel() > 0:
        maxima = [k_per_graph.max(), sizes.max(), torch.minimum(2 * k_per_graph, sizes).max()]
        max_k, n_max, max_k2 = torch.stack(maxima).tolist()

    return _samsa_sample(
        scores, values, tau, batch, ptr, k_per_graph, max_k, n_max, training=training,
        hard=hard, stochastic=stochastic, slope_cap=slope_cap, generator=generator,
        max_k2=max_k2)


def _samsa_sample(
    scores: Tensor,
    values: Tensor,
    tau: Tensor,
    batch: Tensor,
    ptr: Tensor,
    k_per_graph: Tensor,
    max_k: int,
    n_max: int,
    training: bool = False,
    hard: bool = True,
    stochastic: bool = False,
    slope_cap: bool = True,
    generator: Optional[torch.Generator] = None,
    max_k2: Optional[int] = None,
) -> SampleResult:
    """Run :func:`samsa_sample` on checked inputs, without reading the maxima
    on the host.

    ``batch`` and ``ptr`` come from :func:`resolve_segments` and
    ``k_per_graph`` from :func:`resolve_k`. ``max_k`` and ``n_max`` are the
    largest ``k_b`` and graph size. ``max_k2``, the largest
    ``min(2 k_b, n_b)``, defaults to ``min(2 max_k, n_max)``, which is exact
    when a larger graph never keeps fewer nodes, as with an int ``k`` or a
    ``ratio``. A larger ``max_k2``, up to ``n_max``, only adds padding to the
    top-2k list and gives the same result."""
    if training or stochastic:
        ranked = scores + gumbel_noise(scores, generator=generator)
    else:
        ranked = scores

    if not training:
        index, mask = _select_topk(ranked.detach(), batch, ptr, k_per_graph,
                                   max_k=max_k, n_max=n_max)
        return SampleResult(_gather_rows(values, index), mask, index, ranked)

    if max_k2 is None:
        max_k2 = min(2 * max_k, n_max)
    sizes = ptr[1:] - ptr[:-1]
    index2, _ = _select_topk(ranked.detach(), batch, ptr, torch.minimum(2 * k_per_graph, sizes),
                             max_k=max_k2, n_max=n_max)
    chosen, mask_a, runner, mask_b = _split_ranks(index2, k_per_graph, max_k)

    a, b = _gather_rows(ranked, chosen), _gather_rows(ranked, runner)
    t, u = _gather_rows(values, chosen), _gather_rows(values, runner)
    rows = _samsa_relaxation(a, b, t, u, tau, mask_a, mask_b, hard=hard, slope_cap=slope_cap)
    return SampleResult(rows, mask_a, chosen, ranked)


def append_registers(
    scores: Tensor,
    values: Tensor,
    ptr: Tensor,
    register_scores: Tensor,
    register_values: Tensor,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Append ``R`` learnable register tokens to every graph of a batch.

    Graph ``b`` of the result contains its ``n_b`` own rows followed by the
    ``R`` registers, so the augmented batch stays sorted by graph. Every
    graph gets the registers, empty graphs included. An empty graph has no
    queries, so whatever its registers contribute is never read.

    Args:
        scores (torch.Tensor): ``[N, H]`` scores of the real tokens.
        values (torch.Tensor): ``[N, H, D]`` rows of the real tokens.
        ptr (torch.Tensor): ``[B + 1]`` CSR offsets of the real tokens.
        register_scores (torch.Tensor): ``[R, H]`` register scores.
        register_values (torch.Tensor): ``[R, H, D]`` register rows.

    Returns:
        ``(scores_aug, values_aug, ptr_aug, origin)``:
        ``[N + B R, H]`` scores, ``[N + B R, H, D]`` rows,
        ``[B + 1]`` offsets ``ptr + R * arange(B + 1)``, and ``[N + B R]``
        long ``origin``, the input row of every real token and ``-(r + 1)``
        for register ``r``. Gradients reach all four inputs.
    """
    if scores.dim() != 2 or values.dim() != 3 or values.shape[:2] != scores.shape:
        raise ValueError(
            f"'scores' and 'values' must have shapes [N, H] and [N, H, D], "
            f"got {tuple(scores.shape)} and {tuple(values.shape)}."
        )
    if register_scores.dim() != 2 or register_scores.size(1) != scores.size(1):
        raise ValueError(
            f"'register_scores' must have shape [R, {scores.size(1)}], "
            f"got {tuple(register_scores.shape)}."
        )
    if register_values.shape != register_scores.shape + values.shape[2:]:
        raise ValueError(
            f"'register_values' must have shape {tuple(register_scores.shape + values.shape[2:])}, "
            f"got {tuple(register_values.shape)}."
        )
    batch, ptr = resolve_segments(scores.size(0), ptr=ptr)
    return _append_registers(scores, values, batch, ptr, register_scores, register_values)


def _append_registers(
    scores: Tensor,
    values: Tensor,
    batch: Tensor,
    ptr: Tensor,
    register_scores: Tensor,
    register_values: Tensor,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Run :func:`append_registers` on checked inputs, with the ``batch`` and
    ``ptr`` of the real tokens from :func:`resolve_segments`."""
    num_nodes, num_registers = scores.size(0), register_scores.size(0)
    num_graphs = ptr.numel() - 1
    device = scores.device
    ptr_aug = ptr + num_registers * torch.arange(num_graphs + 1, device=device)

    # Row i of graph b moves to i + R * b. Register r of graph b goes to the
    # last R rows of the graph's augmented block.
    real_position = torch.arange(num_nodes, device=device) + num_registers * batch
    register_slot = torch.arange(num_registers, device=device)
    register_position = (ptr_aug[1:].view(-1, 1) - num_registers + register_slot.view(1, -1)).view(-1)

    source = torch.empty(num_nodes + num_graphs * num_registers, dtype=torch.long, device=device)
    source[real_position] = torch.arange(num_nodes, device=device)
    source[register_position] = num_nodes + torch.arange(num_graphs * num_registers, device=device)

    all_scores = torch.cat([scores, register_scores.repeat(num_graphs, 1)])
    all_values = torch.cat([values, register_values.repeat(num_graphs, 1, 1)])
    origin = torch.where(
        source < num_nodes, source, -((source - num_nodes) % max(num_registers, 1)) - 1
    )
    return all_scores[source], all_values[source], ptr_aug, origin
