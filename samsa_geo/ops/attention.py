r"""Attention of every node to the sampled keys of its own graph.

:func:`segment_attention` computes, for node :math:`i` of graph :math:`b`
and head :math:`h`,

.. math::
    o_i = \sum_{r \in S_b} \mathrm{softmax}_r\left(
    \frac{\langle q_i, k_{b,r} \rangle}{\sqrt{d}}\right) v_{b,r},

over the valid sampled slots :math:`S_b` of that graph and head. It pads the
queries of a group of graphs to ``[G, H, n_max, d]`` and calls
:func:`torch.nn.functional.scaled_dot_product_attention` once per group:

* **dense**: one group of all graphs, used when padding wastes little
  (``B * n_max <= 2 * N``, always true for a single graph);
* **bucketed**: graphs grouped by ``ceil(log2(n_b))``, so each group pads
  its queries to less than twice their number, used when sizes vary a lot.

:func:`segment_attention_reference` loops over graphs and is what the tests
compare both paths against.
"""

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from samsa_geo.ops.segment import resolve_segments

# The dense path runs when the padded queries number at most this many times
# the real ones.
DENSE_MAX_PADDING = 2.0


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, ptr: Tensor) -> None:
    if q.dim() != 3:
        raise ValueError(f"'q' must have shape [N, H, d], got {tuple(q.shape)}.")
    num_graphs, heads = ptr.numel() - 1, q.size(1)
    if k.dim() != 4 or k.shape[:2] != (num_graphs, heads) or k.size(3) != q.size(2):
        raise ValueError(
            f"'k' must have shape [B, H, K, d] = [{num_graphs}, {heads}, K, {q.size(2)}], "
            f"got {tuple(k.shape)}."
        )
    if v.dim() != 4 or v.shape[:3] != k.shape[:3]:
        raise ValueError(
            f"'v' must have shape {tuple(k.shape[:3]) + ('dv',)}, got {tuple(v.shape)}."
        )
    if mask.shape != k.shape[:3] or mask.dtype != torch.bool:
        raise ValueError(
            f"'mask' must be a bool tensor of shape {tuple(k.shape[:3])}, "
            f"got {mask.dtype} of shape {tuple(mask.shape)}."
        )

    sizes = ptr[1:] - ptr[:-1]
    keyless = (sizes > 0) & (~mask.any(dim=2)).any(dim=1)
    if bool(keyless.any()):
        graph = int(keyless.nonzero()[0])
        raise ValueError(
            f"Graph {graph} has {int(sizes[graph])} nodes but a head without any valid key in "
            f"'mask'. Every non-empty graph needs at least one sampled key per head."
        )


def _attend_group(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor,
    batch: Tensor,
    ptr: Tensor,
    graphs: Tensor,
    nodes: Tensor,
    n_max: int,
    dropout_p: float,
    scale: float,
) -> Tensor:
    """Attend the ``nodes`` of the sorted ``graphs``, of at most ``n_max``
    nodes each, with padded queries and return ``[len(nodes), H, dv]``.
    ``nodes`` must be sorted."""
    num_graphs, heads = ptr.numel() - 1, q.size(1)
    slot = torch.full((num_graphs,), -1, dtype=torch.long, device=q.device)
    slot[graphs] = torch.arange(graphs.numel(), device=q.device)
    padded_rows = graphs.numel() * n_max

    # Sorted nodes of sorted graphs fill the padded grid in row-major order,
    # so without padding (one graph, or equal sizes) the grid is q itself.
    q_nodes = q if nodes.numel() == q.size(0) else q.index_select(0, nodes)
    if padded_rows == nodes.numel():
        position = None
        q_pad = q_nodes
    else:
        node_graph = batch[nodes]
        position = slot[node_graph] * n_max + (nodes - ptr[node_graph])
        q_pad = q.new_zeros(padded_rows, heads, q.size(2)).index_copy_(0, position, q_nodes)

    if graphs.numel() < num_graphs:
        k, v, attn_mask = k[graphs], v[graphs], attn_mask[graphs]
    out = F.scaled_dot_product_attention(
        q_pad.view(graphs.numel(), n_max, heads, -1).transpose(1, 2),
        k,
        v,
        attn_mask=attn_mask.unsqueeze(2),
        dropout_p=dropout_p,
        scale=scale,
    )
    out = out.transpose(1, 2).reshape(padded_rows, heads, -1)
    return out if position is None else out.index_select(0, position)


def _bucket_groups(ptr: Tensor) -> List[Tuple[Tensor, int]]:
    """Group the non-empty graphs by ``ceil(log2(n_b))`` and return every
    group with its largest graph size."""
    sizes = ptr[1:] - ptr[:-1]
    graphs = (sizes > 0).nonzero().view(-1)
    bucket = torch.ceil(torch.log2(sizes[graphs].double())).long()

    groups = []
    for value in torch.unique(bucket).tolist():
        members = graphs[bucket == value]
        groups.append((members, int(sizes[members].max())))
    return groups


