import json
import time

import pytest

from samsa_geo.cli import main

TINY_POINTS = ["--channels", "16", "--layers", "1", "--heads", "2", "--k", "8", "--points", "64",
               "--batch-size", "32", "--no-progress"]
TINY_MOLECULES = ["--channels", "16", "--layers", "1", "--heads", "2", "--k", "4",
                  "--sizes", "40", "10", "10", "--batch-size", "16", "--no-progress"]


@pytest.fixture(scope="module")
def point_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("points") / "run"
    assert main(["train", "modelnet", "--out", str(out), "--epochs", "1", *TINY_POINTS]) == 0
    return out


def test_cli_train_modelnet_outputs(point_run, capsys):
    results = json.loads((point_run / "results.json").read_text())
    run = json.loads((point_run / "run.json").read_text())

    assert results["metric"] == "acc"
    assert 0.0 <= results["test_metric"] <= 1.0
    assert run["dataset"] == "cad"
    assert run["num_classes"] == 8
    for name in ("best.pt", "last.pt", "metrics.jsonl", "learning_curve.png"):
        assert (point_run / name).is_file(), name


def test_cli_visualize_cloud_and_grid(point_run, tmp_path):
    single, grid = tmp_path / "cloud.png", tmp_path / "grid.png"

    assert main(["visualize", "--run", str(point_run), "--index", "2", "--out", str(single)]) == 0
    assert main(["visualize", "--run", str(point_run), "--grid", "4", "--out", str(grid)]) == 0

    assert single.stat().st_size > 0
    assert single.with_suffix(".ply").stat().st_size > 0
    assert grid.stat().st_size > 0


def test_cli_visualize_bad_index(point_run, tmp_path, capsys):
    code = main(["visualize", "--run", str(point_run), "--index", "999", "--out",
                 str(tmp_path / "x.png")])

    assert code == 2
    assert "'index' must lie in [0, 49]" in capsys.readouterr().err


def test_cli_train_zinc_and_draw_molecule(tmp_path):
    out = tmp_path / "run"
    args = ["train", "zinc", "--out", str(out), "--root", str(tmp_path / "moses"), "--epochs", "1"]

    assert main([*args, *TINY_MOLECULES]) == 0
    assert json.loads((out / "results.json").read_text())["metric"] == "mae"

    picture = tmp_path / "molecule.svg"
    assert main(["visualize", "--run", str(out), "--index", "0", "--out", str(picture)]) == 0
    assert "<svg" in picture.read_text()


@pytest.mark.parametrize("extra, message", [
    (["--epochs", "0"], "epochs"),
    (["--batch-size", "100000"], "batch"),
    (["--model", "resnet"], "resnet"),
])
def test_cli_train_bad_options(tmp_path, capsys, extra, message):
    code = main(["train", "modelnet", "--out", str(tmp_path / "run"), *TINY_POINTS, *extra])

    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_modelnet_without_files_fails_fast(tmp_path, capsys):
    start = time.perf_counter()
    code = main(["train", "modelnet", "--dataset", "modelnet10", "--root", str(tmp_path / "mn"),
                 "--out", str(tmp_path / "run"), *TINY_POINTS])
    elapsed = time.perf_counter() - start

    err = capsys.readouterr().err
    assert code == 2
    assert "http" in err
    assert str(tmp_path / "mn") in err
    assert elapsed < 30


def test_cli_same_seed_same_run(point_run, tmp_path):
    again = tmp_path / "again"
    assert main(["train", "modelnet", "--out", str(again), "--epochs", "1", *TINY_POINTS]) == 0

    first = (point_run / "metrics.jsonl").read_text().splitlines()[0]
    second = (again / "metrics.jsonl").read_text().splitlines()[0]
    assert json.loads(first)["train_loss"] == json.loads(second)["train_loss"]
    assert json.loads(first)["val_metric"] == json.loads(second)["val_metric"]


def test_cli_other_settings_keep_run(point_run, capsys):
    before = (point_run / "run.json").read_text()
    wider = [arg if arg != "16" else "32" for arg in TINY_POINTS]

    code = main(["train", "modelnet", "--out", str(point_run), "--epochs", "1", *wider])

    assert code == 2
    assert "channels=16 -> 32" in capsys.readouterr().err
    assert (point_run / "run.json").read_text() == before
