"""Point-cloud classification recipe: data sets, transforms and models."""

import os
from typing import Optional, Tuple

import torch
from torch_geometric.data import Data, Dataset
from torch_geometric.transforms import BaseTransform, Compose, RandomJitter, RandomScale

from samsa_geo.datasets import ModelNet, PrimitiveShapes, SH3DFurniture
from samsa_geo.experiments.splits import stratified_split
from samsa_geo.models import FullAttentionPointClassifier, PointNet2Classifier, SAMSAPointClassifier
from samsa_geo.transforms import RandomRotateWithNormals, modelnet_transforms

DATASETS = ("cad", "modelnet10", "modelnet40", "primitives")
MODELS = ("samsa", "full", "pointnet2")


class SubsamplePoints(BaseTransform):
    r"""Keep :obj:`num` points of a cloud with every per-point attribute.

    With :obj:`random=True` the points are a fresh uniform draw without
    replacement on every call, from PyTorch's global generator. Otherwise the
    first :obj:`num` points are kept, which is a uniform subset for clouds
    sampled uniformly on a surface, and the same on every call.

    Args:
        num (int): Points to keep. Clouds with fewer points keep all.
        random (bool, optional): Draw the subset at random.
            (default: :obj:`False`)
    """

    def __init__(self, num: int, random: bool = False):
        if num <= 0:
            raise ValueError(f"'num' must be a positive number of points, got {num!r}.")
        self.num = num
        self.random = random

    def forward(self, data: Data) -> Data:
        n = data.pos.size(0)
        if n <= self.num:
            return data

        index = torch.randperm(n)[:self.num] if self.random else torch.arange(self.num)
        for key in ("pos", "normal", "x"):
            if getattr(data, key, None) is not None:
                data[key] = data[key][index]
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.num}, random={self.random})"


def augmentations(up_axis: int = 2) -> Compose:
    """Training augmentations: a random rotation about the up axis that turns
    the normals too, a random scale and a small jitter."""
    return Compose([RandomRotateWithNormals(180, axis=up_axis), RandomScale((0.8, 1.25)),
                    RandomJitter(0.01)])


def _labels(dataset: Dataset) -> list:
    return [int(data.y) for data in dataset]


def load_point_datasets(name: str, root: Optional[str], num_points: int, seed: int = 0,
                        val_fraction: float = 0.15) -> Tuple[Dataset, Dataset, Dataset]:
    """Build the train, validation and test splits of a point-cloud data set.

    The validation split is a stratified share of the training split, so
    that model selection never uses the test split. Training items get a
    fresh random subset of :obj:`num_points` points and augmentations on
    every access; validation and test items are fixed.

    Args:
        name (str): ``"cad"`` (the embedded Sweet Home 3D furniture shapes),
            ``"modelnet10"``, ``"modelnet40"`` (PyG's ModelNet from raw files
            under :obj:`root`) or ``"primitives"`` (generated shapes).
        root (str, optional): Data folder. Not needed for ``"cad"``.
        num_points (int): Points per cloud.
        seed (int, optional): Seed of the validation split. (default: :obj:`0`)
        val_fraction (float, optional): Share of each class used for
            validation. (default: :obj:`0.15`)
    """
    train_transform = Compose([SubsamplePoints(num_points, random=True), augmentations()])
    eval_transform = SubsamplePoints(num_points)

    if name == "cad":
        make = lambda split, transform: SH3DFurniture(  # noqa: E731
            root=None if root is None else os.path.join(root, "sh3d_furniture"),
            split=split, transform=transform, log=False)
        train_full, val_full = make("train", train_transform), make("train", eval_transform)
        test = make("test", eval_transform)
    elif name in ("modelnet10", "modelnet40", "primitives"):
        if root is None:
            raise ValueError(f"--dataset {name} requires --root DIR, the folder that contains "
                             f"its raw files.")
        pre_transform, _ = modelnet_transforms(num_points=num_points, train=False)
        if name == "primitives":
            make = lambda train, transform: PrimitiveShapes(  # noqa: E731
                os.path.join(root, "primitives"), train=train, transform=transform,
                pre_transform=pre_transform)
        else:
            make = lambda train, transform: ModelNet(  # noqa: E731
                root, name=name[len("modelnet"):], train=train, transform=transform,
                pre_transform=pre_transform)
        train_full, val_full = make(True, augmentations()), make(True, None)
        test = make(False, None)
    else:
        raise ValueError(f"Unknown point-cloud dataset {name!r}. Use one of {DATASETS}.")

    train_index, val_index = stratified_split(_labels(val_full), val_fraction, seed)
    return train_full[train_index], val_full[val_index], test


def build_point_model(name: str, num_classes: int, channels: int = 128, num_layers: int = 4,
                      heads: int = 4, k: int = 128, use_normals: bool = True,
                      num_registers: int = 0) -> torch.nn.Module:
    """Build a point-cloud classifier by name: ``"samsa"``
    (:class:`~samsa_geo.models.SAMSAPointClassifier`), ``"full"`` (the same
    architecture with full attention) or ``"pointnet2"``."""
    if name == "samsa":
        return SAMSAPointClassifier(num_classes, channels=channels, num_layers=num_layers,
                                    heads=heads, k=k, use_normals=use_normals,
                                    num_registers=num_registers)
    if name == "full":
        return FullAttentionPointClassifier(num_classes, channels=channels, num_layers=num_layers,
                                            heads=heads, use_normals=use_normals)
    if name == "pointnet2":
        return PointNet2Classifier(num_classes, use_normals=use_normals)
    raise ValueError(f"Unknown point-cloud model {name!r}. Use one of {MODELS}.")
