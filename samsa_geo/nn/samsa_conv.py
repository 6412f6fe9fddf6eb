"""The sampling self-attention layer on ragged PyG batches."""

import math
from typing import NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn import Linear

from samsa_geo.ops.attention import _segment_attention
from samsa_geo.ops.sampling import _append_registers, _samsa_sample
from samsa_geo.ops.segment import check_finite, ptr_to_batch, resolve_k, resolve_segments


class SamplingInfo(NamedTuple):
    r"""The tokens a :class:`SAMSAConv` layer sampled, per graph and head.

    ``K`` is the largest number of tokens any graph of the batch kept.
    Graph ``b`` fills slots ``0 .. k_b - 1`` of every head and pads the rest.

    Attributes:
        index (torch.Tensor): ``[B, H, K]`` long row numbers of the sampled
            nodes in the node tensor ``x``. Padding slots and slots filled by
            a register token are ``-1``.
        mask (torch.Tensor): ``[B, H, K]`` bool, :obj:`True` for slots that
            contain a sampled token (a node or a register).
        scores (torch.Tensor): ``[N, H]`` importance score of every node
            under every head, before any Gumbel noise.
        register_index (torch.Tensor): ``[B, H, K]`` long number ``r`` of the
            register token in each slot, ``-1`` where the slot contains a node
            or padding. All ``-1`` when the layer has no registers.
    """

    index: Tensor
    mask: Tensor
    scores: Tensor
    register_index: Tensor


