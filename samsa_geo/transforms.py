"""Point-cloud transforms for ModelNet-style classification.

PyG's transforms are used where they do the right thing, and this module
fills three gaps of PyG 2.8. ``NormalizeScale`` divides by the largest
absolute coordinate, so a cloud fits the cube ``[-1, 1]^3`` rather than the
unit sphere. ``RandomRotate`` (through ``LinearTransformation``) rotates
``pos`` but leaves ``normal`` unchanged. No farthest point sampling transform
runs without ``torch-cluster`` or ``pyg-lib``.
"""

import math
import random
from typing import Optional, Tuple

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import (
    BaseTransform,
    Center,
    Compose,
    RandomJitter,
    RandomScale,
    SamplePoints,
)

from samsa_geo.ops import fps


class NormalizeToUnitSphere(BaseTransform):
    r"""Center a point cloud at its mean and scale it so that its farthest
    point lies on the unit sphere.

    .. math::
        \mathbf{p}_i \leftarrow \frac{\mathbf{p}_i - \bar{\mathbf{p}}}
        {\max_j \| \mathbf{p}_j - \bar{\mathbf{p}} \|_2}

    Normals are unchanged, because a uniform scale does not turn them. A
    cloud whose points all coincide is only centered.
    """

    def __init__(self) -> None:
        self.center = Center()

    def forward(self, data: Data) -> Data:
        data = self.center(data)
        if data.pos.size(0) == 0:
            return data

        radius = data.pos.norm(dim=-1).max()
        if radius > 0:
            data.pos = data.pos / radius
        return data


def rotation_matrix(degrees: float, axis: int) -> torch.Tensor:
    """Return the ``[3, 3]`` matrix of a right-handed rotation by
    :obj:`degrees` about coordinate axis :obj:`axis` (0, 1 or 2)."""
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    first, second = [a for a in range(3) if a != axis]
    if axis == 1:
        # The right-handed cyclic order about y is (z, x).
        first, second = second, first

    matrix = torch.eye(3)
    matrix[first, first], matrix[first, second] = cos, -sin
    matrix[second, first], matrix[second, second] = sin, cos
    return matrix


class RandomRotateWithNormals(BaseTransform):
    r"""Rotate ``pos`` and ``normal`` by the same random angle about one
    coordinate axis.

    It replaces :class:`torch_geometric.transforms.RandomRotate`, which
    leaves ``normal`` unchanged in PyG 2.8. The angle is drawn uniformly from
    :obj:`degrees` with Python's :mod:`random`, as PyG's random transforms do.

    Args:
        degrees (float or (float, float)): Range of the angle in degrees. A
            single number :math:`d` means :math:`[-d, d]`.
        axis (int, optional): The rotation axis (0, 1 or 2).
            (default: :obj:`0`)
    """

    def __init__(self, degrees, axis: int = 0) -> None:
        if isinstance(degrees, (int, float)):
            degrees = (-abs(degrees), abs(degrees))
        if len(degrees) != 2:
            raise ValueError(f"'degrees' must be a number or a pair, got {degrees!r}.")
        if axis not in (0, 1, 2):
            raise ValueError(f"'axis' must be 0, 1 or 2, got {axis!r}.")
        self.degrees = tuple(degrees)
        self.axis = axis

    def forward(self, data: Data) -> Data:
        matrix = rotation_matrix(random.uniform(*self.degrees), self.axis)

        # Points are rows, so they are multiplied by the transposed matrix.
        data.pos = data.pos @ matrix.t().to(data.pos.device, data.pos.dtype)
        if getattr(data, "normal", None) is not None:
            data.normal = data.normal @ matrix.t().to(data.normal.device, data.normal.dtype)
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.degrees}, axis={self.axis})"


