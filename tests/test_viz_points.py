import importlib.util
import math
import os
import platform
import subprocess
import sys
import textwrap
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import Tensor

from samsa_geo.viz import SAMPLED_COLOR, UNSAMPLED_COLOR

needs_open3d = pytest.mark.skipif(
    importlib.util.find_spec("open3d") is None, reason="Open3D is not installed"
)

# Renders share the hidden Open3D windows of samsa_geo.viz.points, one per
# image size, for the whole test process.

# Points are drawn unlit, so only antialiasing at point borders shifts colors.
COLOR_TOL = 6


class SamplingInfo(NamedTuple):
    index: Tensor
    mask: Tensor
    scores: Tensor


def torus(n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(n, generator=generator) * 2 * math.pi
    v = torch.rand(n, generator=generator) * 2 * math.pi
    radius = 1.0 + 0.3 * v.cos()
    return torch.stack([radius * u.cos(), 0.3 * v.sin(), radius * u.sin()], dim=1)


def pixel_count(image, color):
    target = np.round(np.asarray(color) * 255.0)
    close = np.abs(image.astype(np.float64) - target).max(axis=-1) <= COLOR_TOL
    return int(close.sum())


def palette_count(image, colors):
    """Count the pixels whose color is within COLOR_TOL of one of ``colors``."""
    palette = np.unique(np.round(np.asarray(colors) * 255.0), axis=0)
    pixels = image.reshape(-1, 3).astype(np.float64)
    pixels = pixels[(pixels < 250).any(axis=1)]
    distance = np.abs(pixels[:, None, :] - palette[None, :, :]).max(axis=-1)
    return int((distance.min(axis=1) <= COLOR_TOL).sum())


def read_png(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def half_sampled(n):
    colors = np.tile(UNSAMPLED_COLOR, (n, 1))
    colors[: n // 2] = SAMPLED_COLOR
    return colors


@needs_open3d
def test_render_png_sampled_colors(tmp_path):
    from samsa_geo.viz import render_png

    path = tmp_path / "cloud.png"
    render_png(path, torus(1000), half_sampled(1000), width=320, height=240)

    image = read_png(path)
    assert image.shape == (240, 320, 3)
    assert pixel_count(image, SAMPLED_COLOR) > 300
    assert pixel_count(image, UNSAMPLED_COLOR) > 300
    assert pixel_count(image, (1.0, 1.0, 1.0)) > 0.5 * image.shape[0] * image.shape[1]


@needs_open3d
def test_render_png_returns_written_image(tmp_path):
    from samsa_geo.viz import render_png

    path = tmp_path / "cloud.png"
    image = render_png(path, torus(200).numpy(), half_sampled(200), width=160, height=120)

    assert image.dtype == np.uint8
    assert np.array_equal(image, read_png(path))


@needs_open3d
def test_render_png_frames_whole_cloud(tmp_path):
    from samsa_geo.viz import render_png

    image = render_png(
        tmp_path / "cloud.png", torus(2000), half_sampled(2000), width=320, height=240
    )

    drawn = np.argwhere((image < 250).any(axis=-1))
    assert drawn.min(axis=0).tolist() > [0, 0]
    assert drawn.max(axis=0).tolist() < [239, 319]
    assert drawn[:, 1].max() - drawn[:, 1].min() > 320 // 3


@needs_open3d
def test_render_png_single_point(tmp_path):
    from samsa_geo.viz import render_png

    image = render_png(
        tmp_path / "one.png",
        torch.zeros(1, 3),
        [SAMPLED_COLOR],
        width=64,
        height=48,
        point_size=6.0,
    )

    assert pixel_count(image, SAMPLED_COLOR) > 0


@needs_open3d
def test_render_png_empty_cloud(tmp_path):
    from samsa_geo.viz import render_png

    image = render_png(
        tmp_path / "empty.png", torch.zeros(0, 3), np.zeros((0, 3)), width=64, height=48
    )

    assert image.shape == (48, 64, 3)
    assert bool((image == 255).all())


@needs_open3d
def test_render_png_warns_blank(tmp_path):
    from samsa_geo.viz import render_png

    with pytest.warns(UserWarning, match="only the background"):
        render_png(tmp_path / "white.png", torus(50), np.ones((50, 3)), width=64, height=48)


@needs_open3d
def test_render_png_uint8_colors(tmp_path):
    from samsa_geo.viz import render_png

    colors = np.tile(np.array([214, 39, 40], dtype=np.uint8), (300, 1))
    image = render_png(tmp_path / "uint8.png", torus(300), colors, width=160, height=120)

    assert pixel_count(image, SAMPLED_COLOR) > 50


@needs_open3d
@pytest.mark.parametrize(
    "pos, colors, kwargs, message",
    [
        (torch.tensor([[0.0, float("nan"), 0.0]]), [SAMPLED_COLOR], {}, "'pos' contains 1 NaN"),
        (
            torch.zeros(4, 2),
            np.zeros((4, 3)),
            {},
            "'pos' must be a float array of shape \\[n, 3\\]",
        ),
        (torch.zeros(4, 3), np.zeros((3, 3)), {}, "'colors' must have shape"),
        (torch.zeros(2, 3), np.full((2, 3), 2.0), {}, "RGB floats in \\[0, 1\\]"),
        (torch.zeros(2, 3), np.zeros((2, 3)), {"width": 0}, "'width' must be a positive int"),
        (torch.zeros(2, 3), np.zeros((2, 3)), {"point_size": 0.0}, "'point_size' must be positive"),
    ],
)
def test_render_png_rejects_bad_input(tmp_path, pos, colors, kwargs, message):
    from samsa_geo.viz import render_png

    with pytest.raises(ValueError, match=message):
        render_png(tmp_path / "bad.png", pos, colors, **kwargs)


@needs_open3d
def test_render_png_rejects_parallel_view(tmp_path):
    from samsa_geo.viz import View, render_png

    with pytest.raises(ValueError, match="non-parallel"):
        render_png(tmp_path / "bad.png", torus(10), half_sampled(10), view=View(front=(0, 1, 0)))


@needs_open3d
def test_render_png_rejects_suffix(tmp_path):
    from samsa_geo.viz import render_png

    with pytest.raises(ValueError, match="must end in .png"):
        render_png(tmp_path / "cloud.jpg", torus(10), half_sampled(10))


@needs_open3d
def test_save_ply_round_trip(tmp_path):
    import open3d as o3d

    from samsa_geo.viz import save_ply

    generator = torch.Generator().manual_seed(0)
    pos = torus(500)
    colors = torch.rand(500, 3, generator=generator)
    normals = torch.nn.functional.normalize(torch.randn(500, 3, generator=generator), dim=1)
    path = tmp_path / "cloud.ply"

    save_ply(path, pos, colors, normals)

    cloud = o3d.io.read_point_cloud(str(path))
    assert len(cloud.points) == 500
    assert np.allclose(np.asarray(cloud.points), pos.double().numpy())
    assert np.allclose(
        np.asarray(cloud.colors), np.round(colors.double().numpy() * 255) / 255, atol=1e-6
    )
    assert np.allclose(np.asarray(cloud.normals), normals.double().numpy(), atol=1e-6)


@needs_open3d
def test_save_ply_sampling_colors(tmp_path):
    import open3d as o3d

    from samsa_geo.viz import color_sampling, save_ply

    colors = color_sampling(torch.tensor([[0, 2]]), 4)
    path = tmp_path / "sampled.ply"

    save_ply(path, torus(4), colors)

    read = np.asarray(o3d.io.read_point_cloud(str(path)).colors)
    assert np.allclose(read[[0, 2]], SAMPLED_COLOR)
    assert np.allclose(read[[1, 3]], UNSAMPLED_COLOR)


@needs_open3d
def test_save_ply_rejects_missing_folder(tmp_path):
    from samsa_geo.viz import save_ply

    with pytest.raises(OSError, match="failed to write"):
        save_ply(tmp_path / "missing" / "cloud.ply", torus(4), half_sampled(4))


@needs_open3d
def test_render_grid_size_and_tiles(tmp_path):
    from samsa_geo.viz import render_grid

    clouds = [(torus(300, seed=i), half_sampled(300), f"head {i}") for i in range(4)]
    clouds.append((torch.zeros(0, 3), np.zeros((0, 3)), "empty"))
    path = tmp_path / "grid.png"

    render_grid(path, clouds, ncols=3, width=120, height=90)

    image = read_png(path)
    assert image.shape == (2 * (90 + 24), 3 * 120, 3)
    for i in range(6):
        top, left = (i // 3) * (90 + 24) + 24, (i % 3) * 120
        tile = image[top : top + 90, left : left + 120]
        if i < 4:
            assert pixel_count(tile, SAMPLED_COLOR) > 0, f"tile {i} has no sampled point"
        else:
            assert bool((tile == 255).all()), f"tile {i} is not blank"
    assert bool((image[:24, :120] < 128).any()), "title of tile 0 is missing"


@needs_open3d
def test_render_grid_without_titles(tmp_path):
    from samsa_geo.viz import render_grid

    image = render_grid(
        tmp_path / "grid.png", [(torus(100), half_sampled(100))] * 2, ncols=4, width=80, height=60
    )

    assert image.shape == (60, 160, 3)


@needs_open3d
@pytest.mark.parametrize(
    "clouds, message", [([], "'clouds' is empty"), ([(torus(3),)], "'clouds\\[0\\]' must be")]
)
def test_render_grid_rejects_bad_clouds(tmp_path, clouds, message):
    from samsa_geo.viz import render_grid

    with pytest.raises(ValueError, match=message):
        render_grid(tmp_path / "grid.png", clouds)


@needs_open3d
def test_render_sampling_batch_info(tmp_path):
    from samsa_geo.viz import render_sampling

    pos = torch.cat([torus(200, seed=0), torus(300, seed=1) + 5.0])
    ptr = torch.tensor([0, 200, 500])
    index = torch.stack([torch.arange(2 * 40).view(2, 40), 200 + torch.arange(2 * 40).view(2, 40)])
    info = SamplingInfo(index, index >= 0, torch.randn(500, 2))

    image = render_sampling(tmp_path / "b1.png", pos, info, ptr=ptr, graph=1, width=160, height=120)

    assert pixel_count(image, SAMPLED_COLOR) > 20
    assert pixel_count(image, UNSAMPLED_COLOR) > 20


@needs_open3d
def test_render_sampling_real_layer(tmp_path):
    from samsa_geo.viz import render_sampling

    nn = pytest.importorskip("samsa_geo.nn")
    torch.manual_seed(0)
    pos = torch.cat([torus(300, seed=0), torus(400, seed=1)])
    batch = torch.cat([torch.zeros(300, dtype=torch.long), torch.ones(400, dtype=torch.long)])
    conv = nn.SAMSAConv(3, 8, heads=4, k=60).eval()

    _, info = conv(pos, batch=batch, return_sampling=True)
    image = render_sampling(
        tmp_path / "layer.png",
        pos,
        info,
        ptr=torch.tensor([0, 300, 700]),
        graph=1,
        width=160,
        height=120,
    )

    assert pixel_count(image, SAMPLED_COLOR) > 50
    assert pixel_count(image, UNSAMPLED_COLOR) > 50


@needs_open3d
@pytest.mark.parametrize("mode", ["sampled", "score", "count"])
def test_render_sampling_modes(tmp_path, mode):
    from samsa_geo.viz import color_sampling, render_sampling

    generator = torch.Generator().manual_seed(0)
    pos = torus(400)
    scores = torch.randn(400, 4, generator=generator)
    index = scores.topk(50, dim=0).indices.T

    image = render_sampling(
        tmp_path / f"{mode}.png",
        pos,
        [index, index],
        mode=mode,
        scores=[scores, scores],
        width=160,
        height=120,
    )

    colors = color_sampling([index, index], 400, mode=mode, scores=[scores, scores])
    assert palette_count(image, colors) > 300


@needs_open3d
def test_render_sampling_rejects_batch_without_ptr(tmp_path):
    from samsa_geo.viz import render_sampling

    index = torch.zeros(2, 1, 3, dtype=torch.long)
    info = SamplingInfo(index, index >= 0, torch.randn(8, 1))

    with pytest.raises(ValueError, match="Pass the batch's 'ptr'"):
        render_sampling(tmp_path / "b.png", torus(4), info)


@needs_open3d
def test_show_without_display(monkeypatch):
    from samsa_geo.viz import show

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)

    with pytest.raises(RuntimeError, match="Use render_png"):
        show(torus(10), half_sampled(10))


BLOCK_OPEN3D = """
import importlib.abc
import sys

class BlockOpen3D(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "open3d" or name.startswith("open3d."):
            raise ImportError("No module named 'open3d'")
        return None

sys.meta_path.insert(0, BlockOpen3D())
"""


if sys.platform.startswith("linux") and platform.machine() == "x86_64":
    INSTALL_COMMAND = "'pip install open3d-cpu'"
else:
    INSTALL_COMMAND = "'pip install open3d'"


def run_python(code):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(BLOCK_OPEN3D) + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


# One interpreter start takes seconds, so a single subprocess checks all
# imports with Open3D blocked and prints one line per check.
IMPORT_CHECKS = """
import samsa_geo
import samsa_geo.datasets
import samsa_geo.nn
import samsa_geo.ops
import samsa_geo.viz
import samsa_geo.viz.colors
print("open3d loaded:", "open3d" in sys.modules)

try:
    from samsa_geo.viz import render_png
except ImportError as error:
    print("attribute error:", error)

try:
    import samsa_geo.viz.points
except ImportError as error:
    print("module error:", error)


class BrokenOpen3D(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "open3d":
            raise OSError("libusb-1.0.so.0: cannot open shared object file")
        return None


sys.meta_path.insert(0, BrokenOpen3D())
try:
    import samsa_geo.viz.points
except ImportError as error:
    print("libusb error:", error)
"""


@pytest.fixture(scope="module")
def blocked_import():
    result = run_python(IMPORT_CHECKS)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_package_imports_without_open3d(blocked_import):
    assert "open3d loaded: False" in blocked_import


def test_viz_attribute_without_open3d(blocked_import):
    lines = [line for line in blocked_import if line.startswith("attribute error:")]

    assert len(lines) == 1
    assert INSTALL_COMMAND in lines[0]


def test_viz_points_module_without_open3d(blocked_import):
    lines = [line for line in blocked_import if line.startswith("module error:")]

    assert len(lines) == 1
    assert INSTALL_COMMAND in lines[0]


def test_viz_import_hint_for_libusb(blocked_import):
    lines = [line for line in blocked_import if line.startswith("libusb error:")]

    assert len(lines) == 1
    assert "apt-get install libusb-1.0-0" in lines[0]
