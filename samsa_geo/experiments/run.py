"""Train one model on one data set and record how to rebuild it."""

import json
import os
from pathlib import Path
from typing import Callable, Optional

import torch_geometric

from samsa_geo.experiments.molecules import build_molecule_model, load_molecule_datasets
from samsa_geo.experiments.points import build_point_model, load_point_datasets
from samsa_geo.models import count_parameters
from samsa_geo.training import Results, Task, TrainConfig, check_loaders, fit, make_loaders

RUN_FILE = "run.json"
TASKS = ("modelnet", "zinc")

# Settings that define the model and the data. A run folder trained with one
# value cannot resume with another.
FIXED_SETTINGS = ("task", "dataset", "model", "channels", "layers", "heads", "k", "points",
                  "registers", "sizes")


def load_datasets(run: dict):
    """Return the ``(train, val, test)`` splits that the run record names."""
    if run["task"] == "modelnet":
        return load_point_datasets(run["dataset"], run["root"], run["points"], seed=run["seed"])
    sizes = run.get("sizes")
    return load_molecule_datasets(run["dataset"], run["root"], sizes=tuple(sizes) if sizes else None)


def build_model(run: dict, num_classes: Optional[int] = None):
    """Build the untrained model that the run record names."""
    if run["task"] == "modelnet":
        return build_point_model(run["model"], num_classes or run["num_classes"], run["channels"],
                                 run["layers"], run["heads"], run["k"],
                                 num_registers=run["registers"])
    return build_molecule_model(run["model"], run["channels"], run["layers"], run["heads"],
                                run["k"], num_registers=run["registers"])


def read_run(out_dir: os.PathLike) -> dict:
    """Read the run record that :func:`train` wrote into ``out_dir``."""
    path = Path(out_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No run record at '{path}'. Pass the output folder of "
                                f"'samsa-geo train', which contains {RUN_FILE} and best.pt.")
    return json.loads(path.read_text())


def train(run: dict, config: TrainConfig, log: Callable[[str], None] = print) -> Results:
    """Train the model a run record describes and return its results.

    ``run`` contains the task (``"modelnet"`` or ``"zinc"``), the data set, the
    model and its sizes, and ``out_dir``. It is written to
    ``out_dir/run.json`` before training starts, so that the visualization
    and a resumed run rebuild the same model.
    """
    if run["task"] not in TASKS:
        raise ValueError(f"Unknown task {run['task']!r}. Use one of {TASKS}.")

    train_set, val_set, test_set = load_datasets(run)
    loaders = make_loaders(train_set, val_set, test_set, config)
    check_loaders(*loaders)

    if run["task"] == "modelnet":
        run["num_classes"] = int(train_set.num_classes)
        task = Task("classification")
    else:
        task = Task("regression")

    out_dir = Path(run["out_dir"])
    _check_same_run(run, out_dir)

    # Seed before the weights are drawn, so that the same seed gives the same run.
    torch_geometric.seed_everything(config.seed)
    model = build_model(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    if _is_rank_zero():
        (out_dir / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")

    log = log if _is_rank_zero() else (lambda line: None)
    log(f"{run['model']} on {run['dataset']}: {len(train_set)} train / {len(val_set)} val / "
        f"{len(test_set)} test graphs, {count_parameters(model):,} parameters")
    return fit(model, *loaders, task=task, config=config, out_dir=out_dir, log=log)


def _check_same_run(run: dict, out_dir: Path) -> None:
    path = out_dir / RUN_FILE
    if not path.is_file():
        return

    saved = json.loads(path.read_text())
    changed = [f"{key}={saved.get(key)!r} -> {run.get(key)!r}" for key in FIXED_SETTINGS
               if saved.get(key) != run.get(key)]
    if changed:
        raise ValueError(
            f"'{out_dir}' contains a run with other settings ({', '.join(changed)}). Use a new "
            f"--out folder, or repeat the original settings to resume that run.")


def _is_rank_zero() -> bool:
    # torchrun sets RANK for every process; a plain run has none.
    return os.environ.get("RANK", "0") == "0"
