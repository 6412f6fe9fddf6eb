"""Segments of a ragged PyG batch: conversion between ``batch`` and ``ptr``,
input checks, and the number of tokens each graph keeps.

A PyG mini-batch stores the nodes of all graphs in one tensor. Graph ``b`` owns
rows ``ptr[b]:ptr[b + 1]``, and ``batch[i]`` is the graph of row ``i``. Every
operation in :mod:`samsa_geo.ops` works per segment and never mixes rows of
different graphs.
"""

from typing import Optional, Tuple, Union

import torch
from torch import Tensor

# Subtracted before rounding up ``ratio * n``, so that a product such as
# 0.3 * 10 = 3.0000000000000004 gives 3 and not 4.
_RATIO_ROUNDING_TOL = 1e-7


def check_finite(x: Tensor, name: str) -> None:
    """Raise a :class:`ValueError` if ``x`` has a NaN or infinite entry.

    Args:
        x (torch.Tensor): Tensor of any shape.
        name (str): Argument name used in the error message.
    """
    if not x.is_floating_point() or x.numel() == 0:
        return

    # A NaN or an infinity makes the sum non-finite, so a finite sum proves
    # every entry finite with one reduction. A sum that overflows from finite
    # entries falls through to the exact count below, which then passes.
    if bool(torch.isfinite(x.detach().sum())):
        return
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        count = int(bad.sum())
        raise ValueError(
            f"'{name}' contains {count} NaN or infinite value(s) out of {x.numel()}. "
            f"Clean the input (for example with torch.nan_to_num) before calling this operator."
        )


