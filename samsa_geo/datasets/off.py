"""Checked reading of Object File Format (``.off``) meshes.

PyG's :func:`torch_geometric.io.read_off` (PyG 2.8) trusts its input. A
truncated file raises an unrelated error or returns fewer vertices than the
header promises, and ``nan`` coordinates pass through. Faces with more than
four vertices are dropped without a warning. A header followed by a space or
a carriage return (``"OFF \\r"``) breaks the count parsing.

:func:`read_off` here checks every step and raises :class:`OffFormatError`
naming the file and the problem. :func:`read_off_files` reads many files and
either skips bad ones with a warning or raises, so that a dataset never
stores an unreadable or NaN mesh.
"""

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.warnings import warn


class OffFormatError(ValueError):
    """An ``.off`` file is corrupt, truncated, empty or fully degenerate.

    Attributes:
        path (str): The file.
        reason (str): What is wrong with it.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"Invalid OFF file '{path}': {reason}")


def _content_lines(text: str) -> List[str]:
    # OFF allows '#' comments and blank lines anywhere.
    lines = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def _parse_header(path: str, lines: List[str]) -> Tuple[int, int, int]:
    if not lines:
        raise OffFormatError(path, "the file is empty.")

    first = lines[0]
    if not first.startswith("OFF"):
        raise OffFormatError(path, f"the first line must start with 'OFF', got {first[:40]!r}.")

    # Some ModelNet files glue the header to the counts line: "OFF490 518 0".
    counts_text = first[3:].strip()
    start = 1
    if not counts_text:
        if len(lines) < 2:
            raise OffFormatError(path, "the counts line after 'OFF' is missing.")
        counts_text = lines[1]
        start = 2

    counts = counts_text.split()
    try:
        num_vertices, num_faces = int(counts[0]), int(counts[1])
    except (IndexError, ValueError):
        raise OffFormatError(
            path, f"the counts line must hold the vertex and face counts, got {counts_text!r}."
        ) from None

    if num_vertices <= 0 or num_faces <= 0:
        raise OffFormatError(
            path, f"the mesh is empty ({num_vertices} vertices, {num_faces} faces)."
        )
    if len(lines) < start + num_vertices + num_faces:
        raise OffFormatError(
            path,
            f"the file is truncated: the header promises {num_vertices} vertices and "
            f"{num_faces} faces, but only {len(lines) - start} data lines follow.",
        )
    return num_vertices, num_faces, start


def _parse_vertices(path: str, lines: List[str]) -> np.ndarray:
    pos = np.empty((len(lines), 3))
    for i, line in enumerate(lines):
        fields = line.split()
        if len(fields) < 3:
            raise OffFormatError(path, f"vertex {i} is not three numbers: {line[:60]!r}.")
        try:
            pos[i] = (float(fields[0]), float(fields[1]), float(fields[2]))
        except ValueError:
            raise OffFormatError(path, f"vertex {i} is not three numbers: {line[:60]!r}.") from None

    if not np.isfinite(pos).all():
        count = int((~np.isfinite(pos)).any(axis=1).sum())
        raise OffFormatError(path, f"{count} vertices have NaN or infinite coordinates.")
    return pos


def _parse_faces(path: str, lines: List[str], num_vertices: int) -> np.ndarray:
    triangles = []
    for i, line in enumerate(lines):
        try:
            fields = [int(value) for value in line.split()]
        except ValueError:
            raise OffFormatError(path, f"face {i} is not a list of integers: {line[:60]!r}.") from None
        size = fields[0]
        if size < 3 or len(fields) < size + 1:
            raise OffFormatError(
                path, f"face {i} must list at least 3 vertex indices, got {line[:60]!r}."
            )

        # Split a polygon into a triangle fan around its first vertex.
        # Entries after the indices are optional colors and are ignored.
        corners = fields[1:size + 1]
        for j in range(1, size - 1):
            triangles.append((corners[0], corners[j], corners[j + 1]))

    face = np.asarray(triangles, dtype=np.int64)
    if face.min() < 0 or face.max() >= num_vertices:
        raise OffFormatError(
            path, f"face vertex indices must lie in [0, {num_vertices - 1}], "
                  f"got values from {face.min()} to {face.max()}."
        )
    return face


def _drop_degenerate_faces(path: str, pos: np.ndarray, face: np.ndarray) -> np.ndarray:
    # A face with a repeated vertex or zero area is never sampled, so it is
    # removed. A mesh without any face of positive area cannot be sampled.
    distinct = (face[:, 0] != face[:, 1]) & (face[:, 1] != face[:, 2]) & (face[:, 0] != face[:, 2])
    edge_1 = pos[face[:, 1]] - pos[face[:, 0]]
    edge_2 = pos[face[:, 2]] - pos[face[:, 0]]
    area = 0.5 * np.linalg.norm(np.cross(edge_1, edge_2), axis=1)

    keep = distinct & (area > 0)
    if not keep.any():
        raise OffFormatError(path, f"all {len(face)} faces are degenerate (zero area).")
    return face[keep]


def read_off(path: str) -> Data:
    """Read an ``.off`` mesh and check it.

    Accepts ``#`` comments, blank lines, Windows line ends, the header glued
    to the counts line (``"OFF490 518 0"``), and polygons of any size, which
    it splits into triangles. Faces with a repeated vertex or zero area are
    removed.

    Args:
        path (str): Path to the ``.off`` file.

    Returns:
        :class:`~torch_geometric.data.Data` with ``pos`` (``[N, 3]`` float)
        and ``face`` (``[3, F]`` long), as PyG's
        :func:`~torch_geometric.io.read_off` returns it.

    Raises:
        OffFormatError: If the file is empty, truncated, not OFF, has a
            non-finite coordinate or an out-of-range index, or has no face of
            positive area. It is a :class:`ValueError`.
    """
    try:
        with open(path, encoding="ascii", errors="strict") as file:
            text = file.read()
    except UnicodeDecodeError:
        raise OffFormatError(path, "the file is not ASCII text.") from None

    lines = _content_lines(text)
    num_vertices, num_faces, start = _parse_header(path, lines)

    pos = _parse_vertices(path, lines[start:start + num_vertices])
    face_lines = lines[start + num_vertices:start + num_vertices + num_faces]
    face = _parse_faces(path, face_lines, num_vertices)
    face = _drop_degenerate_faces(path, pos, face)

    data = Data(pos=torch.from_numpy(pos).float())
    data.face = torch.from_numpy(face).t().contiguous()
    return data


def write_off(path: str, pos: Tensor, face: Tensor) -> None:
    """Write a triangle mesh as an ``.off`` file.

    Args:
        path (str): Output path.
        pos (torch.Tensor): ``[N, 3]`` vertex coordinates.
        face (torch.Tensor): ``[3, F]`` vertex indices of each triangle.
    """
    pos_array = pos.detach().cpu().double().numpy()
    face_array = face.detach().cpu().t().numpy()

    lines = ["OFF", f"{len(pos_array)} {len(face_array)} 0"]
    lines += [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in pos_array]
    lines += [f"3 {a} {b} {c}" for a, b, c in face_array]
    with open(path, "w", encoding="ascii") as file:
        file.write("\n".join(lines) + "\n")


def read_off_files(
    paths: Sequence[str],
    strict: bool = False,
) -> Tuple[List[Data], List[Tuple[str, str]]]:
    """Read many ``.off`` files, skipping or raising on bad ones.

    Args:
        paths (list of str): Files to read, in order.
        strict (bool, optional): If :obj:`True`, raise on the first bad file.
            Otherwise skip it with a warning that names the file and the
            reason. (default: :obj:`False`)

    Returns:
        ``(data_list, skipped)``: the meshes of the good files in input order,
        and ``(path, reason)`` for every skipped file.

    Raises:
        OffFormatError: With :obj:`strict=True`, for the first bad file.
    """
    data_list: List[Data] = []
    skipped: List[Tuple[str, str]] = []
    for path in paths:
        try:
            data_list.append(read_off(path))
        except OffFormatError as error:
            if strict:
                raise
            skipped.append((path, error.reason))
            warn(f"Skipping {error}")
    return data_list, skipped


def summarize_skipped(skipped: Sequence[Tuple[str, str]], total: int,
                      dataset_name: Optional[str] = None) -> str:
    """Return a one-line count of skipped files for a warning message."""
    prefix = f"{dataset_name}: " if dataset_name else ""
    return (f"{prefix}skipped {len(skipped)} of {total} .off files that were invalid or "
            f"became non-finite, listed in the 'skipped' attribute. Pass strict=True to "
            f"raise instead.")
