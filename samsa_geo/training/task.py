"""The loss, the metric and the model call of a graph-level task."""

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

KINDS = ("classification", "regression")


@dataclass(frozen=True)
class Task:
    r"""A graph-level prediction task: how to call the model, the training
    loss and the metric used for model selection.

    * :obj:`"classification"`: cross-entropy loss on logits of shape
      :obj:`[B, num_classes]` against integer labels :obj:`[B]`, and accuracy.
    * :obj:`"regression"`: L1 loss, and the mean absolute error (MAE).

    Both losses are means over the graphs of a batch, so under DDP the
    gradient average over processes equals the gradient of the combined
    batch when every process gets the same number of graphs.

    Args:
        kind (str): :obj:`"classification"` or :obj:`"regression"`.
        target (str, optional): Attribute of the batch that contains the
            labels. (default: :obj:`"y"`)
        forward (callable, optional): Function :obj:`(model, batch) -> out`
            that runs the model. (default: :obj:`model(batch)`)
    """

    kind: str
    target: str = "y"
    forward: Optional[Callable] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Invalid task kind={self.kind!r}. Expected one of {KINDS}.")

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger metric is better (accuracy) or worse (MAE)."""
        return self.kind == "classification"

    @property
    def metric_name(self) -> str:
        """Short name of the metric: :obj:`"acc"` or :obj:`"mae"`."""
        return "acc" if self.kind == "classification" else "mae"

    def predict(self, model: torch.nn.Module, batch) -> Tuple[Tensor, Tensor]:
        """Run the model on a batch and return :obj:`(out, y)`."""
        out = model(batch) if self.forward is None else self.forward(model, batch)
        y = getattr(batch, self.target)
        return out, y

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """Return the mean loss over the graphs of the batch."""
        if self.kind == "classification":
            return F.cross_entropy(out.float(), y.view(-1).long())
        return F.l1_loss(out.float().view(y.shape), y.float())

    def metric_sum(self, out: Tensor, y: Tensor) -> Tuple[Tensor, int]:
        """Return the metric summed over graphs, and the number of graphs.

        For classification the sum counts the correct predictions. For
        regression it adds up each graph's absolute error, averaged over the
        targets of that graph.
        """
        if self.kind == "classification":
            y = y.view(-1)
            correct = (out.argmax(dim=-1) == y).sum()
            return correct.double(), y.numel()

        y = y.float()
        error = (out.float().view(y.shape) - y).abs().view(y.size(0), -1)
        return error.mean(dim=1).sum().double(), y.size(0)

    def is_better(self, value: float, best: Optional[float]) -> bool:
        """Return whether :obj:`value` strictly improves on :obj:`best`."""
        if best is None:
            return value == value  # False only for NaN
        return value > best if self.higher_is_better else value < best
