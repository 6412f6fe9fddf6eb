import json
import math

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import GCNConv, global_max_pool, global_mean_pool

from samsa_geo.training import (
    NonFiniteLossError,
    Task,
    TrainConfig,
    check_loaders,
    evaluate,
    fit,
    make_loaders,
    read_checkpoint,
    warmup_cosine,
    warmup_cosine_factor,
)
from samsa_geo.training.loop import _build_fabric

CPU = dict(accelerator="cpu", progress=False)


class GraphRegressor(torch.nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.conv1 = GCNConv(-1, hidden)
        self.conv2 = GCNConv(hidden, hidden)
        self.lin = torch.nn.Linear(hidden, 1)

    def forward(self, batch):
        x = self.conv1(batch.x, batch.edge_index).relu()
        x = self.conv2(x, batch.edge_index).relu()
        x = global_mean_pool(x, batch.batch, size=batch.num_graphs)
        return self.lin(x).view(-1)


class CloudClassifier(torch.nn.Module):
    def __init__(self, num_classes: int = 3, hidden: int = 32):
        super().__init__()
        self.mlp = torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden))
        self.head = torch.nn.Linear(hidden, num_classes)

    def forward(self, batch):
        x = global_max_pool(self.mlp(batch.pos), batch.batch, size=batch.num_graphs)
        return self.head(x)


class NaNAtStep(torch.nn.Module):
    """Wraps a model and returns NaN from its ``nan_step``-th training call."""

    def __init__(self, model: torch.nn.Module, nan_step: int):
        super().__init__()
        self.model = model
        self.nan_step = nan_step
        self.calls = 0

    def forward(self, batch):
        out = self.model(batch)
        if self.training:
            self.calls += 1
            if self.calls >= self.nan_step:
                return out * float("nan")
        return out


def path_graph(num_nodes: int, generator: torch.Generator) -> Data:
    x = torch.randn(num_nodes, 4, generator=generator)
    src = torch.arange(max(num_nodes - 1, 0))
    edge_index = torch.stack([torch.cat([src, src + 1]), torch.cat([src + 1, src])])
    y = x.sum().view(1) if num_nodes > 0 else torch.zeros(1)
    return Data(x=x, edge_index=edge_index, y=y)


def molecule_like_graphs(count: int, seed: int = 1) -> list:
    # Sizes 3..9, plus one single-node graph and one empty graph.
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.randint(3, 10, (count,), generator=generator).tolist()
    sizes[1] = 1
    sizes[2] = 0
    return [path_graph(size, generator) for size in sizes]


def point_clouds(count: int, num_classes: int = 3, seed: int = 2) -> list:
    # Class c is a cloud stretched along axis c, so the task is learnable.
    generator = torch.Generator().manual_seed(seed)
    clouds = []
    for i in range(count):
        label = i % num_classes
        pos = torch.randn(32, 3, generator=generator) * 0.3
        pos[:, label] *= 4.0
        clouds.append(Data(pos=pos, y=torch.tensor([label])))
    return clouds


def regression_run(tmp_path, name="run", model=None, **overrides):
    settings = dict(epochs=3, batch_size=8, lr=1e-2, warmup_steps=2, **CPU)
    settings.update(overrides)
    config = TrainConfig(**settings)
    graphs = molecule_like_graphs(40)

    torch.manual_seed(0)
    model = GraphRegressor() if model is None else model
    loaders = make_loaders(graphs[:24], graphs[24:32], graphs[32:], config)
    results = fit(model, *loaders, Task("regression"), config, tmp_path / name)
    return model, results, loaders


def read_metrics(run_dir) -> list:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_fit_regression_outputs(tmp_path):
    model, results, _ = regression_run(tmp_path)
    run_dir = tmp_path / "run"

    for name in ("last.pt", "previous.pt", "best.pt", "metrics.jsonl", "results.json", "learning_curve.png"):
        assert (run_dir / name).exists(), name
    assert (run_dir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    records = read_metrics(run_dir)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["step"] == 9
    for key in ("lr", "train_loss", "train_metric", "val_metric", "time", "throughput"):
        assert all(math.isfinite(r[key]) for r in records), key

    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["epochs"] == 3
    assert saved["metric"] == "mae"
    assert saved["throughput"] > 0
    assert saved["test_metric"] == pytest.approx(results.test_metric)


def test_fit_selects_best_val_epoch(tmp_path):
    model, results, loaders = regression_run(tmp_path, epochs=4, lr=5e-2)
    records = read_metrics(tmp_path / "run")

    val = [r["val_metric"] for r in records]
    assert results.best_epoch == 1 + val.index(min(val))
    assert results.best_val_metric == pytest.approx(min(val))

    best = read_checkpoint(tmp_path / "run" / "best.pt")
    assert best["epoch"] == results.best_epoch

    # The returned model has the best-val weights, and the test metric
    # comes from them.
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, best["model"][name]), name
    fabric = _build_fabric(TrainConfig(**CPU))
    assert evaluate(model, loaders[2], Task("regression"), fabric) == pytest.approx(results.test_metric)


