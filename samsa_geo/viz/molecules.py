"""2D drawings of molecules with the atoms SAMSA sampled highlighted, through
RDKit's :mod:`rdkit.Chem.Draw.rdMolDraw2D`.

Node ``i`` of a molecular graph that samsa_geo builds from SMILES is atom
``i`` of the RDKit molecule parsed from the same SMILES (heavy atoms only, in
RDKit's order), so sampled node indices are atom indices. For graphs from
other sources, map the indices to RDKit atom order before drawing.
"""

import os
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
from torch import Tensor

from samsa_geo.viz.colors import (
    MODES,
    SAMPLED_COLOR,
    Color,
    color_counts,
    color_scores,
)
from samsa_geo.viz.sampling import (
    as_tensor,
    count_heads,
    local_sampling,
    sampled_mask,
    select_index,
    select_scores,
)

try:
    from rdkit import Chem
    from rdkit.Chem.Draw import rdMolDraw2D
except ImportError as _error:
    raise ImportError(
        f"samsa_geo.viz.molecules needs RDKit to draw molecules, but importing it failed "
        f"({_error}). Install it with 'pip install rdkit'."
    ) from _error


def _to_mol(molecule: Union[str, "Chem.Mol"]) -> "Chem.Mol":
    if isinstance(molecule, Chem.Mol):
        return molecule
    if isinstance(molecule, str):
        mol = Chem.MolFromSmiles(molecule)
        if mol is None:
            raise ValueError(
                f"'molecule' is not a valid SMILES string: {molecule!r}. RDKit failed to parse it."
            )
        return mol
    raise ValueError(
        f"'molecule' must be a SMILES string or an rdkit.Chem.Mol, got {type(molecule).__name__}."
    )


def _drawer(path: str, size: Tuple[int, int]) -> Any:
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ValueError(
            f"'size' must be a (width, height) pair of positive ints in pixels, got {size!r}."
        )
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".png":
        return rdMolDraw2D.MolDraw2DCairo(*size)
    if suffix == ".svg":
        return rdMolDraw2D.MolDraw2DSVG(*size)
    raise ValueError(f"'path' must end in .png or .svg, got {path!r}.")


def _rgb(color: Sequence[float], name: str) -> Color:
    rgb = tuple(float(c) for c in color)
    if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
        raise ValueError(f"'{name}' must be three floats in [0, 1] (RGB), got {color!r}.")

    # RDKit truncates components to 8 bits. Rounding first makes the drawn
    # color the nearest 8-bit color.
    return tuple(round(255.0 * c) / 255.0 for c in rgb)


def draw_molecule(
    path: Union[str, os.PathLike],
    molecule: Union[str, "Chem.Mol"],
    atoms: Any = None,
    colors: Any = None,
    highlight_color: Color = SAMPLED_COLOR,
    size: Tuple[int, int] = (400, 300),
    legend: str = "",
) -> None:
    """Draw a molecule with highlighted atoms into a PNG or SVG file.

    The file format follows the suffix of ``path``: ``.png`` draws with
    ``MolDraw2DCairo`` and ``.svg`` with ``MolDraw2DSVG``. Highlights are
    filled discs behind the atoms, and bonds are not highlighted.

    Args:
        path (str or os.PathLike): Output path ending in ``.png`` or ``.svg``.
        molecule (str or rdkit.Chem.Mol): SMILES string or molecule.
        atoms (torch.Tensor or numpy.ndarray or list, optional): Atom indices
            to highlight, in any layout of
            :func:`samsa_geo.viz.stack_layers` (``[K]``, ``[H, K]``,
            ``[L, H, K]``), ``-1`` for padding. The union over all rows is
            highlighted. If :obj:`None`, all atoms are highlighted when
            ``colors`` is given, and none otherwise. (default: :obj:`None`)
        colors (torch.Tensor or numpy.ndarray, optional): ``[n, 3]`` RGB color
            in ``[0, 1]`` of every atom, used for the highlighted atoms in
            place of ``highlight_color``. (default: :obj:`None`)
        highlight_color (tuple of float, optional): RGB in ``[0, 1]`` of
            highlighted atoms. (default: :data:`SAMPLED_COLOR`)
        size (tuple of int, optional): ``(width, height)`` in pixels.
            (default: :obj:`(400, 300)`)
        legend (str, optional): Text under the drawing. (default: :obj:`""`)
    """
    path = os.fspath(path)
    drawer = _drawer(path, size)
    mol = _to_mol(molecule)
    num_atoms = mol.GetNumAtoms()

    if atoms is not None:
        highlight = sampled_mask(atoms, num_atoms)
    else:
        highlight = np.full(num_atoms, colors is not None)
    highlight = [int(i) for i in np.flatnonzero(np.asarray(highlight))]

    if colors is not None:
        colors = as_tensor(colors, "colors").double()
        if colors.shape != (num_atoms, 3):
            raise ValueError(
                f"'colors' must have shape [n, 3] with n = {num_atoms} atoms, "
                f"got {tuple(colors.shape)}."
            )
        atom_colors = {i: _rgb(colors[i].tolist(), f"colors[{i}]") for i in highlight}
    else:
        rgb = _rgb(highlight_color, "highlight_color")
        atom_colors = {i: rgb for i in highlight}

    drawer.drawOptions().fillHighlights = True
    rdMolDraw2D.PrepareAndDrawMolecule(
        drawer,
        mol,
        legend=legend,
        highlightAtoms=highlight,
        highlightAtomColors=atom_colors,
        highlightBonds=[],
    )
    drawer.FinishDrawing()

    text = drawer.GetDrawingText()
    mode = "wb" if isinstance(text, bytes) else "w"
    with open(path, mode) as file:
        file.write(text)


