"""Point clouds colored by what SAMSA sampled, as PLY files and PNG renders.

Rendering needs no display. :func:`render_png` draws into a hidden window of
Open3D's legacy :class:`open3d.visualization.Visualizer`, which falls back to
EGL software rendering through Mesa when no display exists. Each image size
gets one hidden window that stays open for the life of the process and is
reused for every later image of that size. Windows are never destroyed,
because with a GLFW display a window created after ``destroy_window`` is
known to render blank (with EGL and Open3D 0.20 this did not reproduce).
Points are drawn unlit, so every pixel of a point has the point's exact
color.

Open3D's ``rendering.OffscreenRenderer`` is not used: without a Vulkan driver
it aborts the whole process, and Python cannot catch that.
"""

import contextlib
import numbers
import os
import platform
import tempfile
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torch_geometric.warnings import warn

from samsa_geo.ops.segment import check_finite
from samsa_geo.viz.colors import Color, color_sampling
from samsa_geo.viz.sampling import as_tensor, local_sampling


def _install_hint(error: BaseException) -> str:
    if platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64"):
        command = "pip install open3d-cpu"
    else:
        command = "pip install open3d"
    message = (
        f"samsa_geo.viz needs Open3D to save and render point clouds, but importing it failed "
        f"({error}). Install it with '{command}'."
    )
    if "libusb" in str(error):
        message += " Open3D also needs the system library libusb: 'apt-get install libusb-1.0-0'."
    return message


try:
    import open3d as o3d
except (ImportError, OSError) as _error:
    raise ImportError(_install_hint(_error)) from _error


class View(NamedTuple):
    """Camera of a render. The camera sits in direction ``front`` from the
    center of the cloud's bounding box, with ``up`` pointing up in the image.
    ``zoom`` scales Open3D's default framing: smaller values show the cloud
    larger. At the default 0.8, a cube seen from the default direction fills
    about 86% of the height of a 320 x 240 render."""

    front: Tuple[float, float, float] = (1.0, 0.8, 1.4)
    up: Tuple[float, float, float] = (0.0, 1.0, 0.0)
    zoom: float = 0.8


#: Oblique view from above and front right, for clouds whose up axis is +y.
DEFAULT_VIEW = View()

WHITE: Color = (1.0, 1.0, 1.0)

# Title band of render_grid, in pixels.
_TITLE_HEIGHT = 24

# Field-of-view change that reaches Open3D's minimum of 5 degrees from its
# default of 60 (Open3D 0.20 clamps the result). The narrow field of view
# gives a nearly orthographic projection, which keeps the cloud centered.
_FOV_STEP = -90.0

# Relative bounding-box extent below which a cloud counts as a single point.
_MIN_EXTENT = 1e-6

# A render whose pixels all lie this close to the background counts as blank.
_BLANK_TOL = 2.0 / 255.0


def _check_points(
    pos: Any, colors: Any, normals: Any = None
) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    pos = as_tensor(pos, "pos")
    if pos.dim() != 2 or pos.size(1) != 3 or not pos.is_floating_point():
        raise ValueError(
            f"'pos' must be a float array of shape [n, 3], got {tuple(pos.shape)} and {pos.dtype}."
        )
    check_finite(pos, "pos")

    colors = as_tensor(colors, "colors")
    if colors.shape != pos.shape:
        raise ValueError(
            f"'colors' must have shape [n, 3] = {tuple(pos.shape)}, got {tuple(colors.shape)}."
        )
    if colors.dtype == torch.uint8:
        colors = colors.double() / 255.0
    check_finite(colors.double(), "colors")
    if colors.numel() > 0 and (float(colors.min()) < 0.0 or float(colors.max()) > 1.0):
        raise ValueError(
            f"'colors' must be RGB floats in [0, 1] or uint8, got values in "
            f"[{float(colors.min())}, {float(colors.max())}]."
        )

    if normals is not None:
        normals = as_tensor(normals, "normals")
        if normals.shape != pos.shape:
            raise ValueError(
                f"'normals' must have shape [n, 3] = {tuple(pos.shape)}, "
                f"got {tuple(normals.shape)}."
            )
        check_finite(normals.double(), "normals")
        normals = normals.double().numpy()
    return pos.double().numpy(), colors.double().numpy(), normals


