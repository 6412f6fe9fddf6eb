import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.nn import GCNConv, global_mean_pool

from samsa_geo.training import Task, TrainConfig, fit, load_checkpoint, make_loaders, read_checkpoint
from samsa_geo.training.checkpoint import atomic_save, save_checkpoint

# 24 training graphs in batches of 8: 3 steps per epoch, 4 epochs.
SETTINGS = dict(epochs=4, batch_size=8, lr=1e-2, warmup_steps=2, accelerator="cpu", progress=False)


class GraphRegressor(torch.nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.conv = GCNConv(-1, hidden)
        self.dropout = torch.nn.Dropout(0.2)
        self.lin = torch.nn.Linear(hidden, 1)

    def forward(self, batch):
        x = self.dropout(self.conv(batch.x, batch.edge_index).relu())
        x = global_mean_pool(x, batch.batch, size=batch.num_graphs)
        return self.lin(x).view(-1)


class Interrupted(Exception):
    pass


class InterruptAtStep(torch.nn.Module):
    """Wraps a model and raises :class:`Interrupted` on its ``step``-th
    training call, before the optimizer step."""

    def __init__(self, model: torch.nn.Module, step: int):
        super().__init__()
        self.model = model
        self.step = step
        self.calls = 0

    def forward(self, batch):
        if self.training:
            self.calls += 1
            if self.calls == self.step:
                raise Interrupted(f"stopped at training call {self.calls}")
        return self.model(batch)

    def state_dict(self, *args, **kwargs):
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)


def graphs(count: int = 40) -> list:
    generator = torch.Generator().manual_seed(1)
    out = []
    for size in torch.randint(2, 9, (count,), generator=generator).tolist():
        x = torch.randn(size, 4, generator=generator)
        src = torch.arange(size - 1)
        edge_index = torch.stack([torch.cat([src, src + 1]), torch.cat([src + 1, src])])
        out.append(Data(x=x, edge_index=edge_index, y=x.sum().view(1)))
    return out


def run(out_dir, interrupt_step=None) -> GraphRegressor:
    config = TrainConfig(**SETTINGS)
    data = graphs()
    loaders = make_loaders(data[:24], data[24:32], data[32:], config)

    torch.manual_seed(0)
    model = GraphRegressor()
    wrapped = model if interrupt_step is None else InterruptAtStep(model, interrupt_step)
    fit(wrapped, *loaders, Task("regression"), config, out_dir)
    return model


def assert_same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x, y, rtol=0, atol=1e-6), name


