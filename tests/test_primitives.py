import filecmp
import os
import os.path as osp
from collections import Counter

import numpy as np
import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from samsa_geo.datasets import (
    PRIMITIVE_SHAPES,
    PrimitiveShapes,
    block_network,
    make_primitive,
    read_off,
    write_primitive_modelnet,
)
from samsa_geo.transforms import modelnet_transforms


def signed_volume(pos, face):
    # Positive for a closed mesh whose faces point outwards.
    a, b, c = pos[face[0]].double(), pos[face[1]].double(), pos[face[2]].double()
    return float((a * torch.cross(b, c, dim=1)).sum() / 6)


@pytest.mark.parametrize("shape", PRIMITIVE_SHAPES)
def test_primitive_closed_and_outward(shape):
    pos, face = make_primitive(shape, np.random.default_rng(3), noise=0.0)
    edges = Counter()
    for a, b, c in face.t().tolist():
        for u, v in ((a, b), (b, c), (c, a)):
            edges[(min(u, v), max(u, v))] += 1

    assert pos.dtype == torch.float32
    assert face.shape[0] == 3
    assert set(edges.values()) == {2}
    assert signed_volume(pos, face) > 0


@pytest.mark.parametrize("shape", PRIMITIVE_SHAPES)
def test_primitive_random_size_and_rotation(shape):
    rng = np.random.default_rng(0)
    first, _ = make_primitive(shape, rng)
    second, _ = make_primitive(shape, rng)
    assert first.shape == second.shape
    assert not torch.allclose(first, second)


def test_primitive_invalid_arguments():
    with pytest.raises(ValueError, match="'shape'"):
        make_primitive("pyramid")
    with pytest.raises(ValueError, match="'segments'"):
        make_primitive("sphere", segments=2)
    with pytest.raises(ValueError, match="'num_train_per_class'"):
        write_primitive_modelnet("/nonexistent", num_train_per_class=0)


def test_primitive_layout_and_numbering(tmp_path):
    raw_dir = write_primitive_modelnet(str(tmp_path), num_train_per_class=2, num_test_per_class=1)
    assert raw_dir == osp.join(str(tmp_path), "raw")
    for shape in PRIMITIVE_SHAPES:
        assert sorted(os.listdir(osp.join(raw_dir, shape, "train"))) == [
            f"{shape}_0001.off", f"{shape}_0002.off"]
        assert os.listdir(osp.join(raw_dir, shape, "test")) == [f"{shape}_0003.off"]

    data = read_off(osp.join(raw_dir, "torus", "test", "torus_0003.off"))
    assert data.face.size(1) > 0


def test_primitive_same_seed_same_files(tmp_path):
    write_primitive_modelnet(str(tmp_path / "a"), 2, 1, seed=5)
    write_primitive_modelnet(str(tmp_path / "b"), 2, 1, seed=5)
    write_primitive_modelnet(str(tmp_path / "c"), 2, 1, seed=6)
    name = osp.join("raw", "cone", "train", "cone_0002.off")
    assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False)
    assert not filecmp.cmp(tmp_path / "a" / name, tmp_path / "c" / name, shallow=False)


def test_primitive_dataset_offline(tmp_path):
    pre_transform, transform = modelnet_transforms(num_points=128)
    with block_network():
        train = PrimitiveShapes(str(tmp_path), True, 3, 2, transform=transform,
                                pre_transform=pre_transform)
        test = PrimitiveShapes(str(tmp_path), False, 3, 2, pre_transform=pre_transform)

    assert str(train) == "PrimitiveShapes(15)"
    assert len(test) == 10
    assert train.classes == list(PRIMITIVE_SHAPES)
    assert train.num_classes == 5

    batch = next(iter(DataLoader(test, batch_size=10)))
    assert batch.pos.shape == (1280, 3)
    assert batch.y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    radius = batch.pos.norm(dim=-1)
    assert torch.allclose(torch.stack([radius[batch.batch == b].max() for b in range(10)]),
                          torch.ones(10), atol=1e-5)


def test_primitive_sampled_normals_outward(tmp_path):
    pre_transform, _ = modelnet_transforms(num_points=256)
    pos, face = make_primitive("sphere", np.random.default_rng(0), noise=0.0)
    data = pre_transform(Data(pos=pos, face=face))
    cosine = (data.normal * torch.nn.functional.normalize(data.pos, dim=-1)).sum(-1)
    assert bool((cosine > 0.9).all())
