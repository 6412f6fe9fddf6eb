"""Segment-aware kernels for sampling self-attention and point clouds."""

from samsa_geo.ops.segment import (
    batch_to_ptr,
    check_finite,
    ptr_to_batch,
    resolve_k,
    resolve_segments,
)

__all__ = [
    "batch_to_ptr",
    "check_finite",
    "ptr_to_batch",
    "resolve_k",
    "resolve_segments",
]