def _point_cloud(
    pos: np.ndarray, colors: np.ndarray, normals: Optional[np.ndarray] = None
) -> "o3d.geometry.PointCloud":
    cloud = o3d.geometry.PointCloud()
    cloud.points = o3d.utility.Vector3dVector(pos)
    cloud.colors = o3d.utility.Vector3dVector(colors)
    if normals is not None:
        cloud.normals = o3d.utility.Vector3dVector(normals)
    return cloud


def _check_suffix(path: Union[str, os.PathLike], suffix: str) -> str:
    path = os.fspath(path)
    if not path.lower().endswith(suffix):
        raise ValueError(f"'path' must end in {suffix}, got {path!r}.")
    return path


def save_ply(path: Union[str, os.PathLike], pos: Any, colors: Any, normals: Any = None) -> None:
    """Write a colored point cloud to a binary ``.ply`` file with Open3D.

    The file stores positions as float64 and colors as 8-bit integers, so
    colors read back equal the input rounded to multiples of 1/255.

    Args:
        path (str or os.PathLike): Output path ending in ``.ply``.
        pos (torch.Tensor or numpy.ndarray): ``[n, 3]`` point positions.
        colors (torch.Tensor or numpy.ndarray): ``[n, 3]`` RGB colors, floats
            in ``[0, 1]`` or uint8.
        normals (torch.Tensor or numpy.ndarray, optional): ``[n, 3]`` point
            normals. (default: :obj:`None`)

    Raises:
        OSError: If Open3D fails to write the file.
    """
    path = _check_suffix(path, ".ply")
    pos, colors, normals = _check_points(pos, colors, normals)

    cloud = _point_cloud(pos, colors, normals)
    if not o3d.io.write_point_cloud(path, cloud, write_ascii=False):
        raise OSError(
            f"Open3D failed to write the point cloud to {path!r}. "
            f"Check that the folder exists and is writable."
        )


class _Renderer:
    """Hidden legacy Open3D window of one size, reused for every image of
    that size."""

    def __init__(self, width: int, height: int) -> None:
        # Without XDG_RUNTIME_DIR, the windowing library prints an error line
        # for every window, although rendering works.
        if "XDG_RUNTIME_DIR" not in os.environ:
            user = getattr(os, "getuid", lambda: 0)()
            runtime_dir = os.path.join(tempfile.gettempdir(), f"samsa_geo-runtime-{user}")
            os.makedirs(runtime_dir, mode=0o700, exist_ok=True)
            os.environ["XDG_RUNTIME_DIR"] = runtime_dir
        self.visualizer = o3d.visualization.Visualizer()
        with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
            created = self.visualizer.create_window(
                window_name="samsa_geo", width=width, height=height, visible=False
            )
        if not created:
            raise RuntimeError(
                "Open3D failed to create a hidden window for rendering. Without a display it "
                "needs EGL through Mesa "
                "(Debian: 'apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri')."
            )

    def render(
        self,
        cloud: "o3d.geometry.PointCloud",
        point_size: float,
        view: View,
        background: np.ndarray,
    ) -> np.ndarray:
        visualizer = self.visualizer
        visualizer.clear_geometries()
        visualizer.add_geometry(cloud, reset_bounding_box=True)

        box = cloud.get_axis_aligned_bounding_box()
        scale = max(1.0, float(np.abs(box.get_center()).max()))
        single_point = float(box.get_extent().max()) <= _MIN_EXTENT * scale
        if single_point:
            # A cloud of one point, or of coincident points, has an empty
            # bounding box and renders blank. Two corners of a unit cube, in a
            # line set without lines, give the camera a box to fit.
            corners = box.get_center() + np.array([[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]])
            frame = o3d.geometry.LineSet(
                o3d.utility.Vector3dVector(corners), o3d.utility.Vector2iVector()
            )
            visualizer.add_geometry(frame, reset_bounding_box=True)

        option = visualizer.get_render_option()
        option.light_on = False
        option.point_size = float(point_size)
        option.background_color = background

        # Without reset_view_point, the camera keeps state from the previous
        # cloud, and a much larger cloud can render blank.
        visualizer.reset_view_point(True)
        control = visualizer.get_view_control()
        control.change_field_of_view(step=_FOV_STEP)
        control.set_lookat(box.get_center())
        control.set_front(np.asarray(view.front, dtype=np.float64))
        control.set_up(np.asarray(view.up, dtype=np.float64))
        control.set_zoom(float(view.zoom))

        # Open3D warns on every draw of the empty line set, so the warnings
        # are muted while it is in the scene.
        quiet = o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error)
        with quiet if single_point else contextlib.nullcontext():
            visualizer.poll_events()
            visualizer.update_renderer()
            image = np.asarray(visualizer.capture_screen_float_buffer(do_render=True))
            visualizer.clear_geometries()
        return image


