"""Labeled primitive shapes written as ``.off`` meshes in ModelNet's layout.

Spheres, boxes, cylinders, cones and tori with random size, rotation and
vertex noise, stored as ``root/raw/<shape>/{train,test}/<shape>_<i>.off``
with the numbering continued from the training to the test split, as in
ModelNet. The meshes go through the same reading and processing path as real
ModelNet data, so tests and quick runs need no download.
"""

import os
import os.path as osp
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from samsa_geo.datasets.modelnet import ModelNet
from samsa_geo.datasets.off import write_off

# Sorted, so the label of a shape is its index here.
PRIMITIVE_SHAPES = ("box", "cone", "cylinder", "sphere", "torus")


def _revolution_mesh(
    rho: np.ndarray,
    z: np.ndarray,
    segments: int,
    closed_profile: bool = False,
) -> Tuple[np.ndarray, np.ndarray]:
    # Rotates the profile (rho, z), ordered from top to bottom, about the z
    # axis. A profile point with rho == 0 at either end becomes one pole
    # vertex. Faces are ordered so that their normals point outwards.
    top_pole = not closed_profile and rho[0] == 0
    bottom_pole = not closed_profile and rho[-1] == 0
    ring_rho = rho[int(top_pole):len(rho) - int(bottom_pole)]
    ring_z = z[int(top_pole):len(z) - int(bottom_pole)]
    rows = len(ring_rho)

    phi = 2 * np.pi * np.arange(segments) / segments
    ring = np.stack([
        np.outer(ring_rho, np.cos(phi)),
        np.outer(ring_rho, np.sin(phi)),
        np.repeat(ring_z[:, None], segments, axis=1),
    ], axis=-1).reshape(-1, 3)

    row = np.arange(rows if closed_profile else rows - 1)[:, None]
    col = np.arange(segments)[None, :]
    a = row * segments + col
    b = row * segments + (col + 1) % segments
    d = ((row + 1) % rows) * segments + col
    e = ((row + 1) % rows) * segments + (col + 1) % segments
    faces = [np.stack([a, d, b], -1).reshape(-1, 3), np.stack([b, d, e], -1).reshape(-1, 3)]

    vertices = [ring]
    ring_0 = np.arange(segments)
    ring_last = (rows - 1) * segments + np.arange(segments)
    if top_pole:
        pole = len(ring)
        vertices.append([[0.0, 0.0, z[0]]])
        faces.append(np.stack([np.full(segments, pole), ring_0, np.roll(ring_0, -1)], -1))
    if bottom_pole:
        pole = len(ring) + int(top_pole)
        vertices.append([[0.0, 0.0, z[-1]]])
        faces.append(np.stack([ring_last, np.full(segments, pole), np.roll(ring_last, -1)], -1))

    return np.concatenate(vertices).astype(np.float64), np.concatenate(faces).astype(np.int64)