def test_fit_point_cloud_classifier(tmp_path):
    config = TrainConfig(epochs=4, batch_size=6, lr=1e-2, **CPU)
    clouds = point_clouds(36)
    torch.manual_seed(0)
    model = CloudClassifier()
    loaders = make_loaders(clouds[:24], clouds[24:30], clouds[30:], config)

    lines = []
    results = fit(model, *loaders, Task("classification"), config, tmp_path / "cloud", log=lines.append)

    assert results.metric == "acc"
    assert 0.0 <= results.test_metric <= 1.0
    assert results.best_val_metric > 0.5
    assert len(lines) == config.epochs + 1
    assert lines[0].startswith("epoch   1 |")


def test_fit_same_seed_same_result(tmp_path):
    first, _, _ = regression_run(tmp_path, name="a")
    second, _, _ = regression_run(tmp_path, name="b")

    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_fit_different_seed_different_order(tmp_path):
    _, _, _ = regression_run(tmp_path, name="a", seed=0)
    _, _, _ = regression_run(tmp_path, name="b", seed=1)

    loss_a = read_metrics(tmp_path / "a")[0]["train_loss"]
    loss_b = read_metrics(tmp_path / "b")[0]["train_loss"]
    assert loss_a != loss_b


def test_fit_nan_loss_stops(tmp_path):
    # 24 graphs in batches of 8 give 3 steps per epoch, so step 5 is in epoch 2.
    model = NaNAtStep(GraphRegressor(), nan_step=5)
    with pytest.raises(NonFiniteLossError, match=r"step 5 \(epoch 2, batch 1\)") as info:
        regression_run(tmp_path, model=model)

    assert info.value.epoch == 2
    assert info.value.step == 5
    assert "last.pt" in str(info.value)

    last = read_checkpoint(tmp_path / "run" / "last.pt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in last["model"].values())
    assert len(read_metrics(tmp_path / "run")) == 1


def test_fit_nan_loss_first_step(tmp_path):
    model = NaNAtStep(GraphRegressor(), nan_step=1)
    with pytest.raises(NonFiniteLossError, match="No checkpoint was written yet"):
        regression_run(tmp_path, model=model)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_fit_finished_run_is_not_retrained(tmp_path):
    _, first, _ = regression_run(tmp_path)
    _, again, _ = regression_run(tmp_path)

    assert again.best_epoch == first.best_epoch
    assert again.test_metric == pytest.approx(first.test_metric)
    assert len(read_metrics(tmp_path / "run")) == 3


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(epochs=0), "epochs=0"),
        (dict(epochs=-3), "epochs=-3"),
        (dict(epochs=2.5), "epochs=2.5"),
        (dict(lr=0.0), "lr=0.0"),
        (dict(weight_decay=-0.1), "weight_decay=-0.1"),
        (dict(warmup_steps=-1), "warmup_steps=-1"),
        (dict(grad_clip=0.0), "grad_clip=0.0"),
        (dict(batch_size=0), "batch_size=0"),
        (dict(log_every=0), "log_every=0"),
        (dict(precision="fp8"), "precision='fp8'"),
    ],
)
def test_config_rejects_bad_values(overrides, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**overrides)


def test_check_loaders_batch_larger_than_data():
    graphs = molecule_like_graphs(6)
    with pytest.raises(ValueError, match="batch_size=8 for a training set of 6"):
        check_loaders(DataLoader(graphs, batch_size=8), DataLoader(graphs))


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_check_loaders_empty_split(split):
    graphs = molecule_like_graphs(6)
    loaders = {name: DataLoader(graphs, batch_size=2) for name in ("train", "val", "test")}
    loaders[split] = DataLoader([], batch_size=2)

    with pytest.raises(ValueError, match=f"The {split} split is empty"):
        check_loaders(loaders["train"], loaders["val"], loaders["test"])