_RENDERERS: Dict[Tuple[int, int], _Renderer] = {}


def _renderer(width: int, height: int) -> _Renderer:
    key = (width, height)
    if key not in _RENDERERS:
        _RENDERERS[key] = _Renderer(width, height)
    return _RENDERERS[key]


def _check_view(view: Any) -> View:
    if not isinstance(view, View):
        raise ValueError(f"'view' must be a samsa_geo.viz.View, got {type(view).__name__}.")
    front = np.asarray(view.front, dtype=np.float64)
    up = np.asarray(view.up, dtype=np.float64)
    if front.shape != (3,) or up.shape != (3,) or np.linalg.norm(np.cross(front, up)) < 1e-6:
        raise ValueError(
            f"'view.front' and 'view.up' must be two non-parallel 3-vectors, got {view.front!r} "
            f"and {view.up!r}."
        )
    if not float(view.zoom) > 0.0:
        raise ValueError(f"'view.zoom' must be positive, got {view.zoom!r}.")
    return view


def render_image(
    pos: Any,
    colors: Any,
    width: int = 640,
    height: int = 480,
    point_size: float = 4.0,
    view: View = DEFAULT_VIEW,
    background: Color = WHITE,
) -> np.ndarray:
    """Render a colored point cloud headless and return the image.

    The camera looks at the center of the cloud's bounding box from the
    direction ``view.front``. Points are drawn unlit as squares of
    ``point_size`` pixels in their exact colors. An empty cloud gives an
    image of the background color.

    Args:
        pos (torch.Tensor or numpy.ndarray): ``[n, 3]`` point positions.
        colors (torch.Tensor or numpy.ndarray): ``[n, 3]`` RGB colors, floats
            in ``[0, 1]`` or uint8.
        width (int, optional): Image width in pixels. (default: :obj:`640`)
        height (int, optional): Image height in pixels. (default: :obj:`480`)
        point_size (float, optional): Point size in pixels.
            (default: :obj:`4.0`)
        view (View, optional): Camera direction and zoom.
            (default: :data:`DEFAULT_VIEW`)
        background (tuple of float, optional): Background RGB in ``[0, 1]``.
            (default: white)

    Returns:
        ``[height, width, 3]`` uint8 array.
    """
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"'{name}' must be a positive int (pixels), got {value!r}.")
    if not float(point_size) > 0.0:
        raise ValueError(f"'point_size' must be positive (pixels), got {point_size!r}.")
    view = _check_view(view)
    pos, colors, _ = _check_points(pos, colors)
    background = np.asarray(background, dtype=np.float64)
    if background.shape != (3,) or not np.all((background >= 0.0) & (background <= 1.0)):
        raise ValueError(f"'background' must be three floats in [0, 1] (RGB), got {background!r}.")

    if pos.shape[0] == 0:
        image = np.broadcast_to(background, (height, width, 3))
        return np.round(image * 255.0).astype(np.uint8)

    cloud = _point_cloud(pos, colors)
    image = _renderer(width, height).render(cloud, point_size, view, background)
    if np.all(np.abs(image - background) <= _BLANK_TOL):
        warn(
            f"The render of {pos.shape[0]} points shows only the background. The points may "
            f"have the background color, or the renderer may have failed."
        )
    return np.round(image * 255.0).astype(np.uint8)


def _save_png(path: str, image: np.ndarray) -> None:
    Image.fromarray(image).save(path, format="PNG")


