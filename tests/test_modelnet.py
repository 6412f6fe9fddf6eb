import os
import os.path as osp
import time
import zipfile

import numpy as np
import pytest
import torch
from torch_geometric.datasets import ModelNet as PyGModelNet
from torch_geometric.io import read_off as pyg_read_off
from torch_geometric.loader import DataLoader

from samsa_geo.datasets import (
    PRIMITIVE_SHAPES,
    ModelNet,
    OffFormatError,
    RawFilesMissingError,
    block_network,
    make_primitive,
    read_off,
    write_off,
)
from samsa_geo.datasets.modelnet import MODELNET10_CLASSES, MODELNET40_CLASSES
from samsa_geo.transforms import modelnet_transforms


def write_modelnet10_fixture(raw_dir, num_train=2, num_test=1, seed=0):
    # Primitive meshes under the ten ModelNet10 class names, numbered as in
    # ModelNet: training files first, test files continue the count.
    rng = np.random.default_rng(seed)
    for i, category in enumerate(MODELNET10_CLASSES):
        index = 1
        for split, count in (("train", num_train), ("test", num_test)):
            folder = osp.join(raw_dir, category, split)
            os.makedirs(folder, exist_ok=True)
            for _ in range(count):
                pos, face = make_primitive(PRIMITIVE_SHAPES[i % 5], rng, segments=8)
                write_off(osp.join(folder, f"{category}_{index:04d}.off"), pos, face)
                index += 1


BAD_FILES = {
    "truncated": "OFF\n4 2 0\n0 0 0\n1 0 0\n",
    "corrupt": "OFF\n3 1 0\n0 0 0\n1 zero 0\n0 1 0\n3 0 1 2\n",
    "empty": "",
    "no_faces": "OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n",
    "degenerate": "OFF\n3 2 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n3 0 0 1\n",
    "nan": "OFF\n3 1 0\n0 0 0\nnan 0 0\n0 1 0\n3 0 1 2\n",
    "bad_index": "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n",
    "not_off": "PLY\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n",
}


