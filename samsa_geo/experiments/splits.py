"""Validation splits carved from a training set, so that model selection
never looks at the test split."""

from typing import List, Sequence, Tuple

import torch


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> Tuple[List[int], List[int]]:
    """Split indices into ``(train, val)``, taking ``fraction`` of every class
    for validation (at least one item of every class with two or more items).

    The same labels, fraction and seed always give the same split.

    Args:
        labels (Sequence[int]): Class of every item.
        fraction (float): Share of each class that goes to validation, in
            (0, 1).
        seed (int): Seed of the shuffle inside each class.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"'fraction' must lie in (0, 1), got {fraction!r}.")

    labels = torch.as_tensor(list(labels), dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []

    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).view(-1)
        members = members[torch.randperm(members.numel(), generator=generator)]

        count = int(round(fraction * members.numel()))
        if members.numel() >= 2:
            count = min(max(count, 1), members.numel() - 1)
        else:
            count = 0
        val += members[:count].tolist()
        train += members[count:].tolist()

    return sorted(train), sorted(val)
