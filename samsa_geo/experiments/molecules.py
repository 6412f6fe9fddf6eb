"""Molecular property regression recipe: data sets and models."""

import os
from typing import Optional, Tuple

import torch
from torch_geometric.data import Dataset
from torch_geometric.transforms import AddRandomWalkPE

from samsa_geo.datasets import ZINC, MosesZINC
from samsa_geo.models import GPSGraphModel, SAMSAGraphModel

DATASETS = ("moses", "zinc", "zinc-full")
MODELS = ("samsa", "gps")
WALK_LENGTH = 20


def load_molecule_datasets(name: str, root: Optional[str],
                           sizes: Optional[Tuple[int, int, int]] = None
                           ) -> Tuple[Dataset, Dataset, Dataset]:
    """Build the train, validation and test splits of a molecule data set,
    each graph with a random-walk structural encoding ``pe`` of length 20.

    Args:
        name (str): ``"moses"`` (the embedded ZINC-like set built from the
            MOSES SMILES), ``"zinc"`` (PyG's ZINC 12k subset) or
            ``"zinc-full"`` (all 250k graphs), the last two from raw files
            under :obj:`root`.
        root (str, optional): The data set's folder, as PyG's ``ZINC`` takes
            it: raw files in ``root/raw`` (or the archive ``molecules.zip`` in
            :obj:`root`). ``"zinc"`` and ``"zinc-full"`` share one folder.
            Required for them; ``"moses"`` defaults to ``data/moses_zinc``.
        sizes (tuple of int, optional): Train, validation and test sizes of
            ``"moses"``. (default: 10,000 / 1,000 / 1,000)
    """
    pe = AddRandomWalkPE(WALK_LENGTH, attr_name="pe")

    if name == "moses":
        kwargs = {} if sizes is None else {"sizes": tuple(sizes)}
        make = lambda split: MosesZINC(root or os.path.join("data", "moses_zinc"),  # noqa: E731
                                       split=split, pre_transform=pe, log=False, **kwargs)
    elif name in ("zinc", "zinc-full"):
        if root is None:
            raise ValueError(f"--dataset {name} requires --root DIR, the folder that contains "
                             f"ZINC's raw files in DIR/raw or the archive DIR/molecules.zip.")
        make = lambda split: ZINC(root, subset=name == "zinc", split=split,  # noqa: E731
                                  pre_transform=pe)
    else:
        raise ValueError(f"Unknown molecule dataset {name!r}. Use one of {DATASETS}.")

    return make("train"), make("val"), make("test")


def build_molecule_model(name: str, channels: int = 64, num_layers: int = 10, heads: int = 4,
                         k: int = 16, num_registers: int = 0) -> torch.nn.Module:
    """Build a molecule regressor by name: ``"samsa"``
    (:class:`~samsa_geo.models.SAMSAGraphModel`) or ``"gps"``
    (:class:`~samsa_geo.models.GPSGraphModel`, PyG's GPSConv with full
    multihead attention)."""
    if name == "samsa":
        return SAMSAGraphModel(1, channels=channels, num_layers=num_layers, heads=heads, k=k,
                               walk_length=WALK_LENGTH, num_registers=num_registers)
    if name == "gps":
        return GPSGraphModel(1, channels=channels, num_layers=num_layers, heads=heads,
                             walk_length=WALK_LENGTH)
    raise ValueError(f"Unknown molecule model {name!r}. Use one of {MODELS}.")
