"""Training and inference throughput of whole models: SAMSA point-cloud
classifiers against the same-size full-attention transformer at 1,024, 4,096
and 16,384 points per cloud, and the SAMSA molecule model against PyG's GPS
on ZINC-sized molecule batches.

    python benchmarks/bench_throughput.py            # writes results/throughput.{json,md}
    python benchmarks/bench_throughput.py --quick    # small smoke run, prints only
    python benchmarks/bench_throughput.py --device cuda

Inputs are random clouds and random molecule-like graphs of the real sizes;
the speed of these models does not depend on the values. Each number is the
median over repeats of one timed step, after one warm-up step.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch, Data
from torch_geometric.transforms import AddRandomWalkPE
from torch_geometric.utils import to_undirected

from samsa_geo.models import (
    FullAttentionPointClassifier,
    GPSGraphModel,
    SAMSAGraphModel,
    SAMSAPointClassifier,
)

RESULTS = Path(__file__).resolve().parent / "results"


def random_clouds(num_clouds: int, num_points: int, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    clouds = []
    for _ in range(num_clouds):
        pos = torch.randn(num_points, 3, generator=generator)
        normal = torch.nn.functional.normalize(torch.randn(num_points, 3, generator=generator), dim=-1)
        clouds.append(Data(pos=pos, normal=normal, y=torch.zeros(1, dtype=torch.long)))
    return Batch.from_data_list(clouds)


def random_molecules(num_graphs: int, seed: int = 0) -> Batch:
    """Chains with a few ring closures, 10 to 38 atoms as in ZINC."""
    generator = torch.Generator().manual_seed(seed)
    pe = AddRandomWalkPE(20, attr_name="pe")
    graphs = []
    for _ in range(num_graphs):
        n = int(torch.randint(10, 39, (1,), generator=generator))
        row = torch.cat([torch.arange(n - 1), torch.randint(0, n - 2, (2,), generator=generator)])
        col = torch.cat([torch.arange(1, n), torch.randint(2, n, (2,), generator=generator)])
        keep = row != col
        edge_index, edge_attr = to_undirected(
            torch.stack([row[keep], col[keep]]),
            torch.randint(1, 4, (int(keep.sum()),), generator=generator), reduce="max")
        x = torch.randint(0, 28, (n, 1), generator=generator)
        graphs.append(pe(Data(x=x, edge_index=edge_index, edge_attr=edge_attr, y=torch.zeros(1))))
    return Batch.from_data_list(graphs)


def time_steps(model, batch, device, repeats: int, train: bool) -> float:
    """Median seconds of one training step (forward, backward, AdamW) or one
    inference forward pass."""
    model = model.to(device)
    batch = batch.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train(train)

    def step():
        if train:
            optimizer.zero_grad()
            model(batch).float().sum().backward()
            optimizer.step()
        else:
            with torch.no_grad():
                model(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Small sizes, prints only.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    rows = []
    point_sizes = [256, 1024] if args.quick else [1024, 2048, 4096, 16384]
    for num_points in point_sizes:
        num_clouds = max(1, 16384 // num_points) if not args.quick else 2
        batch = random_clouds(num_clouds, num_points)
        models = {"samsa": SAMSAPointClassifier(8, channels=128, num_layers=4, heads=4, k=128),
                  "full": FullAttentionPointClassifier(8, channels=128, num_layers=4, heads=4)}
        for name, model in models.items():
            for train in (True, False):
                seconds = time_steps(model, batch, device, args.repeats, train)
                rows.append(dict(task="points", model=name, size=num_points, graphs=num_clouds,
                                 mode="train" if train else "inference", seconds=seconds,
                                 per_second=num_clouds / seconds))
                print(rows[-1], flush=True)

    batch = random_molecules(16 if args.quick else 128)
    models = {"samsa": SAMSAGraphModel(channels=64, num_layers=10, heads=4, k=32),
              "gps": GPSGraphModel(channels=64, num_layers=10, heads=4)}
    for name, model in models.items():
        for train in (True, False):
            seconds = time_steps(model, batch, device, args.repeats, train)
            rows.append(dict(task="molecules", model=name, size=int(batch.num_nodes / batch.num_graphs),
                             graphs=batch.num_graphs, mode="train" if train else "inference",
                             seconds=seconds, per_second=batch.num_graphs / seconds))
            print(rows[-1], flush=True)

    lines = ["# Model throughput", "",
             f"Device {args.device}, torch {torch.__version__}, median of {args.repeats} steps, "
             f"`python benchmarks/bench_throughput.py`.", "",
             "| task | model | points or mean atoms | graphs per batch | mode | graphs/s | "
             "ratio to baseline |", "| --- | --- | ---: | ---: | --- | ---: | ---: |"]
    for row in rows:
        baseline = next(r for r in rows if r["task"] == row["task"] and r["size"] == row["size"]
                        and r["mode"] == row["mode"] and r["model"] in ("full", "gps"))
        ratio = row["per_second"] / baseline["per_second"]
        lines.append(f"| {row['task']} | {row['model']} | {row['size']} | {row['graphs']} | "
                     f"{row['mode']} | {row['per_second']:.2f} | {ratio:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)

    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        suffix = "" if args.device == "cpu" else f"_{args.device}"
        (RESULTS / f"throughput{suffix}.json").write_text(json.dumps(rows, indent=2) + "\n")
        (RESULTS / f"throughput{suffix}.md").write_text(text)


if __name__ == "__main__":
    main()