def _check_index_vector(index: Tensor, name: str) -> None:
    if not isinstance(index, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor, got {type(index).__name__}.")
    if index.dim() != 1:
        raise ValueError(f"'{name}' must be one-dimensional, got shape {tuple(index.shape)}.")
    if index.dtype not in (torch.long, torch.int32):
        raise ValueError(f"'{name}' must have an integer dtype (torch.long), got {index.dtype}.")


def batch_to_ptr(batch: Tensor, num_graphs: Optional[int] = None) -> Tensor:
    """Convert a sorted ``batch`` vector into CSR offsets ``ptr``.

    Args:
        batch (torch.Tensor): ``[N]`` sorted graph index of every node.
        num_graphs (int, optional): Number of graphs ``B``. Graphs after the
            last index in ``batch`` are empty. (default: ``batch.max() + 1``)

    Returns:
        ``ptr``: ``[B + 1]`` long tensor with ``ptr[0] = 0`` and
        ``ptr[B] = N``.
    """
    if num_graphs is None:
        num_graphs = int(batch.max()) + 1 if batch.numel() > 0 else 0
    sizes = torch.bincount(batch.long(), minlength=num_graphs)
    ptr = batch.new_zeros(num_graphs + 1, dtype=torch.long)
    torch.cumsum(sizes, dim=0, out=ptr[1:])
    return ptr


def ptr_to_batch(ptr: Tensor, num_nodes: Optional[int] = None) -> Tensor:
    """Convert CSR offsets ``ptr`` of shape ``[B + 1]`` into a sorted
    ``batch`` vector of shape ``[N]``, with ``N = ptr[-1]``."""
    sizes = ptr[1:] - ptr[:-1]
    graph = torch.arange(sizes.numel(), device=ptr.device)
    return torch.repeat_interleave(graph, sizes, output_size=num_nodes)


def resolve_segments(
    num_nodes: int,
    batch: Optional[Tensor] = None,
    ptr: Optional[Tensor] = None,
    num_graphs: Optional[int] = None,
    device: Optional[torch.device] = None,
) -> Tuple[Tensor, Tensor]:
    """Check ``batch`` or ``ptr`` and return both.

    With neither given, all ``num_nodes`` rows form one graph, as in PyG.

    Args:
        num_nodes (int): Number of rows ``N`` in the node tensor.
        batch (torch.Tensor, optional): ``[N]`` graph index of every node,
            sorted in non-decreasing order. (default: :obj:`None`)
        ptr (torch.Tensor, optional): ``[B + 1]`` CSR offsets. Repeated
            entries denote empty graphs. Takes precedence over ``batch``.
            (default: :obj:`None`)
        num_graphs (int, optional): Number of graphs ``B`` when only
            ``batch`` is given, so that trailing graphs can be empty.
            (default: :obj:`None`)
        device (torch.device, optional): Device of the returned tensors when
            neither ``batch`` nor ``ptr`` is given. (default: :obj:`None`)

    Returns:
        ``(batch, ptr)``: ``[N]`` and ``[B + 1]`` long tensors.

    Raises:
        ValueError: If ``batch`` is unsorted, negative or of the wrong length,
            or ``ptr`` does not start at 0, decreases or does not end at ``N``.
    """
    if ptr is not None:
        _check_index_vector(ptr, "ptr")
        ptr = ptr.long()
        if ptr.numel() == 0:
            raise ValueError("'ptr' must have at least one entry (ptr[0] = 0), got an empty tensor.")
        # One host read for all three checks.
        decreasing = (ptr[1:] < ptr[:-1]).any()
        first, last, decreasing = torch.stack([ptr[0], ptr[-1], decreasing.long()]).tolist()
        if first != 0 or last != num_nodes:
            raise ValueError(
                f"'ptr' must start at 0 and end at the number of nodes ({num_nodes}), "
                f"got ptr[0]={first} and ptr[-1]={last}."
            )
        if decreasing:
            raise ValueError(f"'ptr' must be non-decreasing, got {ptr.tolist()[:20]}.")
        if batch is not None and batch.numel() != num_nodes:
            raise ValueError(
                f"'batch' has {batch.numel()} entries but 'x' has {num_nodes} rows. "
                f"Pass a batch vector with one graph index per node."
            )
        return ptr_to_batch(ptr, num_nodes), ptr

    if batch is None:
        batch = torch.zeros(num_nodes, dtype=torch.long, device=device)
        ptr = torch.tensor([0, num_nodes], dtype=torch.long, device=device)
        return batch, ptr

    _check_index_vector(batch, "batch")
    batch = batch.long()
    if batch.numel() != num_nodes:
        raise ValueError(
            f"'batch' has {batch.numel()} entries but 'x' has {num_nodes} rows. "
            f"Pass a batch vector with one graph index per node."
        )
    if num_nodes == 0:
        return batch, batch_to_ptr(batch, num_graphs)

    # One host read for all checks and the number of graphs.
    unsorted = (batch[1:] < batch[:-1]).any()
    minimum, unsorted, last = torch.stack([batch.min(), unsorted.long(), batch[-1]]).tolist()
    if minimum < 0:
        raise ValueError(f"'batch' must be non-negative, got minimum {minimum}.")
    if unsorted:
        raise ValueError(
            "'batch' must be sorted in non-decreasing order, as PyG's DataLoader "
            "produces it. Sort the nodes by graph first, for example with "
            "'perm = batch.argsort(stable=True)' and indexing every node tensor with 'perm'."
        )
    if num_graphs is not None and last >= num_graphs:
        raise ValueError(
            f"'batch' contains graph index {last}, but num_graphs={num_graphs}."
        )
    if num_graphs is None:
        num_graphs = last + 1

    # In a sorted batch, graph b starts at the first row whose index is >= b.
    # Unlike bincount, searchsorted has an output shape known before it runs.
    graphs = torch.arange(num_graphs + 1, dtype=batch.dtype, device=batch.device)
    return batch, torch.searchsorted(batch, graphs)


def resolve_k(
    sizes: Tensor,
    k: Optional[Union[int, Tensor]] = None,
    ratio: Optional[float] = None,
) -> Tensor:
    """Compute how many tokens each graph keeps.

    With an integer ``k``, graph ``b`` keeps ``min(k, n_b)`` tokens. With a
    ``ratio``, it keeps ``ceil(ratio * n_b)`` tokens, but at least one unless
    the graph is empty, as PyG's ``topk`` pooling does.

    Args:
        sizes (torch.Tensor): ``[B]`` number of nodes ``n_b`` of every graph.
        k (int or torch.Tensor, optional): Tokens per graph, an int > 0 or a
            ``[B]`` long tensor. (default: :obj:`None`)
        ratio (float, optional): Fraction of each graph to keep, in (0, 1].
            (default: :obj:`None`)

    Returns:
        ``[B]`` long tensor of kept counts, each in ``[0, n_b]``.

    Raises:
        ValueError: If both or neither of ``k`` and ``ratio`` are given, if
            ``k <= 0``, or if ``ratio`` lies outside (0, 1].
    """
    if (k is None) == (ratio is None):
        raise ValueError(
            f"Pass exactly one of 'k' and 'ratio', got k={k!r} and ratio={ratio!r}."
        )

    if ratio is not None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
            raise ValueError(
                f"'ratio' must be a float in (0, 1], got {ratio!r}. "
                f"Use 'k' to keep a fixed number of tokens per graph."
            )
        kept = torch.ceil(sizes.double() * float(ratio) - _RATIO_ROUNDING_TOL).long()
        kept = kept.clamp(min=1)
        return torch.minimum(kept, sizes.long())

    if isinstance(k, Tensor):
        if k.dtype.is_floating_point or bool((k <= 0).any()):
            raise ValueError(f"'k' must contain positive integers, got {k.tolist()[:20]}.")
        return torch.minimum(k.long().to(sizes.device).expand_as(sizes), sizes.long())

    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(
            f"'k' must be a positive int, got {k!r}. Use 'ratio' for a fraction of each graph."
        )
    return sizes.long().clamp(max=k)
