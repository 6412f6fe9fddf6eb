import datetime
import json
import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning_fabric import Fabric
from torch.utils.data import DistributedSampler
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import GCNConv, global_mean_pool

from samsa_geo.training import NonFiniteLossError, Task, TrainConfig, fit, read_checkpoint
from samsa_geo.training.distributed import ShardSampler, shard_eval_loader, shard_train_loader, with_sampler

WORLD_SIZE = 2


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


class NaNOnRank(torch.nn.Module):
    """Returns NaN on one rank from its ``step``-th training call on."""

    def __init__(self, model: torch.nn.Module, rank: int, step: int):
        super().__init__()
        self.model = model
        self.rank = rank
        self.step = step
        self.calls = 0

    def forward(self, batch):
        out = self.model(batch)
        if self.training:
            self.calls += 1
            if dist.get_rank() == self.rank and self.calls >= self.step:
                return out * float("nan")
        return out


def graphs(count: int) -> list:
    generator = torch.Generator().manual_seed(1)
    out = []
    for i, size in enumerate(torch.randint(2, 9, (count,), generator=generator).tolist()):
        x = torch.randn(size, 4, generator=generator)
        src = torch.arange(size - 1)
        edge_index = torch.stack([torch.cat([src, src + 1]), torch.cat([src + 1, src])])
        out.append(Data(x=x, edge_index=edge_index, y=x.sum().view(1), pos=torch.randn(size, 3), idx=i))
    return out


def loaders(batch_size: int):
    # 16 training graphs: two steps per epoch of 8 graphs in total. No
    # shuffling, so rank r trains on graphs r, r + 2, ... of each full batch.
    data = graphs(27)
    train = DataLoader(data[:16], batch_size=batch_size, shuffle=False)
    val = DataLoader(data[16:21], batch_size=2)
    test = DataLoader(data[21:], batch_size=2)
    return train, val, test


def config(**overrides) -> TrainConfig:
    settings = dict(epochs=2, lr=1e-2, warmup_steps=1, accelerator="cpu", progress=False)
    settings.update(overrides)
    return TrainConfig(**settings)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def join_process_group(rank: int, tmp_dir: str, port: int) -> None:
    # The environment of `torchrun`, so that Fabric treats the processes as
    # launched externally. The process group uses a file store and the
    # loopback interface, so no socket listens beyond 127.0.0.1.
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        GROUP_RANK="0",
        WORLD_SIZE=str(WORLD_SIZE),
        LOCAL_WORLD_SIZE=str(WORLD_SIZE),
        TORCHELASTIC_RUN_ID="samsa-geo-test",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        GLOO_SOCKET_IFNAME="lo",
    )
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{tmp_dir}/store",
        rank=rank,
        world_size=WORLD_SIZE,
        timeout=datetime.timedelta(seconds=30),
    )


def ddp_worker(rank: int, tmp_dir: str, port: int) -> None:
    # Both runs share one launch, because starting the processes costs more
    # than the training.
    join_process_group(rank, tmp_dir, port)
    ddp_config = config(batch_size=4, devices=WORLD_SIZE, strategy="ddp")

    torch.manual_seed(0)
    model = GraphRegressor()
    fit(model, *loaders(batch_size=4), Task("regression"), ddp_config, f"{tmp_dir}/ddp")

    torch.manual_seed(0)
    model = NaNOnRank(GraphRegressor(), rank=1, step=3)
    try:
        fit(model, *loaders(batch_size=4), Task("regression"), ddp_config, f"{tmp_dir}/ddp_nan")
    except NonFiniteLossError as error:
        with open(f"{tmp_dir}/error{rank}.json", "w") as f:
            json.dump({"epoch": error.epoch, "step": error.step}, f)

    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_dir(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ddp")
    timeout = 90.0
    context = mp.start_processes(
        ddp_worker, args=(str(tmp_path), free_port()), nprocs=WORLD_SIZE, join=False, start_method="spawn"
    )

    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"The {WORLD_SIZE} training processes did not finish within {timeout} s.")
    return tmp_path


