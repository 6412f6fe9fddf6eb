"""Per-epoch records: the :obj:`metrics.jsonl` file, the one-line summary
and the learning-curve plot."""

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "learning_curve.png"


class RunningMean:
    """Mean of values weighted by a count, such as a loss over graphs."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, value: float, count: int) -> None:
        self.total += value * count
        self.count += count

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count > 0 else math.nan


def write_history(history: List[Dict[str, Any]], path: os.PathLike) -> None:
    """Rewrite :obj:`path` with one JSON line per epoch record.

    A resumed run calls this so that lines of an epoch that was cut short
    disappear from the file.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        for record in history:
            f.write(json.dumps(record) + "\n")
    os.replace(tmp, path)


def append_record(record: Dict[str, Any], path: os.PathLike) -> None:
    """Append one epoch record to the JSON-lines file :obj:`path`."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def format_record(record: Dict[str, Any], metric_name: str) -> str:
    """Return a one-line summary of an epoch record."""
    return (
        f"epoch {record['epoch']:3d} | step {record['step']:6d} | lr {record['lr']:.2e} | "
        f"loss {record['train_loss']:.4f} | train {metric_name} {record['train_metric']:.4f} | "
        f"val {metric_name} {record['val_metric']:.4f} | {record['time']:.2f} s | "
        f"{record['throughput']:.0f} graphs/s"
    )


def plot_learning_curve(history: List[Dict[str, Any]], path: os.PathLike, metric_name: str) -> Optional[Path]:
    """Plot the training loss and the train and validation metrics per epoch.

    Uses matplotlib's non-interactive Agg backend, so it works without a
    display.

    Returns:
        The path of the PNG file, or :obj:`None` when :obj:`history` is empty.
    """
    if not history:
        return None

    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    epochs = [record["epoch"] for record in history]
    figure = Figure(figsize=(9, 3.5))
    FigureCanvasAgg(figure)
    loss_axes, metric_axes = figure.subplots(1, 2)

    loss_axes.plot(epochs, [record["train_loss"] for record in history], label="train")
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("loss")
    loss_axes.legend()

    metric_axes.plot(epochs, [record["train_metric"] for record in history], label="train")
    metric_axes.plot(epochs, [record["val_metric"] for record in history], label="val")
    metric_axes.set_xlabel("epoch")
    metric_axes.set_ylabel(metric_name)
    metric_axes.legend()

    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return Path(path)
