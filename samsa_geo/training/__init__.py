"""Training loop, checkpoints and data-parallel helpers for samsa_geo
examples.

The entry point is :func:`fit`. A typical script builds the loaders with
:func:`make_loaders`, checks them with :func:`check_loaders` before building
the model, and calls::

    results = fit(model, train_loader, val_loader, test_loader,
                  Task("regression"), TrainConfig(epochs=100), "runs/zinc")
"""

from samsa_geo.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from samsa_geo.training.config import TrainConfig
from samsa_geo.training.loaders import check_loaders, check_out_dir, make_loaders
from samsa_geo.training.loop import NonFiniteLossError, Results, evaluate, fit
from samsa_geo.training.schedule import warmup_cosine, warmup_cosine_factor
from samsa_geo.training.task import Task

__all__ = [
    "fit",
    "evaluate",
    "Results",
    "NonFiniteLossError",
    "Task",
    "TrainConfig",
    "make_loaders",
    "check_loaders",
    "check_out_dir",
    "save_checkpoint",
    "load_checkpoint",
    "CheckpointError",
    "read_checkpoint",
    "warmup_cosine",
    "warmup_cosine_factor",
]
