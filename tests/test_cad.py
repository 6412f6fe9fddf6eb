import csv
import importlib.util
import os
import os.path as osp
import shutil
import zipfile

import numpy as np
import pytest
import torch
import torch_geometric.transforms as T
from torch_geometric.loader import DataLoader

from samsa_geo.datasets import SH3DFurniture
from samsa_geo.datasets.cad import default_npz_path, read_sh3d_npz

REPO_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
BUILD_SCRIPT = osp.join(REPO_DIR, "datasets", "build_cad_dataset.py")
ATTRIBUTION_CSV = osp.join(REPO_DIR, "datasets", "sh3d_furniture_ATTRIBUTION.csv")
FURNITURE_DIR = os.environ.get("SH3D_FURNITURE_DIR", "/usr/share/sweethome3d/furniture")

# float16 keeps 11 significant bits: a relative rounding error of at most
# 2**-11 per coordinate, so norms of unit vectors stay within about 1e-3.
FLOAT16_TOL = 2e-3


def load_build_script():
    spec = importlib.util.spec_from_file_location("build_cad_dataset", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = load_build_script()


@pytest.fixture(scope="module")
def sh3d_train():
    return SH3DFurniture(split="train")


@pytest.fixture(scope="module")
def sh3d_test():
    return SH3DFurniture(split="test")


# ---------------------------------------------------------------------------
# Loader on the committed file
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_sh3d_dataloader_batches(split):
    dataset = SH3DFurniture(split=split)
    loader = DataLoader(dataset, batch_size=8, shuffle=True)

    seen = 0
    for batch in loader:
        assert batch.pos.dtype == torch.float32
        assert batch.normal.shape == batch.pos.shape
        assert batch.y.dtype == torch.long
        assert batch.y.shape == (batch.num_graphs,)
        assert batch.pos.shape[0] == 2048 * batch.num_graphs
        assert torch.equal(batch.ptr, torch.arange(batch.num_graphs + 1) * 2048)
        seen += batch.num_graphs
    assert seen == len(dataset)


def test_sh3d_item_layout(sh3d_train):
    data = sh3d_train[0]

    assert data.pos.shape == (2048, 3)
    assert data.normal.shape == (2048, 3)
    assert data.pos.dtype == torch.float32
    assert data.normal.dtype == torch.float32
    assert data.y.shape == (1,)
    assert data.y.dtype == torch.long


def test_sh3d_class_counts(sh3d_train, sh3d_test):
    assert sh3d_train.classes == sh3d_test.classes
    assert sh3d_train.num_classes == len(sh3d_train.classes)
    assert sh3d_train.num_classes >= 8

    train_counts = torch.bincount(sh3d_train.y, minlength=sh3d_train.num_classes)
    test_counts = torch.bincount(sh3d_test.y, minlength=sh3d_test.num_classes)
    for name, train_count, test_count in zip(sh3d_train.classes, train_counts, test_counts):
        assert train_count + test_count >= 15, name
        assert test_count >= 1, name
        assert train_count > test_count, name


def test_sh3d_splits_disjoint(sh3d_train, sh3d_test):
    train_names = set(sh3d_train.shape_names)
    test_names = set(sh3d_test.shape_names)

    assert len(train_names) == len(sh3d_train)
    assert len(test_names) == len(sh3d_test)
    assert not train_names & test_names


@pytest.mark.parametrize("split", ["train", "test"])
def test_sh3d_points_unit_sphere(split):
    dataset = SH3DFurniture(split=split)
    pos = torch.stack([data.pos for data in dataset])

    assert torch.isfinite(pos).all()
    radius = pos.norm(dim=-1).max(dim=1).values
    assert (radius <= 1 + FLOAT16_TOL).all()
    assert (radius >= 1 - FLOAT16_TOL).all()
    assert pos.mean(dim=1).abs().max() < 1e-2


@pytest.mark.parametrize("split", ["train", "test"])
def test_sh3d_normals_unit(split):
    dataset = SH3DFurniture(split=split)
    normal = torch.stack([data.normal for data in dataset])

    assert torch.isfinite(normal).all()
    assert (normal.norm(dim=-1) - 1).abs().max() < FLOAT16_TOL


def test_sh3d_shapes_distinct(sh3d_train):
    # Two identical clouds would mean a model was sampled twice.
    pos = torch.stack([data.pos for data in sh3d_train])
    flat = pos.reshape(len(sh3d_train), -1)
    assert torch.unique(flat, dim=0).shape[0] == len(sh3d_train)


def test_sh3d_attribution_covers_shapes(sh3d_train, sh3d_test):
    with open(ATTRIBUTION_CSV, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    arrays = read_sh3d_npz(default_npz_path())
    classes = arrays["classes"].tolist()

    assert len(rows) == len(arrays["shape_names"])
    assert [row["shape"] for row in rows] == arrays["shape_names"].tolist()
    assert [row["class"] for row in rows] == [classes[i] for i in arrays["labels"]]
    assert [row["split"] for row in rows] == arrays["split"].tolist()
    loaded_names = set(sh3d_train.shape_names) | set(sh3d_test.shape_names)
    assert set(row["shape"] for row in rows) == loaded_names
    for row in rows:
        assert row["name"], row["shape"]
        assert row["creator"], row["shape"]
        assert row["license"] in ("CC0-1.0", "CC-BY-3.0", "CC-BY-3.0-US"), row["shape"]


def test_sh3d_transforms_applied():
    dataset = SH3DFurniture(
        split="test",
        pre_transform=T.FixedPoints(256, replace=False),
        transform=T.NormalizeScale(),
    )
    data = dataset[0]

    assert data.pos.shape == (256, 3)
    assert data.normal.shape == (256, 3)
    assert data.pos.abs().max() == pytest.approx(1.0, abs=1e-5)


def test_sh3d_pre_filter_keeps_class():
    dataset = SH3DFurniture(split="train", pre_filter=lambda data: int(data.y) == 0)

    assert len(dataset) > 0
    assert (dataset.y == 0).all()


def test_sh3d_invalid_split_raises():
    with pytest.raises(ValueError, match="'split' 'val'"):
        SH3DFurniture(split="val")


def test_sh3d_repr(sh3d_test):
    assert repr(sh3d_test) == f"SH3DFurniture({len(sh3d_test)}, split='test')"


# ---------------------------------------------------------------------------
# Processed cache and broken source files
# ---------------------------------------------------------------------------


def test_sh3d_cache_written_and_reused(tmp_path):
    first = SH3DFurniture(str(tmp_path), split="test", log=False)
    cache = tmp_path / "processed" / "test.pt"
    modified = cache.stat().st_mtime_ns

    second = SH3DFurniture(str(tmp_path), split="test", log=False)

    assert cache.stat().st_mtime_ns == modified
    assert torch.equal(first[0].pos, second[0].pos)
    assert not [name for name in os.listdir(tmp_path / "processed") if ".tmp" in name]


def test_sh3d_cache_truncated_rebuilt(tmp_path):
    reference = SH3DFurniture(str(tmp_path), split="train", log=False)
    cache = tmp_path / "processed" / "train.pt"
    content = cache.read_bytes()
    cache.write_bytes(content[: len(content) // 2])

    rebuilt = SH3DFurniture(str(tmp_path), split="train", log=False)

    assert cache.read_bytes() == content
    assert len(rebuilt) == len(reference)
    assert torch.equal(rebuilt[5].pos, reference[5].pos)


@pytest.mark.parametrize("name", ["pre_transform.pt", "pre_filter.pt"])
def test_sh3d_cache_truncated_metadata_ignored(tmp_path, name):
    SH3DFurniture(str(tmp_path), split="test", log=False)
    metadata = tmp_path / "processed" / name
    metadata.write_bytes(metadata.read_bytes()[:5])

    reloaded = SH3DFurniture(str(tmp_path), split="test", log=False)

    assert len(reloaded) == len(SH3DFurniture(split="test"))


def test_sh3d_cache_empty_file_rebuilt(tmp_path):
    SH3DFurniture(str(tmp_path), split="test", log=False)
    (tmp_path / "processed" / "test.pt").write_bytes(b"")

    rebuilt = SH3DFurniture(str(tmp_path), split="test", log=False)

    assert len(rebuilt) == len(SH3DFurniture(split="test"))


def test_sh3d_cache_stale_source_rebuilt(tmp_path):
    subset = committed_subset(40)
    npz_path = str(tmp_path / "subset.npz")
    build.write_npz(npz_path, subset)
    root = str(tmp_path / "root")
    small = SH3DFurniture(root, split="train", path=npz_path, log=False)

    shutil.copyfile(default_npz_path(), npz_path)
    full = SH3DFurniture(root, split="train", path=npz_path, log=False)

    assert len(small) == int((subset["split"] == "train").sum())
    assert len(full) == len(SH3DFurniture(split="train"))


def test_sh3d_missing_npz_raises(tmp_path):
    path = str(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError) as info:
        SH3DFurniture(path=path)

    assert path in str(info.value)
    assert "build_cad_dataset.py" in str(info.value)


def test_sh3d_truncated_npz_raises(tmp_path):
    path = tmp_path / "truncated.npz"
    content = open(default_npz_path(), "rb").read()
    path.write_bytes(content[: len(content) // 3])

    with pytest.raises(ValueError) as info:
        SH3DFurniture(path=str(path))

    assert str(path) in str(info.value)
    assert "build_cad_dataset.py" in str(info.value)


def committed_subset(num_shapes):
    arrays = read_sh3d_npz(default_npz_path())
    return {key: value if key == "classes" else value[:num_shapes]
            for key, value in arrays.items()}


def test_sh3d_npz_missing_array_raises(tmp_path):
    arrays = committed_subset(4)
    del arrays["normals"]
    path = str(tmp_path / "no_normals.npz")
    build.write_npz(path, arrays)

    with pytest.raises(ValueError, match="normals"):
        SH3DFurniture(path=path)


def test_sh3d_npz_bad_label_raises(tmp_path):
    arrays = committed_subset(4)
    arrays["labels"] = arrays["labels"].copy()
    arrays["labels"][0] = len(arrays["classes"])
    path = str(tmp_path / "bad_label.npz")
    build.write_npz(path, arrays)

    with pytest.raises(ValueError, match="'labels' has value"):
        SH3DFurniture(path=path)


# ---------------------------------------------------------------------------
# Build script: properties, OBJ parsing, sampling, classification, output
# ---------------------------------------------------------------------------

CUBE_OBJ = """\
# Unit cube [-1, 1]^3, faces counter-clockwise seen from outside.
mtllib cube.mtl
o upper
v -1 -1 -1
v  1 -1 -1
v  1  1 -1
v -1  1 -1
v -1 -1  1
v  1 -1  1
v  1  1  1
v -1  1  1
vt 0 0
vt 1 0
vt 1 1
vt 0 1
vn 0 0 -1
vn 0 0 1
usemtl wood
f 1/1/1 4/4/1 3/3/1 2/2/1
f 5/1/2 6/2/2 7/3/2 8/4/2
g sides
f 1//1 2//1 6//1 5//1
f 2/2 3/3 7/3 6/2
o lower
f 3 4 8 7
f -8/1/1 -4/2/1 -1/3/1 -5/4/1
"""


def write_cube(tmp_path):
    path = tmp_path / "cube.obj"
    path.write_text(CUBE_OBJ)
    return path


def test_obj_parse_cube_quads(tmp_path):
    vertices, faces = build.parse_obj(write_cube(tmp_path).read_text())

    assert vertices.shape == (8, 3)
    assert faces.shape == (12, 3)
    assert faces.min() == 0
    assert faces.max() == 7
    # Every corner is used, and each quad became two triangles.
    assert np.array_equal(np.unique(faces), np.arange(8))


def test_obj_parse_polygon_fan():
    text = "v 0 0 0\nv 1 0 0\nv 2 1 0\nv 1 2 0\nv 0 1 0\nf 1 2 3 4 5\n"
    _, faces = build.parse_obj(text)

    assert faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 4]]


def test_obj_parse_missing_vertex_raises():
    # Vertex 3 is defined after the face, so the face may not use it.
    with pytest.raises(ValueError, match="bad.obj, line 3: face vertex '3'"):
        build.parse_obj("v 0 0 0\nv 1 0 0\nf 1 2 3\nv 1 1 0\n", source="bad.obj")


def test_sample_surface_on_cube_faces(tmp_path):
    vertices, faces = build.parse_obj(write_cube(tmp_path).read_text())
    points, normals = build.sample_surface(vertices, faces, 4000, np.random.default_rng(0))

    assert points.shape == (4000, 3)
    assert np.abs(points).max() <= 1 + 1e-12
    # Each point lies on a face: its largest coordinate is +-1.
    assert np.allclose(np.abs(points).max(axis=1), 1.0)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0)

    # The normal is the outward axis of the face the point lies on.
    axis = np.abs(points).argmax(axis=1)
    expected = np.zeros_like(points)
    expected[np.arange(len(points)), axis] = np.sign(points[np.arange(len(points)), axis])
    assert np.allclose(normals, expected)


def test_sample_surface_area_weighted():
    # Box 4 x 2 x 1: faces normal to x have area 2, to y area 4, to z area 8.
    vertices, faces = build.parse_obj(CUBE_OBJ)
    vertices = vertices * np.array([2.0, 1.0, 0.5])
    num_points = 20000
    _, normals = build.sample_surface(vertices, faces, num_points, np.random.default_rng(1))

    fractions = np.bincount(np.abs(normals).argmax(axis=1), minlength=3) / num_points
    expected = np.array([2.0, 4.0, 8.0]) / 14.0
    # Binomial standard deviation is below 0.0035 here, so 0.015 is over 4 sigma.
    assert np.allclose(fractions, expected, atol=0.015)


def test_sample_surface_drops_degenerate(tmp_path):
    vertices, faces = build.parse_obj(write_cube(tmp_path).read_text())
    # A collinear and a repeated-vertex triangle have zero area.
    faces = np.concatenate([faces, [[0, 1, 1], [0, 0, 0]]])
    points, normals = build.sample_surface(vertices, faces, 2000, np.random.default_rng(2))

    assert np.isfinite(normals).all()
    assert np.allclose(np.abs(points).max(axis=1), 1.0)


def test_sample_surface_all_degenerate_raises():
    vertices = np.zeros((3, 3))
    with pytest.raises(ValueError, match="no triangle with a positive area"):
        build.sample_surface(vertices, np.array([[0, 1, 2]]), 10, np.random.default_rng(0))


def test_sample_surface_seeded():
    vertices, faces = build.parse_obj(CUBE_OBJ)
    first = build.sample_surface(vertices, faces, 100, build.shape_rng("a/b"))
    second = build.sample_surface(vertices, faces, 100, build.shape_rng("a/b"))
    other = build.sample_surface(vertices, faces, 100, build.shape_rng("a/c"))

    assert np.array_equal(first[0], second[0])
    assert not np.array_equal(first[0], other[0])


def test_normalize_unit_sphere():
    points = np.random.default_rng(3).normal(size=(500, 3)) * 7 + 3
    normalized = build.normalize_to_unit_sphere(points)

    assert np.allclose(normalized.mean(axis=0), 0.0)
    assert np.linalg.norm(normalized, axis=1).max() == pytest.approx(1.0)


def test_orient_model_z_up_and_size():
    vertices = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 4.0]])
    model = build.Model("Scopia", "x/y", "Box", "c", "x/y/y.obj", None,
                        width=10.0, depth=30.0, height=20.0)
    oriented = build.orient_model(vertices, model)

    # Y (height) becomes +Z and Z (depth) becomes -Y.
    assert oriented[1].tolist() == [10.0, -30.0, 20.0]


