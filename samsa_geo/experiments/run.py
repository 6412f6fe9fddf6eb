"""Train one model on one data set and record how to rebuild it."""

import json
import os
from pathlib import Path
from typing import Callable, Optional

from samsa_geo.experiments.molecules import build_molecule_model, load_molecule_datasets
from samsa_geo.experiments.points import build_point_model, load_point_datasets
from samsa_geo.models import count_parameters
from samsa_geo.training import Results, Task, TrainConfig, check_loaders, fit, make_loaders

RUN_FILE = "run.json"
TASKS = ("modelnet", "zinc")


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

    model = build_model(run)
    out_dir = Path(run["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")

    log(f"{run['model']} on {run['dataset']}: {len(train_set)} train / {len(val_set)} val / "
        f"{len(test_set)} test graphs, {count_parameters(model):,} parameters")
    return fit(model, *loaders, task=task, config=config, out_dir=out_dir, log=log)
