import re
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import Tensor

pytest.importorskip("rdkit")

from rdkit import Chem  # noqa: E402
from torch_geometric.utils import from_smiles  # noqa: E402

from samsa_geo.viz import (  # noqa: E402
    SAMPLED_COLOR,
    color_counts,
    color_scores,
    draw_molecule,
    draw_sampling,
)

# Paracetamol has 11 heavy atoms and benzene 6.
PARACETAMOL = "CC(=O)Nc1ccc(O)cc1"
BENZENE = "c1ccccc1"

# RDKit fills highlight discs with the exact color, and only their rims are
# antialiased.
COLOR_TOL = 3


class SamplingInfo(NamedTuple):
    index: Tensor
    mask: Tensor
    scores: Tensor


def hex_color(color):
    return "#" + "".join(f"{round(255 * c):02X}" for c in color)


def pixel_count(path, color):
    from PIL import Image

    image = np.asarray(Image.open(path).convert("RGB")).astype(np.float64)
    target = np.round(np.asarray(color) * 255.0)
    return int((np.abs(image - target).max(axis=-1) <= COLOR_TOL).sum())


def svg_colors(path):
    return set(re.findall(r"#[0-9A-F]{6}", path.read_text().upper()))


def test_draw_molecule_png_highlight(tmp_path):
    path = tmp_path / "mol.png"

    draw_molecule(path, PARACETAMOL, atoms=torch.tensor([1, 4, 8]))

    assert pixel_count(path, SAMPLED_COLOR) > 200


def test_draw_molecule_png_size(tmp_path):
    from PIL import Image

    path = tmp_path / "mol.png"

    draw_molecule(path, PARACETAMOL, atoms=[0], size=(250, 180))

    assert Image.open(path).size == (250, 180)


def test_draw_molecule_png_without_atoms(tmp_path):
    path = tmp_path / "plain.png"

    draw_molecule(path, PARACETAMOL)

    assert pixel_count(path, SAMPLED_COLOR) == 0


def test_draw_molecule_svg_highlight(tmp_path):
    path = tmp_path / "mol.svg"

    draw_molecule(path, PARACETAMOL, atoms=torch.tensor([[1, 4, -1], [8, 4, 10]]))

    assert "#D62728" in svg_colors(path)


def test_draw_molecule_svg_custom_color(tmp_path):
    path = tmp_path / "mol.svg"
    color = (31 / 255, 119 / 255, 180 / 255)

    draw_molecule(path, Chem.MolFromSmiles(BENZENE), atoms=[0, 3], highlight_color=color)

    assert "#1F77B4" in svg_colors(path)
    assert "#D62728" not in svg_colors(path)


def test_draw_molecule_png_legend(tmp_path):
    from PIL import Image

    plain, labeled = tmp_path / "plain.png", tmp_path / "labeled.png"

    # Butane is drawn as a flat zigzag, so the bottom band stays empty
    # unless a legend is drawn there.
    draw_molecule(plain, "CCCC", atoms=[0])
    draw_molecule(labeled, "CCCC", atoms=[0], legend="layer 0, head 1")

    bottom = slice(250, 300)
    plain_dark = (np.asarray(Image.open(plain).convert("L"))[bottom] < 128).sum()
    labeled_dark = (np.asarray(Image.open(labeled).convert("L"))[bottom] < 128).sum()
    assert plain_dark == 0
    assert labeled_dark > 20


@pytest.mark.parametrize(
    "molecule, kwargs, message",
    [
        ("C1CC", {}, "not a valid SMILES"),
        (42, {}, "SMILES string or an rdkit.Chem.Mol"),
        (BENZENE, {"atoms": [6]}, "local node indices in \\[0, 6\\)"),
        (BENZENE, {"colors": np.zeros((5, 3))}, "n = 6 atoms"),
        (
            BENZENE,
            {"atoms": [0], "highlight_color": (1.0, 0.0)},
            "'highlight_color' must be three floats",
        ),
        (BENZENE, {"size": (0, 100)}, "'size' must be a \\(width, height\\)"),
    ],
)
def test_draw_molecule_rejects_bad_input(tmp_path, molecule, kwargs, message):
    with pytest.raises(ValueError, match=message):
        draw_molecule(tmp_path / "bad.svg", molecule, **kwargs)


def test_draw_molecule_rejects_suffix(tmp_path):
    with pytest.raises(ValueError, match="must end in .png or .svg"):
        draw_molecule(tmp_path / "mol.jpg", BENZENE)


def batch_info():
    # Benzene (6 atoms) then paracetamol (11 atoms), 2 heads, k = 3.
    ptr = torch.tensor([0, 6, 17])
    index = torch.tensor(
        [
            [[0, 3, -1], [1, 2, -1]],
            [[6 + 1, 6 + 4, 6 + 8], [6 + 4, 6 + 10, 6 + 0]],
        ]
    )
    scores = torch.linspace(-1.0, 1.0, 17).unsqueeze(1).repeat(1, 2)
    return SamplingInfo(index, index >= 0, scores), ptr


def test_draw_sampling_count_colors(tmp_path):
    info, ptr = batch_info()
    path = tmp_path / "count.svg"

    draw_sampling(path, PARACETAMOL, info, mode="count", ptr=ptr, graph=1)

    both_heads = hex_color(color_counts(torch.tensor([2]), max_count=2)[0])
    one_head = hex_color(color_counts(torch.tensor([1]), max_count=2)[0])
    assert both_heads in svg_colors(path)
    assert one_head in svg_colors(path)


def test_draw_sampling_score_colors(tmp_path):
    info, ptr = batch_info()
    path = tmp_path / "score.svg"

    draw_sampling(path, PARACETAMOL, [info, info], mode="score", ptr=ptr, graph=1)

    colors = color_scores(info.scores[6:, 0])
    assert hex_color(colors[0]) in svg_colors(path)
    assert hex_color(colors[-1]) in svg_colors(path)


def test_draw_sampling_head_png(tmp_path):
    info, ptr = batch_info()
    path = tmp_path / "head.png"

    draw_sampling(path, BENZENE, info, ptr=ptr, graph=0, head=1)

    assert pixel_count(path, SAMPLED_COLOR) > 200


def test_draw_sampling_local_index(tmp_path):
    path = tmp_path / "local.svg"

    draw_sampling(path, BENZENE, torch.tensor([[0, 1], [2, -1]]), layer=0)

    assert "#D62728" in svg_colors(path)


def test_draw_sampling_rejects_size_mismatch(tmp_path):
    info, ptr = batch_info()

    with pytest.raises(ValueError, match="Graph 0 has 6 nodes"):
        draw_sampling(tmp_path / "bad.svg", PARACETAMOL, info, ptr=ptr, graph=0)


def test_draw_sampling_rejects_mode(tmp_path):
    with pytest.raises(ValueError, match="'mode' must be one of"):
        draw_sampling(tmp_path / "bad.svg", BENZENE, torch.tensor([0]), mode="atoms")


def test_smiles_graph_node_order_is_atom_order():
    graph = from_smiles(PARACETAMOL)
    mol = Chem.MolFromSmiles(PARACETAMOL)

    atomic_numbers = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
    assert graph.num_nodes == mol.GetNumAtoms()
    assert graph.x[:, 0].tolist() == atomic_numbers