def test_orient_model_rotation():
    vertices = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 2.0]])
    # Quarter turn about Y: (x, y, z) -> (z, y, -x).
    rotation = (0.0, 0.0, 1.0, 0.0, 1.0, 0.0, -1.0, 0.0, 0.0)
    model = build.Model("Scopia", "x/y", "Box", "c", "x/y/y.obj", rotation,
                        width=2.0, depth=1.0, height=1.0)
    oriented = build.orient_model(vertices, model)

    assert np.allclose(oriented[1] - oriented[0], [2.0, 1.0, 1.0])


def test_parse_properties_escapes():
    text = (
        "# comment\n"
        "! other comment\n"
        "name#1=Bill 10\\u20ac\n"
        "name#2 : Long \\\n"
        "    name\n"
        "path#3=C\\:\\\\models\n"
        "empty#4=\n"
    )
    entries = build.parse_properties(text)

    assert entries == {
        "name#1": "Bill 10\u20ac",
        "name#2": "Long name",
        "path#3": "C:\\models",
        "empty#4": "",
    }


def make_model(name, shape="catalog/model"):
    return build.Model("Scopia", shape, name, "c", shape + "/m.obj", None, 1.0, 1.0, 1.0)


@pytest.mark.parametrize("name, expected", [
    ("Armchair", "chair"),
    ("Bedside table", "table"),
    ("Table lamp", "lamp"),
    ("Desk lamp", "lamp"),
    ("Futon couch", "sofa"),
    ("Futon", "bed"),
    ("Double door with panes", "door"),
    ("Doormat", None),
    ("Shower door", None),
    ("Glass door cabinet", None),
    ("Stone lantern", None),
    ("Pool table", None),
    ("Snowman", None),
    ("Woman shoes", None),
    ("Sitting girl", "person"),
    ("Palm tree", "plant"),
    ("Plant box", None),
])
def test_classify_names(name, expected):
    assert build.classify(make_model(name)) == expected