def draw_sampling(
    path: Union[str, os.PathLike],
    molecule: Union[str, "Chem.Mol"],
    sampling: Any,
    mode: str = "sampled",
    layer: Optional[int] = None,
    head: Optional[int] = None,
    ptr: Optional[Tensor] = None,
    graph: int = 0,
    scores: Any = None,
    highlight_color: Color = SAMPLED_COLOR,
    size: Tuple[int, int] = (400, 300),
    legend: str = "",
) -> None:
    """Draw a molecule colored by what SAMSA sampled into a PNG or SVG file.

    ``"sampled"`` highlights the atoms that any selected head sampled in
    ``highlight_color``. ``"count"`` highlights the same atoms in the colors
    of :func:`samsa_geo.viz.color_counts`, darker for more heads.
    ``"score"`` highlights every atom in the colors of
    :func:`samsa_geo.viz.color_scores`. ``layer=None`` and ``head=None``
    merge layers and heads as in :func:`samsa_geo.viz.color_sampling`.

    Args:
        path (str or os.PathLike): Output path ending in ``.png`` or ``.svg``.
        molecule (str or rdkit.Chem.Mol): SMILES string or molecule. Its atom
            ``i`` is node ``i`` of the graph.
        sampling (SamplingInfo or list or torch.Tensor): A batch-level
            ``SamplingInfo``, a list of them (one per layer), or local atom
            indices (``[K]``, ``[H, K]``, ``[L, H, K]`` or a list of
            ``[H, K]``), ``-1`` for padding.
        mode (str, optional): ``"sampled"``, ``"score"`` or ``"count"``.
            (default: :obj:`"sampled"`)
        layer (int, optional): Layer to show. (default: :obj:`None`)
        head (int, optional): Head to show. (default: :obj:`None`)
        ptr (torch.Tensor, optional): ``[B + 1]`` CSR offsets of the batch
            that ``sampling`` comes from. (default: :obj:`None`)
        graph (int, optional): Molecule ``b`` of the batch.
            (default: :obj:`0`)
        scores (torch.Tensor or list, optional): ``[n, H]`` scores, or one
            per layer, for the ``"score"`` mode. Overrides the scores of a
            ``SamplingInfo``. (default: :obj:`None`)
        highlight_color (tuple of float, optional): RGB in ``[0, 1]`` of
            sampled atoms in the ``"sampled"`` mode.
            (default: :data:`SAMPLED_COLOR`)
        size (tuple of int, optional): ``(width, height)`` in pixels.
            (default: :obj:`(400, 300)`)
        legend (str, optional): Text under the drawing. (default: :obj:`""`)
    """
    if mode not in MODES:
        raise ValueError(f"'mode' must be one of {MODES}, got {mode!r}.")
    mol = _to_mol(molecule)
    num_atoms = mol.GetNumAtoms()
    index, info_scores = local_sampling(sampling, num_atoms, ptr, graph)

    if mode == "sampled":
        atoms = select_index(index, layer, head)
        draw_molecule(
            path, mol, atoms=atoms, highlight_color=highlight_color, size=size, legend=legend
        )
        return

    if mode == "count":
        rows = select_index(index, layer, head)
        counts = count_heads(rows, num_atoms)
        colors = color_counts(counts, max_count=max(rows.size(0), 1))
        atoms = np.flatnonzero(counts.numpy() > 0)
        draw_molecule(path, mol, atoms=atoms, colors=colors, size=size, legend=legend)
        return

    scores = scores if scores is not None else info_scores
    if scores is None:
        raise ValueError("mode='score' needs 'scores'. Pass the [n, H] scores of the molecule.")
    level = select_scores(scores, layer, head)
    if level.numel() != num_atoms:
        raise ValueError(
            f"'scores' has {level.numel()} rows, but the molecule has {num_atoms} atoms."
        )
    draw_molecule(path, mol, colors=color_scores(level), size=size, legend=legend)