def test_ddp_matches_single_process(ddp_dir, tmp_path):
    torch.manual_seed(0)
    single = GraphRegressor()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit(single, *loaders(batch_size=8), Task("regression"), config(batch_size=8), tmp_path / "single")
    finally:
        torch.set_num_threads(threads)

    ddp_state = read_checkpoint(ddp_dir / "ddp" / "last.pt")
    single_state = read_checkpoint(tmp_path / "single" / "last.pt")
    assert ddp_state["step"] == single_state["step"] == 4
    for name, tensor in single_state["model"].items():
        assert torch.allclose(ddp_state["model"][name], tensor, rtol=0, atol=1e-5), name

    # Evaluation sums over disjoint shards of the 5 validation graphs.
    for ddp_record, single_record in zip(ddp_state["history"], single_state["history"]):
        assert ddp_record["val_metric"] == pytest.approx(single_record["val_metric"], abs=1e-5)
        assert ddp_record["train_loss"] == pytest.approx(single_record["train_loss"], abs=1e-5)
    assert len(ddp_state["rng"]) == WORLD_SIZE

    results = json.loads((ddp_dir / "ddp" / "results.json").read_text())
    single_results = json.loads((tmp_path / "single" / "results.json").read_text())
    assert results["test_metric"] == pytest.approx(single_results["test_metric"], abs=1e-5)


def test_ddp_nan_on_one_rank_stops_all(ddp_dir):
    # Step 3 is the first step of epoch 2 on both ranks.
    for rank in range(WORLD_SIZE):
        error = json.loads((ddp_dir / f"error{rank}.json").read_text())
        assert error == {"epoch": 2, "step": 3}, rank
    assert read_checkpoint(ddp_dir / "ddp_nan" / "last.pt")["epoch"] == 1


def test_shard_train_loader_keeps_pyg_settings():
    data = graphs(10)
    loader = DataLoader(data, batch_size=3, shuffle=True, follow_batch=["pos"], exclude_keys=["idx"])
    sharded = shard_train_loader(loader, num_replicas=2, rank=1, seed=0)

    assert isinstance(sharded.sampler, DistributedSampler)
    assert sharded.sampler.shuffle
    batch = next(iter(sharded))
    assert isinstance(batch, Batch)
    assert "pos_batch" in batch
    assert "idx" not in batch
    assert sum(b.num_graphs for b in sharded) == 5


@pytest.mark.parametrize("num_samples", [0, 1, 5, 8])
def test_shard_eval_loader_covers_each_graph_once(num_samples):
    data = graphs(max(num_samples, 1))[:num_samples]
    seen = []
    for rank in range(3):
        loader = shard_eval_loader(DataLoader(data, batch_size=2), num_replicas=3, rank=rank)
        assert len(loader.sampler) == len(range(rank, num_samples, 3))
        seen.extend(int(i) for batch in loader for i in batch.idx)
    assert sorted(seen) == list(range(num_samples))


def test_shard_sampler_order():
    assert list(ShardSampler(7, num_replicas=3, rank=1)) == [1, 4]


def test_with_sampler_rejects_torch_loader():
    loader = torch.utils.data.DataLoader(list(range(4)))
    with pytest.raises(ValueError, match="torch_geometric.loader.DataLoader"):
        with_sampler(loader, ShardSampler(4, 2, 0))


def test_fabric_moves_pyg_batch():
    fabric = Fabric(accelerator="cpu", devices=1)
    loader = fabric.setup_dataloaders(DataLoader(graphs(4), batch_size=2))
    batch = next(iter(loader))
    assert isinstance(batch, Batch)
    assert batch.num_graphs == 2
    assert batch.x.device == fabric.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fabric_moves_pyg_batch_cuda():
    fabric = Fabric(accelerator="cuda", devices=1)
    batch = fabric.to_device(next(iter(DataLoader(graphs(4), batch_size=2))))
    assert batch.x.is_cuda
    assert batch.batch.is_cuda