def render_png(
    path: Union[str, os.PathLike],
    pos: Any,
    colors: Any,
    width: int = 640,
    height: int = 480,
    point_size: float = 4.0,
    view: View = DEFAULT_VIEW,
    background: Color = WHITE,
) -> np.ndarray:
    """Render a colored point cloud headless into a PNG file.

    Takes the arguments of :func:`render_image` after ``path``, the output
    path ending in ``.png``.

    Returns:
        ``[height, width, 3]`` uint8 array of the written image.
    """
    path = _check_suffix(path, ".png")
    image = render_image(pos, colors, width, height, point_size, view, background)
    _save_png(path, image)
    return image


def _title_font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        # Pillow before 10.1 has only a fixed-size bitmap font.
        return ImageFont.load_default()


def render_grid(
    path: Union[str, os.PathLike],
    clouds: Sequence[Tuple[Any, ...]],
    ncols: int = 3,
    width: int = 320,
    height: int = 240,
    point_size: float = 3.0,
    view: View = DEFAULT_VIEW,
    background: Color = WHITE,
) -> np.ndarray:
    """Render several colored point clouds side by side into one PNG file.

    Tiles fill rows from left to right, ``ncols`` per row. If any cloud has a
    title, every tile gets a title band of 24 pixels above its render.

    Args:
        path (str or os.PathLike): Output path ending in ``.png``.
        clouds (list of tuple): One ``(pos, colors)`` or
            ``(pos, colors, title)`` tuple per tile, with ``pos`` and
            ``colors`` as in :func:`render_image` and ``title`` a str.
        ncols (int, optional): Tiles per row. (default: :obj:`3`)
        width (int, optional): Tile width in pixels. (default: :obj:`320`)
        height (int, optional): Render height of a tile in pixels.
            (default: :obj:`240`)
        point_size (float, optional): Point size in pixels.
            (default: :obj:`3.0`)
        view (View, optional): Camera of every tile.
            (default: :data:`DEFAULT_VIEW`)
        background (tuple of float, optional): Background RGB in ``[0, 1]``.
            (default: white)

    Returns:
        ``[rows * (height + title band), min(ncols, len(clouds)) * width, 3]``
        uint8 array of the written image.
    """
    path = _check_suffix(path, ".png")
    if len(clouds) == 0:
        raise ValueError("'clouds' is empty. Pass at least one (pos, colors) tuple.")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"'ncols' must be a positive int, got {ncols!r}.")
    for i, cloud in enumerate(clouds):
        if not isinstance(cloud, (tuple, list)) or len(cloud) not in (2, 3):
            raise ValueError(
                f"'clouds[{i}]' must be a (pos, colors) or (pos, colors, title) tuple, "
                f"got {type(cloud).__name__}."
            )

    titles = [str(cloud[2]) if len(cloud) == 3 else "" for cloud in clouds]
    band = _TITLE_HEIGHT if any(titles) else 0
    ncols = min(ncols, len(clouds))
    nrows = (len(clouds) + ncols - 1) // ncols
    fill = tuple(int(round(255 * c)) for c in background)
    grid = Image.new("RGB", (ncols * width, nrows * (height + band)), fill)
    draw = ImageDraw.Draw(grid)
    font = _title_font(14)

    for i, cloud in enumerate(clouds):
        left = (i % ncols) * width
        top = (i // ncols) * (height + band)
        image = render_image(cloud[0], cloud[1], width, height, point_size, view, background)
        grid.paste(Image.fromarray(image), (left, top + band))
        if titles[i]:
            draw.text(
                (left + width // 2, top + band // 2),
                titles[i],
                fill=(0, 0, 0),
                font=font,
                anchor="mm",
            )

    grid.save(path, format="PNG")
    return np.asarray(grid)


def show(pos: Any, colors: Any, window_name: str = "samsa_geo", point_size: float = 4.0) -> None:
    """Open an interactive Open3D window with a colored point cloud.

    Blocks until the window is closed.

    Args:
        pos (torch.Tensor or numpy.ndarray): ``[n, 3]`` point positions.
        colors (torch.Tensor or numpy.ndarray): ``[n, 3]`` RGB colors, floats
            in ``[0, 1]`` or uint8.
        window_name (str, optional): Window title. (default: :obj:`"samsa_geo"`)
        point_size (float, optional): Point size in pixels.
            (default: :obj:`4.0`)

    Raises:
        RuntimeError: If neither ``DISPLAY`` nor ``WAYLAND_DISPLAY`` is set.
    """
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise RuntimeError(
            "show() needs a display, but neither DISPLAY nor WAYLAND_DISPLAY is set. "
            "Use render_png() to render the point cloud into a PNG file instead."
        )
    pos, colors, _ = _check_points(pos, colors)

    # NOTE: this path has run only without a display, where it raises above.
    visualizer = o3d.visualization.Visualizer()
    if not visualizer.create_window(window_name=window_name):
        raise RuntimeError(
            "Open3D failed to open a window on the display. Use render_png() to render the "
            "point cloud into a PNG file instead."
        )
    visualizer.add_geometry(_point_cloud(pos, colors))
    visualizer.get_render_option().point_size = float(point_size)
    visualizer.run()
    visualizer.destroy_window()


def render_sampling(
    path: Union[str, os.PathLike],
    pos: Any,
    sampling: Any,
    mode: str = "sampled",
    layer: Optional[int] = None,
    head: Optional[int] = None,
    ptr: Optional[Tensor] = None,
    graph: int = 0,
    scores: Any = None,
    width: int = 640,
    height: int = 480,
    point_size: float = 4.0,
    view: View = DEFAULT_VIEW,
) -> np.ndarray:
    """Render one point cloud colored by what SAMSA sampled into a PNG file.

    See :func:`samsa_geo.viz.color_sampling` for the modes and for how
    ``layer=None`` and ``head=None`` merge layers and heads.

    Args:
        path (str or os.PathLike): Output path ending in ``.png``.
        pos (torch.Tensor or numpy.ndarray): ``[n, 3]`` positions of the
            cloud, or ``[N, 3]`` positions of the whole batch if ``ptr`` is
            given.
        sampling (SamplingInfo or list or torch.Tensor): A batch-level
            ``SamplingInfo``, a list of them (one per layer), or local indices
            of this cloud (``[K]``, ``[H, K]``, ``[L, H, K]`` or a list of
            ``[H, K]``), ``-1`` for padding.
        mode (str, optional): ``"sampled"``, ``"score"`` or ``"count"``.
            (default: :obj:`"sampled"`)
        layer (int, optional): Layer to show. (default: :obj:`None`)
        head (int, optional): Head to show. (default: :obj:`None`)
        ptr (torch.Tensor, optional): ``[B + 1]`` CSR offsets of the batch
            that ``sampling`` comes from. (default: :obj:`None`)
        graph (int, optional): Cloud ``b`` of the batch. (default: :obj:`0`)
        scores (torch.Tensor or list, optional): ``[n, H]`` scores, or one
            per layer, for the ``"score"`` mode. Overrides the scores of a
            ``SamplingInfo``. (default: :obj:`None`)
        width (int, optional): Image width in pixels. (default: :obj:`640`)
        height (int, optional): Image height in pixels. (default: :obj:`480`)
        point_size (float, optional): Point size in pixels.
            (default: :obj:`4.0`)
        view (View, optional): Camera. (default: :data:`DEFAULT_VIEW`)

    Returns:
        ``[height, width, 3]`` uint8 array of the written image.
    """
    pos = as_tensor(pos, "pos")
    if ptr is not None:
        ptr = as_tensor(ptr, "ptr")
        if pos.size(0) != int(ptr[-1]):
            raise ValueError(
                f"'pos' has {pos.size(0)} rows, but 'ptr' ends at {int(ptr[-1])}. With 'ptr', pass "
                f"the positions of the whole batch."
            )
        # An invalid graph id keeps the whole batch here, so that
        # local_sampling reports it.
        if isinstance(graph, numbers.Integral) and 0 <= graph < ptr.numel() - 1:
            pos = pos[int(ptr[graph]) : int(ptr[graph + 1])]

    index, info_scores = local_sampling(sampling, pos.size(0), ptr, graph)
    colors = color_sampling(
        index, pos.size(0), mode, scores if scores is not None else info_scores, layer, head
    )
    return render_png(path, pos, colors, width, height, point_size, view)
