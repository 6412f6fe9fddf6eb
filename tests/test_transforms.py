import math
import random

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.transforms import Compose, NormalizeScale, SamplePoints

from samsa_geo.backend import has, pure_pytorch
from samsa_geo.transforms import (
    FarthestPointSample,
    NormalizeToUnitSphere,
    RandomRotateWithNormals,
    modelnet_transforms,
    rotation_matrix,
)


def test_normalize_unit_sphere():
    pos = torch.tensor([[1.0, 1.0, 1.0], [3.0, 1.0, 1.0], [2.0, 4.0, 1.0], [2.0, 2.0, 1.0]])
    data = NormalizeToUnitSphere()(Data(pos=pos.clone()))

    assert torch.allclose(data.pos.mean(dim=0), torch.zeros(3), atol=1e-6)
    assert math.isclose(float(data.pos.norm(dim=-1).max()), 1.0, rel_tol=1e-6)
    expected = (pos - pos.mean(dim=0)) / (pos - pos.mean(dim=0)).norm(dim=-1).max()
    assert torch.allclose(data.pos, expected)


def test_normalize_differs_from_normalize_scale():
    # NormalizeScale bounds the largest coordinate, so a diagonal point ends
    # up outside the unit sphere.
    pos = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    scaled = NormalizeScale()(Data(pos=pos.clone())).pos
    ours = NormalizeToUnitSphere()(Data(pos=pos.clone())).pos
    assert float(scaled.norm(dim=-1).max()) > 1.5
    assert math.isclose(float(ours.norm(dim=-1).max()), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize("num_points", [0, 1, 3])
def test_normalize_degenerate_cloud(num_points):
    pos = torch.ones(num_points, 3)
    data = NormalizeToUnitSphere()(Data(pos=pos))
    assert data.pos.shape == (num_points, 3)
    assert bool(torch.isfinite(data.pos).all())


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_rotation_matrix_right_handed(axis):
    matrix = rotation_matrix(90.0, axis)
    unit = torch.eye(3)
    first, second = (axis + 1) % 3, (axis + 2) % 3
    assert torch.allclose(matrix @ unit[first], unit[second], atol=1e-6)
    assert torch.allclose(matrix @ matrix.t(), torch.eye(3), atol=1e-6)
    assert math.isclose(float(torch.linalg.det(matrix)), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_rotate_turns_normals(axis):
    torch.manual_seed(0)
    pos = torch.randn(20, 3)
    normal = torch.nn.functional.normalize(torch.randn(20, 3), dim=-1)
    data = Data(pos=pos.clone(), normal=normal.clone())

    random.seed(1)
    out = RandomRotateWithNormals((30.0, 30.0), axis=axis)(data)
    matrix = rotation_matrix(30.0, axis)

    assert torch.allclose(out.pos, pos @ matrix.t(), atol=1e-6)
    assert torch.allclose(out.normal, normal @ matrix.t(), atol=1e-6)
    assert torch.allclose((out.pos * out.normal).sum(-1), (pos * normal).sum(-1), atol=1e-5)
    assert torch.allclose(out.pos[:, axis], pos[:, axis])


def test_rotate_without_normals_and_repr():
    transform = RandomRotateWithNormals(180, axis=2)
    data = transform(Data(pos=torch.randn(5, 3)))
    assert "normal" not in data
    assert repr(transform) == "RandomRotateWithNormals((-180, 180), axis=2)"
    with pytest.raises(ValueError, match="'axis'"):
        RandomRotateWithNormals(10, axis=3)


def test_fps_keeps_point_attributes():
    torch.manual_seed(0)
    pos = torch.randn(50, 3)
    normal = torch.randn(50, 3)
    data = Data(pos=pos, normal=normal, y=torch.tensor([4]))
    out = FarthestPointSample(10)(data)

    assert out.pos.shape == (10, 3)
    assert out.normal.shape == (10, 3)
    assert out.y.tolist() == [4]
    index = [int((pos == row).all(dim=1).nonzero()) for row in out.pos]
    assert torch.equal(out.normal, normal[index])
    assert index[0] == 0
    assert repr(FarthestPointSample(10)) == "FarthestPointSample(10, random_start=False)"


def test_fps_small_cloud_keeps_all():
    out = FarthestPointSample(8)(Data(pos=torch.randn(3, 3)))
    assert out.pos.shape == (3, 3)


@pytest.mark.skipif(not has("torch_cluster"), reason="torch-cluster is not installed")
def test_fps_transform_backends_agree():
    torch.manual_seed(0)
    pos = torch.randn(200, 3)
    fast = FarthestPointSample(32)(Data(pos=pos.clone())).pos
    with pure_pytorch():
        pure = FarthestPointSample(32)(Data(pos=pos.clone())).pos
    assert torch.equal(fast, pure)


def square_mesh():
    pos = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [2.0, 2.0, 0.0], [0.0, 2.0, 0.0]])
    face = torch.tensor([[0, 0], [1, 2], [2, 3]])
    return Data(pos=pos, face=face, y=torch.tensor([1]))


@pytest.mark.parametrize("fps_points", [None, 16])
def test_modelnet_transforms_pre_transform(fps_points):
    pre_transform, transform = modelnet_transforms(num_points=64, fps_points=fps_points)
    data = pre_transform(square_mesh())
    num = fps_points or 64

    assert isinstance(pre_transform, Compose)
    assert isinstance(pre_transform.transforms[0], SamplePoints)
    assert data.pos.shape == (num, 3)
    assert data.normal.shape == (num, 3)
    assert "face" not in data
    assert torch.allclose(data.normal.abs(), torch.tensor([0.0, 0.0, 1.0]).expand(num, 3))
    assert float(data.pos.norm(dim=-1).max()) <= 1.0 + 1e-6

    out = transform(data)
    assert out.pos.shape == (num, 3)
    assert torch.allclose(out.normal.abs(), torch.tensor([0.0, 0.0, 1.0]).expand(num, 3),
                          atol=1e-6)


def test_modelnet_transforms_augment_up_axis():
    torch.manual_seed(0)
    random.seed(0)
    pre_transform, transform = modelnet_transforms(num_points=32, jitter=0.0, scales=(1.0, 1.0))
    data = pre_transform(square_mesh())
    before = data.pos.clone()
    out = transform(data)

    assert torch.allclose(out.pos[:, 2], before[:, 2], atol=1e-6)
    assert torch.allclose(out.pos.norm(dim=-1), before.norm(dim=-1), atol=1e-5)
    assert not torch.allclose(out.pos, before)


def test_modelnet_transforms_test_split():
    _, transform = modelnet_transforms(train=False)
    assert transform is None


def test_modelnet_transforms_invalid():
    with pytest.raises(ValueError, match="'fps_points'"):
        modelnet_transforms(num_points=64, fps_points=128)
    with pytest.raises(ValueError, match="'up_axis'"):
        modelnet_transforms(up_axis=3)