def test_atomic_save_replaces_file(tmp_path):
    path = tmp_path / "state.pt"
    atomic_save({"value": 1}, path)
    atomic_save({"value": 2}, path)

    assert torch.load(path)["value"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_save_checkpoint_keeps_previous(tmp_path):
    save_checkpoint({"epoch": 1}, tmp_path)
    save_checkpoint({"epoch": 2}, tmp_path)

    assert read_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    assert read_checkpoint(tmp_path / "previous.pt")["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "previous.pt"]


def test_load_checkpoint_truncated_falls_back(tmp_path):
    save_checkpoint({"epoch": 1}, tmp_path)
    save_checkpoint({"epoch": 2}, tmp_path)
    last = tmp_path / "last.pt"
    last.write_bytes(last.read_bytes()[:40])

    with pytest.warns(UserWarning, match=f"Cannot read checkpoint '{last}'"):
        state = load_checkpoint(tmp_path)
    assert state["epoch"] == 1


def test_load_checkpoint_all_corrupt(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"")
    (tmp_path / "previous.pt").write_bytes(b"not a checkpoint")

    with pytest.warns(UserWarning) as record:
        with pytest.raises(RuntimeError, match="No checkpoint .* can be read") as error:
            load_checkpoint(tmp_path)
    messages = " ".join(str(w.message) for w in record)
    assert "last.pt" in messages
    assert "previous.pt" in messages
    assert str(tmp_path / "last.pt") in str(error.value)
    assert str(tmp_path / "previous.pt") in str(error.value)


def test_load_checkpoint_foreign_file(tmp_path):
    torch.save([1, 2, 3], tmp_path / "last.pt")
    with pytest.warns(UserWarning, match="not a samsa_geo training checkpoint"):
        with pytest.raises(RuntimeError, match="Move these files away"):
            load_checkpoint(tmp_path)


def test_load_checkpoint_missing(tmp_path):
    assert load_checkpoint(tmp_path) is None


def test_checkpoint_contents(tmp_path):
    run(tmp_path / "run")
    state = read_checkpoint(tmp_path / "run" / "last.pt")

    assert state["epoch"] == 4
    assert state["step"] == 12
    assert len(state["history"]) == 4
    for key in ("model", "optimizer", "scheduler", "precision", "best_metric", "best_epoch", "config"):
        assert key in state, key
    assert state["scheduler"]["last_epoch"] == 12

    rng = state["rng"]
    assert len(rng) == 1
    assert set(rng[0]) == {"python", "numpy", "torch", "cuda", "generators"}
    assert len(rng[0]["generators"]) == 1


@pytest.mark.parametrize("interrupt_step", [4, 8, 12])
def test_resume_after_interrupt_matches(tmp_path, interrupt_step):
    straight = run(tmp_path / "straight")

    with pytest.raises(Interrupted):
        run(tmp_path / "resumed", interrupt_step=interrupt_step)
    completed = read_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"]
    assert completed == (interrupt_step - 1) // 3

    resumed = run(tmp_path / "resumed")
    assert_same_parameters(straight, resumed)
    assert read_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 4


def test_resume_truncated_last_uses_previous(tmp_path):
    straight = run(tmp_path / "straight")

    with pytest.raises(Interrupted):
        run(tmp_path / "resumed", interrupt_step=8)
    last = tmp_path / "resumed" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])

    with pytest.warns(UserWarning, match=f"Cannot read checkpoint '{last}'"):
        resumed = run(tmp_path / "resumed")
    assert_same_parameters(straight, resumed)


def test_resume_warns_on_changed_settings(tmp_path):
    with pytest.raises(Interrupted):
        run(tmp_path / "run", interrupt_step=5)

    config = TrainConfig(**{**SETTINGS, "lr": 1e-3})
    data = graphs()
    loaders = make_loaders(data[:24], data[24:32], data[32:], config)
    with pytest.warns(UserWarning, match="differ from the checkpoint: lr"):
        fit(GraphRegressor(), *loaders, Task("regression"), config, tmp_path / "run")


SCRIPT = textwrap.dedent(
    """
    import os
    import signal
    import sys

    import torch

    sys.path.insert(0, {test_dir!r})
    from test_checkpoint import GraphRegressor, SETTINGS, graphs
    from samsa_geo.training import Task, TrainConfig, fit, make_loaders


    class KillAtStep(torch.nn.Module):
        def __init__(self, model, step):
            super().__init__()
            self.model = model
            self.step = step
            self.calls = 0

        def forward(self, batch):
            if self.training:
                self.calls += 1
                if self.calls == self.step:
                    os.kill(os.getpid(), signal.SIGKILL)
            return self.model(batch)

        def state_dict(self, *args, **kwargs):
            return self.model.state_dict(*args, **kwargs)

        def load_state_dict(self, state_dict, strict=True, assign=False):
            return self.model.load_state_dict(state_dict, strict=strict, assign=assign)


    out_dir, kill_step = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    config = TrainConfig(**SETTINGS)
    data = graphs()
    loaders = make_loaders(data[:24], data[24:32], data[32:], config)

    torch.manual_seed(0)
    fit(KillAtStep(GraphRegressor(), kill_step), *loaders, Task("regression"), config, out_dir)
    """
)


def test_resume_after_sigkill_matches(tmp_path):
    # The killed run is a real process that receives SIGKILL in the middle of
    # epoch 3. The rest runs in this process on one thread, like the script.
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(test_dir=os.path.dirname(__file__)))
    command = [sys.executable, str(script), str(tmp_path / "resumed"), "8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert read_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 2

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        resumed = run(tmp_path / "resumed")
        straight = run(tmp_path / "straight")
    finally:
        torch.set_num_threads(threads)
    assert_same_parameters(straight, resumed)
