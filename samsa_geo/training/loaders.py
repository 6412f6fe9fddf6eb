"""Building and checking the train, validation and test loaders, and the
run directory."""

import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

import torch
from torch_geometric.loader import DataLoader

from samsa_geo.training.config import TrainConfig


def make_loaders(
    train_set: Sequence,
    val_set: Sequence,
    test_set: Optional[Sequence],
    config: TrainConfig,
) -> Tuple[DataLoader, DataLoader, Optional[DataLoader]]:
    """Build PyG data loaders for the three splits.

    The training loader shuffles with its own :class:`torch.Generator`,
    seeded from :obj:`config.seed`, so checkpoints can store and restore the
    data order. The validation and test loaders keep the data set order.

    Args:
        train_set (Sequence): Training graphs.
        val_set (Sequence): Validation graphs.
        test_set (Sequence, optional): Test graphs.
        config (TrainConfig): Provides :obj:`batch_size`,
            :obj:`num_workers` and :obj:`seed`.
    """
    generator = torch.Generator().manual_seed(config.seed)
    common = dict(batch_size=config.batch_size, num_workers=config.num_workers)

    train_loader = DataLoader(train_set, shuffle=True, generator=generator, **common)
    val_loader = DataLoader(val_set, shuffle=False, **common)
    test_loader = DataLoader(test_set, shuffle=False, **common) if test_set is not None else None
    return train_loader, val_loader, test_loader


def check_loaders(train_loader: Any, val_loader: Any, test_loader: Any = None) -> None:
    """Raise a :class:`ValueError` when a loader cannot be used for training.

    Call it before building the model. It rejects an empty split, a loader
    that yields no batch (for example because of :obj:`drop_last`), and a
    training batch size larger than the training set.

    Args:
        train_loader (DataLoader): Training loader.
        val_loader (DataLoader): Validation loader, used for model selection.
        test_loader (DataLoader, optional): Test loader.
    """
    for split, loader in (("train", train_loader), ("val", val_loader), ("test", test_loader)):
        if loader is None and split != "test":
            raise ValueError(f"Missing {split} loader. Pass a DataLoader over the {split} split.")
        if loader is not None:
            _check_one_loader(split, loader)

    batch_size = getattr(train_loader, "batch_size", None)
    num_graphs = _dataset_size(train_loader)
    if batch_size is not None and num_graphs is not None and batch_size > num_graphs:
        raise ValueError(
            f"Invalid batch_size={batch_size} for a training set of {num_graphs} graph(s). "
            f"Use a batch size of at most {num_graphs}, or a larger training set."
        )


def _dataset_size(loader: Any) -> Optional[int]:
    dataset = getattr(loader, "dataset", None)
    try:
        return len(dataset)
    except TypeError:
        return None


def _check_one_loader(split: str, loader: Any) -> None:
    num_graphs = _dataset_size(loader)
    if num_graphs == 0:
        raise ValueError(
            f"The {split} split is empty (0 graphs). Give it at least one graph, for example by "
            f"changing the split sizes."
        )

    try:
        num_batches = len(loader)
    except TypeError:
        return
    if num_batches == 0:
        raise ValueError(
            f"The {split} loader yields no batch from {num_graphs} graph(s). Lower the batch size "
            f"or set drop_last=False."
        )


def check_out_dir(out_dir: os.PathLike) -> Path:
    """Create :obj:`out_dir` if needed and check that files can be written
    in it.

    Returns:
        The directory as a :class:`~pathlib.Path`.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as error:
        raise ValueError(
            f"Invalid out_dir='{out_dir}': it is not a writable directory ({error.strerror}). "
            f"Pass a directory you can write to."
        ) from error
    return out_dir