def test_classify_override_wins():
    model = make_model("Opened convertible sofa BZ", "scopia/convertible-sofa-BZ-opened")
    assert build.classify(model) == "bed"


def test_classify_ambiguous_raises():
    with pytest.raises(ValueError, match="matches classes"):
        build.classify(make_model("Chair table"))


def test_stratified_split_per_class():
    labels = np.repeat(np.arange(4), [1, 2, 10, 31]).astype(np.uint8)
    split = build.stratified_split(labels, 4)

    test_counts = [int((split[labels == c] == "test").sum()) for c in range(4)]
    assert test_counts == [0, 1, 2, 6]
    assert np.array_equal(split, build.stratified_split(labels, 4))


def test_write_npz_byte_identical(tmp_path):
    arrays = {"points": np.arange(12, dtype=np.float16).reshape(2, 2, 3),
              "names": np.array(["a/b", "c/d"])}
    first, second = str(tmp_path / "a.npz"), str(tmp_path / "b.npz")
    build.write_npz(first, arrays)
    build.write_npz(second, arrays)

    assert open(first, "rb").read() == open(second, "rb").read()
    with np.load(first, allow_pickle=False) as loaded:
        assert np.array_equal(loaded["points"], arrays["points"])
        assert loaded["names"].tolist() == ["a/b", "c/d"]
    with zipfile.ZipFile(first) as archive:
        assert [info.date_time for info in archive.infolist()] == [build.ZIP_DATE_TIME] * 2


def test_build_missing_dir_prints_help(tmp_path, capsys):
    code = build.main(["--furniture-dir", str(tmp_path / "none"),
                       "--output-dir", str(tmp_path / "out")])

    assert code == 1
    assert "apt-get download sweethome3d-furniture" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.skipif(not osp.isdir(FURNITURE_DIR),
                    reason="sweethome3d-furniture catalogs not installed")
def test_build_catalog_matches_committed(tmp_path):
    code = build.main(["--furniture-dir", FURNITURE_DIR, "--catalogs", "Reallusion",
                       "--output-dir", str(tmp_path)])
    assert code == 0

    rebuilt = read_sh3d_npz(str(tmp_path / "sh3d_furniture.npz"))
    committed = read_sh3d_npz(default_npz_path())
    index = {name: i for i, name in enumerate(committed["shape_names"].tolist())}

    assert len(rebuilt["shape_names"]) == 25
    for i, name in enumerate(rebuilt["shape_names"].tolist()):
        j = index[name]
        assert np.array_equal(rebuilt["points"][i], committed["points"][j]), name
        assert np.array_equal(rebuilt["normals"][i], committed["normals"][j]), name