def segment_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor,
    batch: Optional[Tensor] = None,
    ptr: Optional[Tensor] = None,
    dropout_p: float = 0.0,
    scale: Optional[float] = None,
    path: Optional[str] = None,
) -> Tensor:
    r"""Attend every node to the valid sampled keys of its own graph.

    Node :math:`i` of graph ``batch[i]`` attends, per head, with
    :math:`\mathrm{softmax}(q_i k^\top \cdot \mathrm{scale})` over the slots
    where ``mask`` is :obj:`True`, and never to keys of another graph.
    Padded slots may hold any values. Empty graphs (repeated ``ptr``
    entries) have no queries, so their keys are never read.

    Args:
        q (torch.Tensor): ``[N, H, d]`` queries of all nodes.
        k (torch.Tensor): ``[B, H, K, d]`` sampled keys per graph and head.
        v (torch.Tensor): ``[B, H, K, dv]`` sampled values.
        mask (torch.Tensor): ``[B, H, K]`` bool, valid slots. Every graph
            with nodes needs at least one valid slot per head.
        batch (torch.Tensor, optional): ``[N]`` sorted graph index of every
            node. (default: :obj:`None`)
        ptr (torch.Tensor, optional): ``[B + 1]`` CSR offsets, used instead
            of ``batch`` when given. (default: :obj:`None`)
        dropout_p (float, optional): Dropout probability on the attention
            weights. Pass 0 in evaluation. (default: :obj:`0.0`)
        scale (float, optional): Logit scale. (default: :obj:`1 / sqrt(d)`)
        path (str, optional): ``"dense"`` or ``"bucketed"`` to force a path,
            for tests and benchmarks. (default: :obj:`None`, chosen from the
            padding waste)

    Returns:
        ``[N, H, dv]`` attention output in node order.

    Raises:
        ValueError: If shapes disagree, ``batch`` or ``ptr`` are invalid, or
            a graph with nodes has a head without a valid key.
    """
    batch, ptr = resolve_segments(q.size(0), batch, ptr, k.size(0) if k.dim() == 4 else None, q.device)
    _check_inputs(q, k, v, mask, ptr)
    if q.size(0) == 0:
        return q.new_zeros(0, q.size(1), v.size(3))

    n_max = int((ptr[1:] - ptr[:-1]).max())
    return _segment_attention(q, k, v, mask, batch, ptr, n_max, dropout_p, scale, path)


def _segment_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor,
    batch: Tensor,
    ptr: Tensor,
    n_max: int,
    dropout_p: float = 0.0,
    scale: Optional[float] = None,
    path: Optional[str] = None,
) -> Tensor:
    """Run :func:`segment_attention` on checked inputs, with ``batch`` and
    ``ptr`` from :func:`resolve_segments`, at least one valid key per head of
    every non-empty graph, and ``n_max``, the largest graph size."""
    if scale is None:
        scale = 1.0 / math.sqrt(q.size(2))
    if q.size(0) == 0:
        return q.new_zeros(0, q.size(1), v.size(3))

    # Padded slots may contain NaN, which a masked logit would still carry, so
    # they are zeroed. Rows of empty graphs see every slot, so their softmax
    # is finite. Their outputs are never read because those graphs have no
    # nodes.
    k = k.masked_fill(~mask.unsqueeze(-1), 0.0)
    v = v.masked_fill(~mask.unsqueeze(-1), 0.0)
    attn_mask = mask | ~mask.any(dim=2, keepdim=True)

    num_graphs, num_nodes = ptr.numel() - 1, q.size(0)
    if path is None:
        path = "dense" if num_graphs * n_max <= DENSE_MAX_PADDING * num_nodes else "bucketed"
    if path == "dense":
        groups = [(torch.arange(num_graphs, device=q.device), n_max)]
    elif path == "bucketed":
        groups = _bucket_groups(ptr)
    else:
        raise ValueError(f"'path' must be None, 'dense' or 'bucketed', got {path!r}.")

    if len(groups) == 1:
        graphs, group_n_max = groups[0]
        nodes = torch.arange(num_nodes, device=q.device)
        return _attend_group(
            q, k, v, attn_mask, batch, ptr, graphs, nodes, group_n_max, dropout_p, scale
        )

    outputs, order = [], []
    for graphs, group_n_max in groups:
        in_group = torch.zeros(num_graphs, dtype=torch.bool, device=q.device)
        in_group[graphs] = True
        nodes = in_group[batch].nonzero().view(-1)
        outputs.append(
            _attend_group(q, k, v, attn_mask, batch, ptr, graphs, nodes, group_n_max, dropout_p, scale)
        )
        order.append(nodes)

    # Row r of the concatenated outputs belongs to node order[r].
    order = torch.cat(order)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=q.device)
    return torch.cat(outputs).index_select(0, inverse)


def segment_attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor,
    batch: Optional[Tensor] = None,
    ptr: Optional[Tensor] = None,
    dropout_p: float = 0.0,
    scale: Optional[float] = None,
) -> Tensor:
    """Compute :func:`segment_attention` with a Python loop over graphs and
    an explicit softmax, for tests. Arguments and output are those of
    :func:`segment_attention`."""
    batch, ptr = resolve_segments(q.size(0), batch, ptr, k.size(0) if k.dim() == 4 else None, q.device)
    _check_inputs(q, k, v, mask, ptr)
    if scale is None:
        scale = 1.0 / math.sqrt(q.size(2))

    v = v.masked_fill(~mask.unsqueeze(-1), 0.0)
    out = q.new_zeros(q.size(0), q.size(1), v.size(3))
    for b in range(ptr.numel() - 1):
        start, end = int(ptr[b]), int(ptr[b + 1])
        if start == end:
            continue
        logits = torch.einsum("nhd,hkd->hnk", q[start:end], k[b]) * scale
        logits = logits.masked_fill(~mask[b].unsqueeze(1), float("-inf"))
        weights = F.dropout(torch.softmax(logits, dim=-1), p=dropout_p)
        out[start:end] = torch.einsum("hnk,hkd->nhd", weights, v[b])
    return out