class FarthestPointSample(BaseTransform):
    r"""Keep :obj:`num` points of a cloud chosen by farthest point sampling,
    with :func:`samsa_geo.ops.fps`, and every node-level attribute of those
    points.

    A cloud with fewer than :obj:`num` points keeps all of them.

    Args:
        num (int): Number of points to keep.
        random_start (bool, optional): If :obj:`False`, sampling starts at
            the first point, so the result is deterministic.
            (default: :obj:`False`)
    """

    def __init__(self, num: int, random_start: bool = False) -> None:
        if isinstance(num, bool) or not isinstance(num, int) or num <= 0:
            raise ValueError(f"'num' must be a positive int, got {num!r}.")
        self.num = num
        self.random_start = random_start

    def forward(self, data: Data) -> Data:
        num_nodes = data.pos.size(0)
        index = fps(data.pos, k=self.num, random_start=self.random_start)

        # A tensor with one row per point is a node attribute. Indexing is a
        # no-op for a one-point cloud, so a [1]-shaped label is safe too.
        for key, value in list(data.items()):
            if key == "face" or "edge" in key:
                continue
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.size(0) == num_nodes:
                data[key] = value[index]
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.num}, random_start={self.random_start})"


def modelnet_transforms(
    num_points: int = 1024,
    fps_points: Optional[int] = None,
    train: bool = True,
    up_axis: int = 2,
    include_normals: bool = True,
    scales: Tuple[float, float] = (0.8, 1.25),
    jitter: float = 0.01,
) -> Tuple[BaseTransform, Optional[BaseTransform]]:
    """Build the ``(pre_transform, transform)`` pair for ModelNet-style
    mesh classification.

    The pre-transform runs once per mesh when a dataset is processed. It
    samples :obj:`num_points` points on the surface, uniformly by area and
    with face normals if :obj:`include_normals`. It then normalizes the cloud
    to the unit sphere and, with :obj:`fps_points`, keeps that many points by
    farthest point sampling. The stored clouds are therefore fixed. Only the
    training transform varies between epochs: a random rotation about
    :obj:`up_axis` that turns normals too, a random uniform scale, and a
    uniform jitter of each coordinate.

    Args:
        num_points (int, optional): Points sampled per mesh.
            (default: :obj:`1024`)
        fps_points (int, optional): If set, the number of points kept by
            farthest point sampling, at most :obj:`num_points`.
            (default: :obj:`None`)
        train (bool, optional): If :obj:`False`, the returned transform is
            :obj:`None`. (default: :obj:`True`)
        up_axis (int, optional): Axis of the random rotation, 2 for ModelNet
            meshes, whose up direction is z. (default: :obj:`2`)
        include_normals (bool, optional): Whether to store face normals as
            ``data.normal``. (default: :obj:`True`)
        scales (float, float, optional): Range of the random scale.
            (default: :obj:`(0.8, 1.25)`)
        jitter (float, optional): Maximum absolute jitter per coordinate,
            0 for none. (default: :obj:`0.01`)

    Returns:
        ``(pre_transform, transform)``: pass them to the dataset's
        constructor. ``transform`` is :obj:`None` when :obj:`train` is
        :obj:`False`.
    """
    if fps_points is not None and not 0 < fps_points <= num_points:
        raise ValueError(
            f"'fps_points' must lie in [1, num_points={num_points}], got {fps_points}. "
            f"Sample more points or keep fewer."
        )
    if up_axis not in (0, 1, 2):
        raise ValueError(f"'up_axis' must be 0, 1 or 2, got {up_axis!r}.")

    steps = [SamplePoints(num_points, remove_faces=True, include_normals=include_normals),
             NormalizeToUnitSphere()]
    if fps_points is not None:
        steps.append(FarthestPointSample(fps_points))
    pre_transform = Compose(steps)

    if not train:
        return pre_transform, None

    augmentations = [RandomRotateWithNormals(180, axis=up_axis), RandomScale(scales)]
    if jitter > 0:
        augmentations.append(RandomJitter(jitter))
    return pre_transform, Compose(augmentations)