def _box_mesh(half_extents: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    pos = corners * half_extents

    # Two triangles per side, then each one turned to face outwards.
    quads = [(0, 1, 3, 2), (4, 5, 7, 6), (0, 1, 5, 4), (2, 3, 7, 6), (0, 2, 6, 4), (1, 3, 7, 5)]
    faces = []
    for p, q, r, s in quads:
        faces += [(p, q, r), (p, r, s)]
    faces = np.array(faces, dtype=np.int64)

    normal = np.cross(pos[faces[:, 1]] - pos[faces[:, 0]], pos[faces[:, 2]] - pos[faces[:, 0]])
    inward = (normal * pos[faces].mean(axis=1)).sum(axis=1) < 0
    faces[inward] = faces[inward][:, ::-1]
    return pos, faces


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def make_primitive(
    shape: str,
    rng: Optional[np.random.Generator] = None,
    noise: float = 0.01,
    segments: int = 24,
) -> Tuple[Tensor, Tensor]:
    """Generate one randomly sized, rotated and perturbed primitive mesh.

    Args:
        shape (str): One of :obj:`"box"`, :obj:`"cone"`, :obj:`"cylinder"`,
            :obj:`"sphere"` and :obj:`"torus"`.
        rng (numpy.random.Generator, optional): Source of randomness.
            (default: a generator seeded with 0)
        noise (float, optional): Standard deviation of the Gaussian vertex
            noise, relative to the shape's size. (default: :obj:`0.01`)
        segments (int, optional): Vertices per ring of the round shapes.
            (default: :obj:`24`)

    Returns:
        ``(pos, face)``: ``[N, 3]`` float vertex positions and ``[3, F]``
        long triangle indices, with faces oriented outwards.
    """
    if shape not in PRIMITIVE_SHAPES:
        raise ValueError(f"'shape' must be one of {PRIMITIVE_SHAPES}, got {shape!r}.")
    if segments < 3:
        raise ValueError(f"'segments' must be at least 3, got {segments}.")
    if noise < 0:
        raise ValueError(f"'noise' must be non-negative, got {noise}.")
    rng = np.random.default_rng(0) if rng is None else rng

    if shape == "box":
        pos, face = _box_mesh(rng.uniform(0.3, 1.0, size=3))
    elif shape == "sphere":
        theta = np.linspace(0, np.pi, segments // 2 + 1)
        pos, face = _revolution_mesh(np.sin(theta).round(12), np.cos(theta), segments)
    elif shape == "cylinder":
        radius, half_height = rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0)
        rho = np.array([0.0, radius, radius, 0.0])
        z = np.array([half_height, half_height, -half_height, -half_height])
        pos, face = _revolution_mesh(rho, z, segments)
    elif shape == "cone":
        radius, half_height = rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0)
        rho = np.array([0.0, radius, 0.0])
        z = np.array([half_height, -half_height, -half_height])
        pos, face = _revolution_mesh(rho, z, segments)
    else:
        tube = rng.uniform(0.15, 0.45)
        angle = np.pi / 2 - 2 * np.pi * np.arange(segments // 2) / (segments // 2)
        pos, face = _revolution_mesh(1.0 + tube * np.cos(angle), tube * np.sin(angle), segments,
                                     closed_profile=True)

    size = rng.uniform(0.5, 1.5)
    pos = size * pos @ _random_rotation(rng).T
    pos = pos + noise * size * rng.standard_normal(pos.shape)
    return torch.from_numpy(pos).float(), torch.from_numpy(face).t().contiguous()


def write_primitive_modelnet(
    root: str,
    num_train_per_class: int = 20,
    num_test_per_class: int = 5,
    seed: int = 0,
    shapes: Sequence[str] = PRIMITIVE_SHAPES,
    noise: float = 0.01,
    segments: int = 24,
) -> str:
    """Write primitive meshes as ``root/raw/<shape>/{train,test}/<shape>_<i>.off``.

    The same arguments always write the same files. Indices ``i`` start at
    ``0001`` in the training split and continue in the test split.

    Args:
        root (str): Dataset root folder.
        num_train_per_class (int, optional): Training meshes per shape.
            (default: :obj:`20`)
        num_test_per_class (int, optional): Test meshes per shape.
            (default: :obj:`5`)
        seed (int, optional): Random seed. (default: :obj:`0`)
        shapes (list of str, optional): Shapes to write, each a class.
            (default: all of :obj:`PRIMITIVE_SHAPES`)
        noise (float, optional): Relative vertex noise, see
            :func:`make_primitive`. (default: :obj:`0.01`)
        segments (int, optional): Vertices per ring of the round shapes.
            (default: :obj:`24`)

    Returns:
        The raw folder, ``root/raw``.
    """
    for name, value in (("num_train_per_class", num_train_per_class),
                        ("num_test_per_class", num_test_per_class)):
        if value < 1:
            raise ValueError(f"'{name}' must be at least 1, got {value}.")

    rng = np.random.default_rng(seed)
    raw_dir = osp.join(root, "raw")
    for shape in shapes:
        index = 1
        for split, count in (("train", num_train_per_class), ("test", num_test_per_class)):
            folder = osp.join(raw_dir, shape, split)
            os.makedirs(folder, exist_ok=True)
            for _ in range(count):
                pos, face = make_primitive(shape, rng, noise=noise, segments=segments)
                write_off(osp.join(folder, f"{shape}_{index:04d}.off"), pos, face)
                index += 1
    return raw_dir


class PrimitiveShapes(ModelNet):
    r"""A five-class point-cloud classification dataset of primitive
    shapes (box, cone, cylinder, sphere, torus), generated on first use and
    processed like :class:`~samsa_geo.datasets.ModelNet`.

    The meshes are written by :func:`write_primitive_modelnet` when
    ``root/raw`` lacks a shape folder. Existing raw files are used as they
    are, so change :obj:`root` after changing the generation arguments.

    Args:
        root (str): Root directory.
        train (bool, optional): If :obj:`True`, loads the training split,
            otherwise the test split. (default: :obj:`True`)
        num_train_per_class (int, optional): Training meshes per shape.
            (default: :obj:`20`)
        num_test_per_class (int, optional): Test meshes per shape.
            (default: :obj:`5`)
        seed (int, optional): Random seed of the generator. (default: :obj:`0`)
        transform (callable, optional): Transform applied on access.
            (default: :obj:`None`)
        pre_transform (callable, optional): Transform applied once before
            saving. (default: :obj:`None`)
        pre_filter (callable, optional): Predicate that decides whether a
            mesh is kept. (default: :obj:`None`)
        force_reload (bool, optional): Whether to re-process the dataset.
            (default: :obj:`False`)
        strict (bool, optional): If :obj:`True`, a bad mesh raises instead of
            being skipped. (default: :obj:`False`)
    """

    def __init__(
        self,
        root: str,
        train: bool = True,
        num_train_per_class: int = 20,
        num_test_per_class: int = 5,
        seed: int = 0,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        pre_filter: Optional[Callable] = None,
        force_reload: bool = False,
        strict: bool = False,
    ) -> None:
        self.num_train_per_class = num_train_per_class
        self.num_test_per_class = num_test_per_class
        self.seed = seed
        super().__init__(root, "primitives", train, transform, pre_transform, pre_filter,
                         force_reload, strict)

    def _check_name(self, name: str) -> None:
        # The constructor always passes "primitives", which has no URL.
        pass

    @property
    def raw_file_names(self) -> List[str]:
        return list(PRIMITIVE_SHAPES)

    def offline_download_url(self) -> Optional[str]:
        return None

    def offline_dataset_name(self) -> str:
        return "PrimitiveShapes"

    def download(self) -> None:
        write_primitive_modelnet(self.root, self.num_train_per_class, self.num_test_per_class,
                                 self.seed)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self)})"
