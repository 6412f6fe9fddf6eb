"""Time of a training step with Lightning Fabric against a plain PyTorch loop.

Both loops train the same GCN graph regressor on the same batches in one
process: forward, L1 loss, backward, AdamW step. The Fabric loop adds what
:func:`samsa_geo.training.fit` uses from Fabric: the wrapped model and
optimizer, :meth:`Fabric.backward` and the data loader wrapper that moves
each batch to the device.

Usage::

    python benchmarks/bench_ddp_overhead.py            # 50 steps, 5 repeats
    python benchmarks/bench_ddp_overhead.py --quick    # smoke run
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from lightning_fabric import Fabric
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import GCNConv, global_mean_pool


class GraphRegressor(torch.nn.Module):
    def __init__(self, in_channels: int, hidden: int):
        super().__init__()
        self.convs = torch.nn.ModuleList([GCNConv(in_channels, hidden), GCNConv(hidden, hidden), GCNConv(hidden, hidden)])
        self.lin = torch.nn.Linear(hidden, 1)

    def forward(self, batch):
        x = batch.x
        for conv in self.convs:
            x = conv(x, batch.edge_index).relu()
        return self.lin(global_mean_pool(x, batch.batch, size=batch.num_graphs)).view(-1)


def make_graphs(count: int, in_channels: int) -> list:
    generator = torch.Generator().manual_seed(0)
    graphs = []
    for size in torch.randint(10, 30, (count,), generator=generator).tolist():
        x = torch.randn(size, in_channels, generator=generator)
        src = torch.arange(size - 1)
        edge_index = torch.stack([torch.cat([src, src + 1]), torch.cat([src + 1, src])])
        graphs.append(Data(x=x, edge_index=edge_index, y=x.mean().view(1)))
    return graphs


def time_plain(loader, args, device) -> float:
    torch.manual_seed(0)
    model = GraphRegressor(args.in_channels, args.hidden).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    start = time.perf_counter()
    for batch in loader:
        batch = batch.to(device)
        loss = F.l1_loss(model(batch), batch.y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def time_fabric(loader, args, fabric) -> float:
    torch.manual_seed(0)
    model = GraphRegressor(args.in_channels, args.hidden)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer = fabric.setup(model, optimizer)
    loader = fabric.setup_dataloaders(loader, use_distributed_sampler=False)

    start = time.perf_counter()
    for batch in loader:
        loss = F.l1_loss(model(batch), batch.y)
        optimizer.zero_grad(set_to_none=True)
        fabric.backward(loss)
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="training steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per loop; the median is reported")
    parser.add_argument("--batch-size", type=int, default=32, help="graphs per batch")
    parser.add_argument("--in-channels", type=int, default=16, help="node feature size")
    parser.add_argument("--hidden", type=int, default=64, help="hidden feature size")
    parser.add_argument("--accelerator", default="cpu", help="'cpu' or 'cuda'")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 steps, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 10, 2

    graphs = make_graphs(args.steps * args.batch_size, args.in_channels)
    loader = DataLoader(graphs, batch_size=args.batch_size)
    fabric = Fabric(accelerator=args.accelerator, devices=1, precision="32-true")
    device = fabric.device

    # One untimed pass of each loop warms up allocators and lazy imports.
    time_plain(loader, args, device)
    time_fabric(loader, args, fabric)

    plain, wrapped = [], []
    for _ in range(args.repeats):
        plain.append(time_plain(loader, args, device))
        wrapped.append(time_fabric(loader, args, fabric))

    plain_step = statistics.median(plain) / args.steps
    fabric_step = statistics.median(wrapped) / args.steps
    result = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "plain_ms_per_step": 1e3 * plain_step,
        "fabric_ms_per_step": 1e3 * fabric_step,
        "overhead_percent": 100.0 * (fabric_step / plain_step - 1.0),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