class SAMSAConv(torch.nn.Module):
    r"""The sampling self-attention (SAMSA) layer from the `"SAMSA: Efficient
    Transformer for Many Data Modalities" <https://arxiv.org/abs/2408.05391>`_
    paper, on ragged PyG batches.

    Each head scores every node of a graph, samples the :math:`k` most
    important nodes of that graph without replacement, and every node of the
    graph attends only to those :math:`k` keys and values:

    .. math::
        \hat{\mathbf{X}} &= \mathrm{RMSNorm}(\mathbf{X})

        \mathbf{s} &= \mathbf{W}_s \left(\mathbf{X} + \mathrm{RMSNorm}(
        \mathrm{MLP}(\mathbf{X}))\right)

        \mathcal{S}_h &= \mathrm{top}\text{-}k\left(\mathbf{s}_h +
        \mathbf{g}\right)

        \mathbf{X}'_h &= \mathrm{softmax}\left(\frac{\hat{\mathbf{X}}
        \mathbf{W}^Q_h (\hat{\mathbf{X}}_{\mathcal{S}_h}
        \mathbf{W}^K_h)^{\top}}{\sqrt{C}}\right)
        \hat{\mathbf{X}}_{\mathcal{S}_h} \mathbf{W}^V_h

    followed by a merge of the heads and an output projection. In training,
    :math:`\mathbf{g}` is Gumbel noise and the choice of
    :math:`\mathcal{S}_h` gets a gradient from the SAMSA relaxation, which
    compares the sampled nodes with the :math:`k` runners-up under a
    learnable temperature :math:`\tau_h` per head
    (:func:`samsa_geo.ops.sampling.samsa_sample`). In evaluation,
    :math:`\mathbf{g} = 0` unless :obj:`stochastic_eval=True`, so the output
    is deterministic. One layer costs :math:`O(N k C)` per head instead of
    :math:`O(N^2 C)`.

    Each graph of the batch is sampled on its own, and a node never attends
    to a node of another graph. Without registers, a graph with
    :math:`n_b < k` nodes samples all of its nodes. With :math:`R`
    registers, each head samples :math:`\min(k, n_b + R)` tokens from the
    nodes and registers. An empty graph produces no output rows. The layer
    attends globally, so :obj:`edge_index` is accepted only to drop into PyG
    models and is ignored.

    .. note::
        Under :func:`torch.compile`, one forward pass with a :obj:`batch`
        vector has 4 graph breaks in evaluation and 4 in training (torch
        2.13, CPU, pinned by ``tests/test_nn_compile.py``). They come from
        two host reads of tensor values. The first checks :obj:`batch` and
        counts the graphs. The second reads the largest :math:`k_b` and graph
        size, which set the shapes of the sampled keys and values and of the
        padded queries, together with the finiteness of :obj:`x` and of the
        scores. The layer checks its inputs once and calls kernels that do
        not check them again.
        Batches whose graph sizes vary so much that padding would more than
        double the work take the sparse top-k and the bucketed attention
        paths, whose boolean indexing and grouping add breaks.

    Args:
        in_channels (int): Size of each input sample, or :obj:`-1` to derive
            it from the first input. A lazy layer creates its input-sized
            parameters in the first forward pass, so run one batch before
            creating the optimizer or loading a state dict.
        out_channels (int): Size of each output sample per head, and the
            size :math:`C` of each head's query, key and value.
        heads (int, optional): Number of attention heads :math:`H`. Each head
            samples its own set of nodes. (default: :obj:`1`)
        k (int, optional): Number of nodes each head samples per graph.
            Exactly one of :obj:`k` and :obj:`ratio` must be given.
            (default: :obj:`None`)
        ratio (float, optional): Fraction of each graph's nodes that each
            head samples, in :math:`(0, 1]`, rounded up and at least one node.
            (default: :obj:`None`)
        concat (bool, optional): If :obj:`True`, concatenate the heads,
            otherwise average them. (default: :obj:`True`)
        num_registers (int, optional): Number of learnable register tokens
            with their own keys, values and scores that join every graph's
            candidate pool. The paper uses :math:`2k`. A :obj:`ratio` still
            counts only the graph's nodes. (default: :obj:`0`)
        hard (bool, optional): If :obj:`True`, the training forward pass uses
            exactly the sampled rows and the relaxation only supplies the
            gradient (straight-through). If :obj:`False`, it uses the soft
            mixture of sampled rows and runners-up. (default: :obj:`True`)
        stochastic_eval (bool, optional): If :obj:`True`, evaluation also
            samples with Gumbel noise instead of a deterministic top-k.
            (default: :obj:`False`)
        tau (float, optional): Initial temperature of the relaxation, the same
            for every head. (default: :obj:`1.0`)
        learn_tau (bool, optional): If :obj:`True`, the temperature is a
            learnable positive parameter per head, stored as its logarithm.
            (default: :obj:`True`)
        dropout (float, optional): Dropout probability of the attention
            weights in training. Evaluation never drops. (default: :obj:`0.`)
        bias (bool, optional): If :obj:`False`, the projections learn no
            additive bias. (default: :obj:`True`)
        score_channels (int, optional): Hidden width of the score
            network's MLP, which maps :math:`F_{in}` features to
            :math:`F_{in}`. The MLP runs on every node, so a narrow hidden
            layer keeps sampling cheap. (default: :obj:`None`, which means
            :math:`\min(F_{in}, \max(8, \lfloor F_{in} / 8 \rfloor))`)

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})`,
          edge indices :math:`(2, |\mathcal{E}|)` or :obj:`None` (ignored),
          batch vector :math:`(|\mathcal{V}|)` *(optional)*,
          CSR offsets :math:`(B + 1)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, H * C)` or
          :math:`(|\mathcal{V}|, C)` if :obj:`concat=False`, and with
          :obj:`return_sampling=True` also a :class:`SamplingInfo`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: int = 1,
        k: Optional[int] = None,
        ratio: Optional[float] = None,
        concat: bool = True,
        num_registers: int = 0,
        hard: bool = True,
        stochastic_eval: bool = False,
        tau: float = 1.0,
        learn_tau: bool = True,
        dropout: float = 0.0,
        bias: bool = True,
        score_channels: Optional[int] = None,
    ):
        super().__init__()
        _check_options(in_channels, out_channels, heads, k, ratio, num_registers, tau, dropout,
                       score_channels)

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.k = k
        self.ratio = ratio
        self.concat = concat
        self.num_registers = num_registers
        self.hard = hard
        self.stochastic_eval = stochastic_eval
        self.tau = tau
        self.learn_tau = learn_tau
        self.dropout = dropout
        self.bias = bias
        self.score_channels = score_channels

        H, C = heads, out_channels
        merged = H * C if concat else C
        self.lin_out = Linear(merged, merged, bias=bias)

        log_tau = torch.full((H,), math.log(tau))
        if learn_tau:
            self.log_tau = Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)

        if num_registers > 0:
            self.register_scores = Parameter(torch.empty(num_registers, H))
            self.register_kv = Parameter(torch.empty(num_registers, H, 2 * C))
        else:
            self.register_parameter("register_scores", None)
            self.register_parameter("register_kv", None)

        if in_channels > 0:
            self._build_input_layers(in_channels)
        else:
            self._lazy_hook = self.register_forward_pre_hook(self._initialize_input_layers)

        self.reset_parameters()

    def _build_input_layers(self, in_channels: int) -> None:
        H, C = self.heads, self.out_channels
        self.norm = torch.nn.RMSNorm(in_channels)
        self.lin_query = Linear(in_channels, H * C, bias=self.bias)
        self.lin_kv = Linear(in_channels, H * 2 * C, bias=self.bias)

        # Importance score s = W_s (x + RMSNorm(MLP(x))), read from the
        # un-normalized input so that the norm does not hide feature scale.
        hidden = self.score_channels
        if hidden is None:
            hidden = min(in_channels, max(8, in_channels // 8))
        self.score_mlp = torch.nn.Sequential(
            Linear(in_channels, hidden, bias=self.bias),
            torch.nn.GELU(),
            Linear(hidden, in_channels, bias=self.bias),
        )
        self.score_norm = torch.nn.RMSNorm(in_channels)
        self.lin_score = Linear(in_channels, H, bias=self.bias)

    def _initialize_input_layers(self, module: torch.nn.Module, inputs: tuple) -> None:
        x = inputs[0]
        if x.dim() != 2:
            raise ValueError(f"'x' must have shape [num_nodes, in_channels], got {tuple(x.shape)}.")

        self.in_channels = x.size(-1)
        self._build_input_layers(self.in_channels)
        self._reset_input_layers()
        reference = self.lin_out.weight
        for name in ("norm", "lin_query", "lin_kv", "score_mlp", "score_norm", "lin_score"):
            getattr(self, name).to(device=reference.device, dtype=reference.dtype)

        self._lazy_hook.remove()
        del self._lazy_hook

    def _reset_input_layers(self) -> None:
        self.norm.reset_parameters()
        self.lin_query.reset_parameters()
        self.lin_kv.reset_parameters()
        self.score_mlp[0].reset_parameters()
        self.score_mlp[2].reset_parameters()
        self.score_norm.reset_parameters()
        self.lin_score.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        if self.in_channels > 0:
            self._reset_input_layers()
        self.lin_out.reset_parameters()

        with torch.no_grad():
            self.log_tau.fill_(math.log(self.tau))
        if self.register_kv is not None:
            torch.nn.init.normal_(self.register_kv, std=1.0 / math.sqrt(self.out_channels))
            torch.nn.init.zeros_(self.register_scores)

    @property
    def temperature(self) -> Tensor:
        r"""The ``[H]`` positive temperature :math:`\tau_h` of every head."""
        return self.log_tau.exp()

    def forward(
        self,
        x: Tensor,
        edge_index: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
        ptr: Optional[Tensor] = None,
        num_graphs: Optional[int] = None,
        return_sampling: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> Union[Tensor, Tuple[Tensor, SamplingInfo]]:
        r"""Runs the forward pass of the module.

        Args:
            x (torch.Tensor): ``[N, F_in]`` node features. NaN or infinite
                entries raise a :class:`ValueError`.
            edge_index (torch.Tensor, optional): Ignored, because the layer
                attends to sampled nodes of the whole graph.
                (default: :obj:`None`)
            batch (torch.Tensor, optional): ``[N]`` sorted graph index of
                every node. (default: :obj:`None`, one graph)
            ptr (torch.Tensor, optional): ``[B + 1]`` CSR offsets of the
                graphs, which take precedence over :obj:`batch`. Repeated
                entries denote empty graphs. (default: :obj:`None`)
            num_graphs (int, optional): Number of graphs ``B`` when only
                :obj:`batch` is given. (default: :obj:`None`)
            return_sampling (bool, optional): If :obj:`True`, also return a
                :class:`SamplingInfo`. (default: :obj:`False`)
            generator (torch.Generator, optional): Source of the Gumbel noise,
                for reproducible draws. (default: :obj:`None`)
        """
        # The inputs are checked once here. The kernels below are the
        # unchecked variants, which take the segments and maxima computed
        # here instead of checking and reading them again.
        self._check_input_shape(x)
        batch, ptr = resolve_segments(x.size(0), batch, ptr, num_graphs, device=x.device)
        H, C, R = self.heads, self.out_channels, self.num_registers

        x_norm = self.norm(x)
        query = self.lin_query(x_norm).view(-1, H, C)
        kv = self.lin_kv(x_norm).view(-1, H, 2 * C)
        scores = self.score(x)

        pool_scores, pool_kv, pool_batch, pool_ptr, origin = scores, kv, batch, ptr, None
        if R > 0:
            pool_scores, pool_kv, pool_ptr, origin = _append_registers(
                scores, kv, batch, ptr, self.register_scores.to(scores.dtype),
                self.register_kv.to(kv.dtype))
            pool_batch = ptr_to_batch(pool_ptr, pool_scores.size(0))

        sizes = ptr[1:] - ptr[:-1]
        k_per_graph = self._pool_k(sizes, pool_ptr)
        max_k, n_max, finite = _read_maxima(k_per_graph, sizes, x, pool_scores)
        if not finite:
            check_finite(x, "x")
            check_finite(pool_scores, "scores")

        sample = _samsa_sample(
            pool_scores, pool_kv, self.temperature, pool_batch, pool_ptr, k_per_graph, max_k,
            n_max + R, training=self.training, hard=self.hard, stochastic=self.stochastic_eval,
            generator=generator)
        key, value = sample.rows.split(C, dim=-1)

        dropout_p = self.dropout if self.training else 0.0
        out = _segment_attention(query, key, value, sample.mask, batch, ptr, n_max,
                                 dropout_p=dropout_p)

        if self.concat:
            out = out.reshape(-1, H * C)
        else:
            out = out.mean(dim=1)
        out = self.lin_out(out)

        if not return_sampling:
            return out
        return out, _sampling_info(sample.index, sample.mask, scores, origin)

    def score(self, x: Tensor) -> Tensor:
        r"""Computes the ``[N, H]`` importance score of every node under every
        head from the ``[N, F_in]`` features :obj:`x`."""
        hidden = self.score_norm(self.score_mlp(x))
        return self.lin_score(x + hidden)

    def _pool_k(self, sizes: Tensor, pool_ptr: Tensor) -> Tensor:
        # An int k is clipped per graph to the pool size, registers included.
        # A ratio is a fraction of the real nodes only.
        if self.k is not None:
            return resolve_k(pool_ptr[1:] - pool_ptr[:-1], k=self.k)
        return resolve_k(sizes, ratio=self.ratio)

    def _check_input_shape(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() != 2:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"'x' must have shape [num_nodes, in_channels], got {shape}.")
        if not x.is_floating_point():
            raise ValueError(f"'x' must contain floating-point features, got dtype {x.dtype}. "
                             f"Convert it with x.float(), or embed integer labels first.")
        if x.size(-1) != self.in_channels:
            raise ValueError(
                f"'x' has {x.size(-1)} features per node, but the layer was built with "
                f"in_channels={self.in_channels}. Pass features of that width, or project them "
                f"to that width first (a SAMSAConv on its own also accepts in_channels=-1).")

    def __repr__(self) -> str:
        options = f"heads={self.heads}, "
        options += f"k={self.k}" if self.k is not None else f"ratio={self.ratio}"
        if not self.concat:
            options += ", concat=False"
        if self.num_registers > 0:
            options += f", num_registers={self.num_registers}"
        if self.score_channels is not None:
            options += f", score_channels={self.score_channels}"
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, {options})"


def _check_options(
    in_channels: int,
    out_channels: int,
    heads: int,
    k: Optional[int],
    ratio: Optional[float],
    num_registers: int,
    tau: float,
    dropout: float,
    score_channels: Optional[int],
) -> None:
    if in_channels == 0 or in_channels < -1:
        raise ValueError(f"'in_channels' must be positive or -1 (lazy), got {in_channels}.")
    if out_channels <= 0:
        raise ValueError(f"'out_channels' must be positive, got {out_channels}.")
    if heads <= 0:
        raise ValueError(f"'heads' must be positive, got {heads}.")
    if num_registers < 0:
        raise ValueError(f"'num_registers' must be zero or positive, got {num_registers}.")
    if not tau > 0.0 or not math.isfinite(tau):
        raise ValueError(f"'tau' must be a positive finite float, got {tau!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"'dropout' must lie in [0, 1), got {dropout!r}.")
    if score_channels is not None and (
            isinstance(score_channels, bool) or not isinstance(score_channels, int)
            or score_channels <= 0):
        raise ValueError(
            f"'score_channels' must be a positive int or None (the default width), "
            f"got {score_channels!r}.")

    # resolve_k raises the ValueError for a missing, doubled or invalid k or
    # ratio, so a bad option fails here and not at the first forward pass.
    resolve_k(torch.ones(1, dtype=torch.long), k=k, ratio=ratio)


def _read_maxima(
    k_per_graph: Tensor,
    sizes: Tensor,
    x: Tensor,
    scores: Tensor,
) -> Tuple[int, int, bool]:
    """Read the largest kept count, the largest graph size and whether the
    sums of ``x`` and ``scores`` are finite, in one host read.

    The maxima set the shapes of the sampled keys and of the padded queries.
    A NaN or an infinity makes a sum non-finite, so a finite result proves
    both tensors finite. A non-finite result calls for the exact check."""
    if sizes.numel() == 0:
        return 0, 0, True
    finite = torch.isfinite(x.detach().sum()) & torch.isfinite(scores.detach().sum())
    max_k, n_max, finite = torch.stack([k_per_graph.max(), sizes.max(), finite.long()]).tolist()
    return max_k, n_max, bool(finite)


def _sampling_info(
    index: Tensor,
    mask: Tensor,
    scores: Tensor,
    origin: Optional[Tensor],
) -> SamplingInfo:
    index = index.masked_fill(~mask, -1)
    if origin is None:
        return SamplingInfo(index, mask, scores, torch.full_like(index, -1))

    # Map rows of the pool (nodes and registers) back to node rows.
    # origin[j] is the node row, or -(r + 1) for register r.
    source = origin[index.clamp(min=0)]
    is_node = mask & (source >= 0)
    is_register = mask & (source < 0)
    node_index = torch.where(is_node, source, torch.full_like(source, -1))
    register_index = torch.where(is_register, -source - 1, torch.full_like(source, -1))
    return SamplingInfo(node_index, mask, scores, register_index)
