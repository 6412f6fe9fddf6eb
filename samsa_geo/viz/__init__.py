"""Pictures of what SAMSA sampled: colored point clouds and molecules.

The point-cloud functions need Open3D (``pip install open3d-cpu`` on Linux
x86_64, ``pip install open3d`` elsewhere) and load it on first use, so the
colors and the molecule drawings (RDKit) work without it. Accessing a
point-cloud function without Open3D raises an :class:`ImportError` that names
the install command.
"""

import importlib
from typing import Any

from samsa_geo.viz.colors import (
    COUNT_CMAP,
    SAMPLED_COLOR,
    SCORE_CMAP,
    UNSAMPLED_COLOR,
    color_counts,
    color_sampled,
    color_sampling,
    color_scores,
)
from samsa_geo.viz.sampling import (
    count_heads,
    local_sampling,
    sampled_mask,
    sampling_for_graph,
    select_index,
    select_scores,
    stack_layers,
)

_POINT_NAMES = (
    "DEFAULT_VIEW",
    "View",
    "render_grid",
    "render_image",
    "render_png",
    "render_sampling",
    "save_ply",
    "show",
)
_MOLECULE_NAMES = ("draw_molecule", "draw_sampling")


def __getattr__(name: str) -> Any:
    # Point and molecule functions load Open3D and RDKit on first access.
    if name in _POINT_NAMES:
        return getattr(importlib.import_module("samsa_geo.viz.points"), name)
    if name in _MOLECULE_NAMES:
        return getattr(importlib.import_module("samsa_geo.viz.molecules"), name)
    raise AttributeError(f"module 'samsa_geo.viz' has no attribute {name!r}")


def __dir__() -> list:
    return sorted([*globals(), *_POINT_NAMES, *_MOLECULE_NAMES])


__all__ = [
    "COUNT_CMAP",
    "SAMPLED_COLOR",
    "SCORE_CMAP",
    "UNSAMPLED_COLOR",
    "color_counts",
    "color_sampled",
    "color_sampling",
    "color_scores",
    "count_heads",
    "local_sampling",
    "sampled_mask",
    "sampling_for_graph",
    "select_index",
    "select_scores",
    "stack_layers",
    *_POINT_NAMES,
    *_MOLECULE_NAMES,
]
