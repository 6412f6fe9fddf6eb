"""Time samsa_geo's pure-PyTorch fps and knn_graph against torch-cluster and
pyg-lib, where installed.

Full run (writes benchmarks/results/point_ops.json and point_ops.md):

    python benchmarks/bench_point_ops.py

Smoke run on small sizes, which prints the table and writes nothing:

    python benchmarks/bench_point_ops.py --quick

Inputs are uniform random points in the unit cube. Each case reports the
median wall time of ``--repeats`` calls after one warm-up call, and the ratio
of the pure path's median to torch-cluster's.
"""

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from samsa_geo import backend
from samsa_geo.ops import fps, knn_graph

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# (case name, number of clouds, points per cloud)
FULL_CASES = [("1k", 1, 1_000), ("10k", 1, 10_000), ("100k", 1, 100_000), ("32x1024", 32, 1_024)]
QUICK_CASES = [("1k", 1, 1_000), ("4k", 1, 4_000), ("4x256", 4, 256)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run small sizes and write no files")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per case (default: 5, or 2 with --quick)")
    parser.add_argument("--k", type=int, default=16, help="neighbours per point for knn_graph (default: 16)")
    parser.add_argument("--fps-ratio", type=float, default=0.25, help="fraction of each cloud fps keeps (default: 0.25)")
    parser.add_argument("--device", default="cpu", help="torch device to run on (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random point clouds (default: 0)")
    return parser.parse_args()


def median_seconds(call: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Time ``repeats`` calls after one warm-up call and return the median in
    seconds."""
    call()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def backend_calls(pos: torch.Tensor, batch: torch.Tensor, ptr: torch.Tensor, args: argparse.Namespace) -> Dict[str, Dict[str, Callable[[], object]]]:
    """Return ``{op: {backend: call}}`` for every installed backend."""

    def pure_fps():
        with backend.pure_pytorch():
            return fps(pos, batch, args.fps_ratio, random_start=False)

    def pure_knn():
        with backend.pure_pytorch():
            return knn_graph(pos, args.k, batch)

    calls = {"fps": {"pure": pure_fps}, "knn_graph": {"pure": pure_knn}}

    if backend.installed("torch_cluster"):
        import torch_cluster

        calls["fps"]["torch_cluster"] = lambda: torch_cluster.fps(pos, batch, args.fps_ratio, random_start=False)
        calls["knn_graph"]["torch_cluster"] = lambda: torch_cluster.knn_graph(pos, args.k, batch)

    if backend.installed("pyg_lib"):
        # NOTE: untested, because pyg-lib>=0.6 was not installable here.
        import pyg_lib

        calls["fps"]["pyg_lib"] = lambda: pyg_lib.ops.fps(pos, ptr, args.fps_ratio, False)
        calls["knn_graph"]["pyg_lib"] = lambda: pyg_lib.ops.knn(pos, pos, args.k + 1, ptr, ptr)
    return calls


def run_case(name: str, clouds: int, points: int, args: argparse.Namespace, repeats: int) -> List[dict]:
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(args.seed)
    pos = torch.rand(clouds * points, 3, generator=generator).to(device)
    batch = torch.arange(clouds, device=device).repeat_interleave(points)
    ptr = torch.arange(clouds + 1, device=device) * points

    rows = []
    for op, calls in backend_calls(pos, batch, ptr, args).items():
        seconds = {label: median_seconds(call, repeats, device) for label, call in calls.items()}
        baseline: Optional[float] = seconds.get("torch_cluster")
        ratio = seconds["pure"] / baseline if baseline else None
        rows.append({"op": op, "case": name, "clouds": clouds, "points": points, "seconds": seconds, "pure_over_torch_cluster": ratio})

        timings = ", ".join(f"{label} {value * 1e3:.1f} ms" for label, value in seconds.items())
        ratio_text = f", pure/torch_cluster {ratio:.2f}x" if ratio is not None else ""
        print(f"{op:10s} {name:8s} {timings}{ratio_text}", flush=True)
    return rows


def environment(args: argparse.Namespace, repeats: int) -> dict:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": args.device,
        "torch_cluster": backend.installed("torch_cluster"),
        "pyg_lib": backend.installed("pyg_lib"),
        "k": args.k,
        "fps_ratio": args.fps_ratio,
        "repeats": repeats,
        "seed": args.seed,
    }


def write_markdown(path: Path, rows: List[dict], env: dict) -> None:
    labels = sorted({label for row in rows for label in row["seconds"]})
    lines = [
        "# Point operators: pure PyTorch against compiled backends",
        "",
        f"Command: `python benchmarks/bench_point_ops.py`. Median of {env['repeats']} calls after one "
        f"warm-up, uniform random points in the unit cube, knn_graph with k={env['k']}, fps with "
        f"ratio={env['fps_ratio']} and random_start=False.",
        "",
        f"Environment: torch {env['torch']}, Python {env['python']}, {env['machine']} "
        f"({env['processor'] or 'unknown CPU'}), {env['cpu_count']} CPUs, {env['torch_threads']} torch "
        f"threads, device {env['device']}.",
        "",
        "| op | case | " + " | ".join(f"{label} (ms)" for label in labels) + " | pure / torch_cluster |",
        "|---|---|" + "---|" * len(labels) + "---|",
    ]
    for row in rows:
        cells = [f"{row['seconds'][label] * 1e3:.1f}" if label in row["seconds"] else "-" for label in labels]
        ratio = row["pure_over_torch_cluster"]
        ratio_text = f"{ratio:.2f}x" if ratio is not None else "-"
        lines.append(f"| {row['op']} | {row['case']} | " + " | ".join(cells) + f" | {ratio_text} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    args = parse_args()
    cases = QUICK_CASES if args.quick else FULL_CASES
    repeats = args.repeats or (2 if args.quick else 5)

    rows = []
    for name, clouds, points in cases:
        rows.extend(run_case(name, clouds, points, args, repeats))

    if args.quick:
        return
    env = environment(args, repeats)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "point_ops.json").write_text(json.dumps({"environment": env, "results": rows}, indent=2) + "\n")
    write_markdown(RESULTS_DIR / "point_ops.md", rows, env)
    print(f"wrote {RESULTS_DIR / 'point_ops.json'} and {RESULTS_DIR / 'point_ops.md'}")


if __name__ == "__main__":
    main()
