"""Segment-aware kernels for sampling self-attention and point clouds."""

from samsa_geo.ops.attention import segment_attention, segment_attention_reference
from samsa_geo.ops.fps import fps
from samsa_geo.ops.gumbel import gumbel_noise, segment_gumbel_topk
from samsa_geo.ops.knn import knn, knn_graph
from samsa_geo.ops.relaxation import samsa_relaxation, samsa_relaxation_reference
from samsa_geo.ops.sampling import SampleResult, append_registers, samsa_sample
from samsa_geo.ops.segment import (
    batch_to_ptr,
    check_finite,
    ptr_to_batch,
    resolve_k,
    resolve_segments,
)
from samsa_geo.ops.topk import segment_topk, segment_topk_reference

__all__ = [
    "batch_to_ptr",
    "check_finite",
    "fps",
    "knn",
    "knn_graph",
    "ptr_to_batch",
    "resolve_k",
    "resolve_segments",
    "SampleResult",
    "append_registers",
    "gumbel_noise",
    "samsa_relaxation",
    "samsa_relaxation_reference",
    "samsa_sample",
    "segment_attention",
    "segment_attention_reference",
    "segment_gumbel_topk",
    "segment_topk",
    "segment_topk_reference",
]