def test_check_loaders_no_batch():
    graphs = molecule_like_graphs(6)
    val = DataLoader(graphs[:3], batch_size=4, drop_last=True)
    with pytest.raises(ValueError, match="The val loader yields no batch from 3 graph"):
        check_loaders(DataLoader(graphs, batch_size=2), val)


def test_check_loaders_missing_val():
    graphs = molecule_like_graphs(6)
    with pytest.raises(ValueError, match="Missing val loader"):
        check_loaders(DataLoader(graphs, batch_size=2), None)


def test_fit_rejects_empty_val_split(tmp_path):
    config = TrainConfig(epochs=1, batch_size=4, **CPU)
    graphs = molecule_like_graphs(8)
    loaders = make_loaders(graphs, [], None, config)
    with pytest.raises(ValueError, match="The val split is empty"):
        fit(GraphRegressor(), *loaders, Task("regression"), config, tmp_path / "run")


def test_fit_rejects_unwritable_out_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = TrainConfig(epochs=1, batch_size=4, **CPU)
    graphs = molecule_like_graphs(8)
    loaders = make_loaders(graphs, graphs, None, config)

    with pytest.raises(ValueError, match="Invalid out_dir=.*file/run.*not a writable directory"):
        fit(GraphRegressor(), *loaders, Task("regression"), config, blocker / "run")


def test_schedule_warmup_cosine_factor():
    assert warmup_cosine_factor(0, 4, 20) == pytest.approx(0.25)
    assert warmup_cosine_factor(3, 4, 20) == pytest.approx(1.0)
    assert warmup_cosine_factor(4, 4, 20) == pytest.approx(1.0)
    assert warmup_cosine_factor(12, 4, 20) == pytest.approx(0.5)
    assert warmup_cosine_factor(20, 4, 20) == pytest.approx(0.0)
    assert warmup_cosine_factor(25, 4, 20) == pytest.approx(0.0)
    assert warmup_cosine_factor(0, 0, 10) == pytest.approx(1.0)


def test_schedule_follows_factor_per_step():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    scheduler = warmup_cosine(optimizer, warmup_steps=3, total_steps=10)

    for step in range(10):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * warmup_cosine_factor(step, 3, 10))
        optimizer.step()
        scheduler.step()


def test_task_classification_metric():
    task = Task("classification")
    out = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 5.0]])
    y = torch.tensor([0, 1, 1, 1])

    correct, count = task.metric_sum(out, y)
    assert float(correct) == 3.0
    assert count == 4
    assert task.higher_is_better
    assert task.is_better(0.8, 0.7)
    assert not task.is_better(float("nan"), None)


def test_task_regression_metric():
    task = Task("regression")
    out = torch.tensor([1.0, 2.0, 4.0])
    y = torch.tensor([1.5, 2.0, 1.0])

    total, count = task.metric_sum(out, y)
    assert float(total) == pytest.approx(3.5)
    assert count == 3
    assert float(task.loss(out, y)) == pytest.approx(3.5 / 3)
    assert not task.higher_is_better
    assert task.is_better(0.1, 0.2)


def test_task_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind='ranking'"):
        Task("ranking")


def test_make_loaders_shuffle_is_seeded():
    graphs = molecule_like_graphs(20)
    orders = []
    for _ in range(2):
        train, _, _ = make_loaders(graphs, graphs[:4], None, TrainConfig(batch_size=20, seed=3))
        orders.append(next(iter(train)).y)
    assert torch.equal(orders[0], orders[1])


def test_fit_bf16_mixed_cpu(tmp_path):
    model, results, _ = regression_run(tmp_path, precision="bf16-mixed")

    assert math.isfinite(results.test_metric)
    state = read_checkpoint(tmp_path / "run" / "last.pt")
    assert state["config"]["precision"] == "bf16-mixed"
    assert all(t.dtype == torch.float32 for t in state["model"].values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_cuda_mixed_precision(tmp_path):
    model, results, _ = regression_run(tmp_path, accelerator="auto", precision="auto")

    assert math.isfinite(results.test_metric)
    assert next(model.parameters()).is_cuda
    state = read_checkpoint(tmp_path / "run" / "last.pt")
    assert state["rng"][0]["cuda"] is not None
    if not torch.cuda.is_bf16_supported():
        assert "scale" in state["precision"]
