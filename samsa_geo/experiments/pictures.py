"""Pictures of what a trained SAMSA model sampled: points of test clouds, or
atoms of test molecules."""

import os
from pathlib import Path
from typing import List, Optional

import torch
from torch_geometric.data import Batch

from samsa_geo.experiments.run import build_model, load_datasets, read_run
from samsa_geo.training import read_checkpoint

# ModelNet and the embedded CAD shapes are Z-up: look from the front right,
# slightly from above.
Z_UP_FRONT = (1.0, -1.4, 0.8)
Z_UP = (0.0, 0.0, 1.0)


def load_trained_model(run_dir: os.PathLike):
    """Rebuild the model of a run and load the weights with the best
    validation metric (``best.pt``). Returns ``(run, model)`` in eval mode."""
    run = read_run(run_dir)
    if run["model"] not in ("samsa",):
        raise ValueError(
            f"'{run_dir}' trained the baseline {run['model']!r}, which samples nothing. Pass the "
            f"folder of a run with --model samsa.")

    checkpoint = read_checkpoint(Path(run_dir) / "best.pt")
    if checkpoint is None:
        raise FileNotFoundError(f"No readable checkpoint '{Path(run_dir) / 'best.pt'}'. Train "
                                f"first, or pass the folder that 'samsa-geo train --out' wrote.")

    model = build_model(run)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise ValueError(
            f"The weights in '{Path(run_dir) / 'best.pt'}' do not fit the model that run.json "
            f"describes, so they were saved by another version of samsa_geo. Train the run "
            f"again with this version. Details: {str(error).splitlines()[0]}") from error
    return run, model.eval()


def _pick_per_class(labels: List[int], count: int) -> List[int]:
    # Round-robin over classes, so a grid shows as many classes as it can.
    by_class = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)

    picked, depth = [], 0
    while len(picked) < min(count, len(labels)):
        for members in by_class.values():
            if depth < len(members) and len(picked) < count:
                picked.append(members[depth])
        depth += 1
    return picked


@torch.no_grad()
def draw_run(run_dir: os.PathLike, out: os.PathLike, index: int = 0, grid: int = 0,
             mode: str = "count", layer: Optional[int] = None, head: Optional[int] = None) -> Path:
    """Draw what a trained SAMSA model sampled on its test split.

    For a point-cloud run with ``grid=0``, it renders test cloud ``index`` to
    ``out`` (a PNG) and writes the colored cloud to a ``.ply`` file beside
    it. With ``grid > 0`` it renders that many test clouds, one class after
    another, into one grid image titled with the true and the predicted
    class. For a molecule run it draws test molecule ``index`` with RDKit,
    its sampled atoms highlighted, to ``out`` (PNG or SVG).

    Args:
        run_dir (str or os.PathLike): Output folder of ``samsa-geo train``.
        out (str or os.PathLike): PNG file to write.
        index (int, optional): Test cloud to draw. (default: :obj:`0`)
        grid (int, optional): Number of clouds in a grid image.
            (default: :obj:`0`)
        mode (str, optional): ``"sampled"``, ``"score"`` or ``"count"``, see
            :func:`samsa_geo.viz.color_sampling`. (default: :obj:`"count"`)
        layer (int, optional): Layer to draw, all merged if :obj:`None`.
        head (int, optional): Head to draw, all merged if :obj:`None`.
    """
    from samsa_geo import viz

    view = viz.View(front=Z_UP_FRONT, up=Z_UP)
    run, model = load_trained_model(run_dir)
    test = load_datasets(run)[2]
    if run["task"] == "zinc":
        return _draw_molecule(model, test, Path(out), index, mode, layer, head)

    classes = getattr(test, "classes", None) or [str(c) for c in range(run["num_classes"])]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    if grid <= 0:
        if not 0 <= index < len(test):
            raise ValueError(f"'index' must lie in [0, {len(test) - 1}] for this test split, "
                             f"got {index}.")
        data = test[index]
        _, sampling = model(Batch.from_data_list([data]), return_sampling=True)
        local_index, scores = viz.local_sampling(sampling, data.num_nodes)
        colors = viz.color_sampling(local_index, data.num_nodes, mode=mode, scores=scores,
                                    layer=layer, head=head)
        viz.render_png(out, data.pos, colors, view=view)
        viz.save_ply(out.with_suffix(".ply"), data.pos, colors, normals=getattr(data, "normal", None))
        return out

    tiles = []
    for i in _pick_per_class([int(d.y) for d in test], grid):
        data = test[i]
        logits, sampling = model(Batch.from_data_list([data]), return_sampling=True)
        local_index, scores = viz.local_sampling(sampling, data.num_nodes)
        colors = viz.color_sampling(local_index, data.num_nodes, mode=mode, scores=scores,
                                    layer=layer, head=head)
        title = f"{classes[int(data.y)]} -> {classes[int(logits.argmax())]}"
        tiles.append((data.pos, colors, title))

    viz.render_grid(out, tiles, ncols=min(4, len(tiles)), view=view)
    return out


def _draw_molecule(model, test, out: Path, index: int, mode: str, layer: Optional[int],
                   head: Optional[int]) -> Path:
    from samsa_geo import viz

    if not 0 <= index < len(test):
        raise ValueError(f"'index' must lie in [0, {len(test) - 1}] for this test split, got {index}.")
    data = test[index]
    if getattr(data, "smiles", None) is None:
        raise ValueError("The test molecules carry no SMILES, so RDKit cannot draw them. Molecule "
                         "pictures need the embedded moses data set.")

    prediction, sampling = model(Batch.from_data_list([data]), return_sampling=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    legend = f"target {float(data.y):.2f}, predicted {float(prediction):.2f}"
    viz.draw_sampling(out, data.smiles, sampling, mode=mode, layer=layer, head=head, legend=legend)
    return out