def test_read_off_glued_header(tmp_path):
    path = tmp_path / "glued.off"
    path.write_text("OFF3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    data = read_off(str(path))
    assert data.pos.shape == (3, 3)
    assert data.face.tolist() == [[0], [1], [2]]


def test_read_off_crlf_comments_polygons(tmp_path):
    path = tmp_path / "mixed.off"
    text = ("OFF \r\n# a comment\r\n5 2 0\r\n\r\n"
            "0 0 0\r\n1 0 0\r\n1 1 0\r\n0 1 0\r\n0.5 1.5 0\r\n"
            "4 0 1 2 3\r\n5 0 1 2 4 3 255 0 0\r\n")
    path.write_text(text)
    data = read_off(str(path))
    assert data.pos.shape == (5, 3)
    assert data.face.shape == (3, 5)
    assert data.face[:, :2].t().tolist() == [[0, 1, 2], [0, 2, 3]]


def test_read_off_matches_pyg(tmp_path):
    pos, face = make_primitive("sphere", np.random.default_rng(1))
    path = str(tmp_path / "sphere.off")
    write_off(path, pos, face)

    ours, theirs = read_off(path), pyg_read_off(path)
    assert torch.equal(ours.face, theirs.face)
    assert torch.allclose(ours.pos, theirs.pos)
    assert torch.allclose(ours.pos, pos, atol=1e-6)


def test_read_off_drops_degenerate_faces(tmp_path):
    path = tmp_path / "partly.off"
    path.write_text("OFF\n4 3 0\n0 0 0\n1 0 0\n0 1 0\n2 0 0\n3 0 1 2\n3 0 1 3\n3 2 2 1\n")
    data = read_off(str(path))
    assert data.face.t().tolist() == [[0, 1, 2]]


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_read_off_rejects_bad_file(tmp_path, case):
    path = tmp_path / f"{case}.off"
    path.write_text(BAD_FILES[case])
    with pytest.raises(OffFormatError) as info:
        read_off(str(path))
    assert str(path) in str(info.value)


def test_modelnet_offline_with_loader(tmp_path):
    write_modelnet10_fixture(str(tmp_path / "raw"))
    pre_transform, transform = modelnet_transforms(num_points=64, fps_points=32)

    with block_network():
        train = ModelNet(str(tmp_path), "10", True, transform, pre_transform)
        test = ModelNet(str(tmp_path), "10", False, None, pre_transform)

    assert len(train) == 20
    assert len(test) == 10
    assert str(train) == "ModelNet10(20)"
    assert train.skipped == []
    assert test.y.tolist() == list(range(10))

    batch = next(iter(DataLoader(train, batch_size=4, shuffle=False)))
    assert batch.pos.shape == (4 * 32, 3)
    assert batch.normal.shape == (4 * 32, 3)
    assert batch.y.tolist() == [0, 0, 1, 1]
    assert batch.ptr.tolist() == [0, 32, 64, 96, 128]
    assert bool(torch.isfinite(batch.pos).all())
    assert torch.allclose(batch.normal.norm(dim=-1), torch.ones(128), atol=1e-5)


def test_modelnet_item_order_sorted(tmp_path):
    write_modelnet10_fixture(str(tmp_path / "raw"), num_train=3)
    dataset = ModelNet(str(tmp_path), "10", train=True)
    expected = read_off(str(tmp_path / "raw" / "bathtub" / "train" / "bathtub_0002.off"))
    assert torch.equal(dataset[1].pos, expected.pos)
    assert dataset.y.tolist() == sorted(dataset.y.tolist())


@pytest.mark.parametrize("name", ["10", "40"])
def test_modelnet_missing_raw_fails_fast(tmp_path, name):
    start = time.perf_counter()
    with block_network(), pytest.raises(RawFilesMissingError) as info:
        ModelNet(str(tmp_path), name)
    elapsed = time.perf_counter() - start

    message = str(info.value)
    assert PyGModelNet.urls[name] in message
    assert osp.join(str(tmp_path), "raw") in message
    assert osp.join(str(tmp_path), f"ModelNet{name}.zip") in message
    assert elapsed < 5.0
    assert isinstance(info.value, FileNotFoundError)


def test_modelnet_partial_raw_names_missing(tmp_path):
    write_modelnet10_fixture(str(tmp_path / "raw"))
    with pytest.raises(RawFilesMissingError) as info:
        ModelNet(str(tmp_path), "40")
    assert info.value.missing == sorted(set(MODELNET40_CLASSES) - set(MODELNET10_CLASSES))


def test_modelnet_extracts_local_archive(tmp_path):
    source = tmp_path / "source"
    write_modelnet10_fixture(str(source / "ModelNet10"))
    root = tmp_path / "root"
    root.mkdir()
    with zipfile.ZipFile(root / "ModelNet10.zip", "w") as archive:
        for folder, _, files in os.walk(source):
            for name in files:
                path = osp.join(folder, name)
                archive.write(path, osp.relpath(path, source))

    # A class folder already in raw/ is kept as it is.
    kept = root / "raw" / "chair" / "train"
    kept.mkdir(parents=True)
    pos, face = make_primitive("box", np.random.default_rng(9))
    write_off(str(kept / "chair_0001.off"), pos, face)

    with block_network():
        dataset = ModelNet(str(root), "10")
    assert len(dataset) == 19
    assert osp.isdir(root / "raw" / "bed" / "train")
    assert os.listdir(kept) == ["chair_0001.off"]
    assert sorted(os.listdir(root)) == ["ModelNet10.zip", "processed", "raw"]


def test_modelnet_invalid_name(tmp_path):
    with pytest.raises(ValueError, match="'name'"):
        ModelNet(str(tmp_path), "20")


def test_modelnet_skips_bad_files(tmp_path):
    raw_dir = tmp_path / "raw"
    write_modelnet10_fixture(str(raw_dir))
    bad_names = []
    for i, case in enumerate(("truncated", "corrupt", "empty", "degenerate", "nan")):
        name = f"chair_{90 + i:04d}.off"
        (raw_dir / "chair" / "train" / name).write_text(BAD_FILES[case])
        bad_names.append(name)

    with pytest.warns(UserWarning) as records:
        dataset = ModelNet(str(tmp_path), "10")
    messages = [str(record.message) for record in records]

    assert len(dataset) == 20
    assert len(dataset.skipped) == 5
    for name in bad_names:
        assert any(name in message for message in messages)
    assert any("skipped 5 of 25" in message for message in messages)
    assert bool(torch.isfinite(dataset.pos).all())

    # The skip list is stored with the cache and survives a reload.
    reloaded = ModelNet(str(tmp_path), "10")
    assert reloaded.skipped == dataset.skipped


def test_modelnet_strict_raises(tmp_path):
    raw_dir = tmp_path / "raw"
    write_modelnet10_fixture(str(raw_dir))
    bad_path = raw_dir / "sofa" / "test" / "sofa_0099.off"
    bad_path.write_text(BAD_FILES["truncated"])

    with pytest.raises(OffFormatError, match="sofa_0099.off"):
        ModelNet(str(tmp_path), "10", strict=True)


def test_modelnet_skips_nan_after_pre_transform(tmp_path):
    write_modelnet10_fixture(str(tmp_path / "raw"))

    def poison_bed(data):
        if int(data.y) == 1:
            data.pos = data.pos * float("nan")
        return data

    with pytest.warns(UserWarning, match="NaN"):
        dataset = ModelNet(str(tmp_path), "10", pre_transform=poison_bed)
    assert len(dataset) == 18
    assert 1 not in dataset.y.tolist()
    assert bool(torch.isfinite(dataset.pos).all())


def test_modelnet_rebuilds_truncated_cache(tmp_path):
    write_modelnet10_fixture(str(tmp_path / "raw"))
    first = ModelNet(str(tmp_path), "10")
    path = first.processed_paths[0]
    with open(path, "r+b") as file:
        file.truncate(osp.getsize(path) // 2)

    with pytest.warns(UserWarning, match="incomplete or corrupt"):
        second = ModelNet(str(tmp_path), "10")
    assert len(second) == len(first)
    assert torch.equal(second.pos, first.pos)


def test_modelnet_rebuilds_cache_without_marker(tmp_path):
    # A process killed after writing training.pt but before the completion
    # record leaves no complete.json behind.
    write_modelnet10_fixture(str(tmp_path / "raw"))
    first = ModelNet(str(tmp_path), "10")
    os.remove(first.processed_paths[2])
    with open(first.processed_paths[1], "wb") as file:
        file.write(b"half-written")

    with pytest.warns(UserWarning, match="complete.json"):
        second = ModelNet(str(tmp_path), "10", train=False)
    assert len(second) == 10


def test_modelnet_cache_reused_without_processing(tmp_path):
    write_modelnet10_fixture(str(tmp_path / "raw"))
    ModelNet(str(tmp_path), "10")
    processed = tmp_path / "processed" / "training.pt"
    modified = processed.stat().st_mtime_ns

    ModelNet(str(tmp_path), "10")
    assert processed.stat().st_mtime_ns == modified
