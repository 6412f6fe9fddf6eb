"""Time samsa_geo's segment_topk against PyG's topk pooling selection.

Both rank ``N`` one-head scores within each of ``B`` graphs and keep
``ceil(0.5 * n_b)`` of them, or one per graph. PyG's
``torch_geometric.nn.pool.select.topk.topk`` sorts all scores, then sorts
the result by graph. The script prints the
median time of each path and the speed-up over PyG.

The full run (1,000,000 scores in 10,000 graphs) writes
``benchmarks/results/topk.json`` and ``benchmarks/results/topk.md``.
``--quick`` runs 100,000 scores in 1,000 graphs and writes to ``/tmp``.

Usage::

    python benchmarks/bench_topk.py --quick
    python benchmarks/bench_topk.py
"""

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Optional

import torch
from torch_geometric.nn.pool.select.topk import topk as pyg_topk

from samsa_geo.backend import installed
from samsa_geo.ops.topk import segment_topk

RATIO = 0.5
LOG_NORMAL_SIGMA = {"varied": 0.5, "skewed": 1.5}


def make_sizes(layout: str, num_nodes: int, num_graphs: int, generator: torch.Generator) -> torch.Tensor:
    """Return ``[B]`` graph sizes that sum to ``num_nodes``.

    ``uniform`` gives every graph the same size. ``varied`` and ``skewed``
    draw sizes from log-normal distributions with sigma 0.5 and 1.5. In the
    skewed layout a few large graphs contain many of the nodes, so the padded
    ``[B, K]`` output is many times larger than the number of kept nodes.
    """
    if layout == "uniform":
        sizes = torch.full((num_graphs,), num_nodes // num_graphs, dtype=torch.long)
    elif layout in LOG_NORMAL_SIGMA:
        weights = torch.empty(num_graphs).log_normal_(0.0, LOG_NORMAL_SIGMA[layout], generator=generator)
        sizes = (weights / weights.sum() * num_nodes).floor().long()
    else:
        raise ValueError(f"Unknown layout {layout!r}, expected 'uniform', 'varied' or 'skewed'.")

    sizes[0] += num_nodes - int(sizes.sum())
    return sizes


def time_call(fn, repeats: int) -> float:
    """Return the median wall time of ``fn()`` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def run_case(layout: str, k: Optional[int], num_nodes: int, num_graphs: int, repeats: int) -> dict:
    """Time every path on one layout, with ``ratio = 0.5`` when ``k`` is
    None, else with ``k`` nodes per graph (PyG's ``topk`` reads an int
    ``ratio`` >= 1 as ``k``)."""
    generator = torch.Generator().manual_seed(0)
    sizes = make_sizes(layout, num_nodes, num_graphs, generator)
    batch = torch.repeat_interleave(torch.arange(num_graphs), sizes)
    ptr = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])
    scores = torch.randn(num_nodes, generator=generator)
    selection = {"ratio": RATIO} if k is None else {"k": k}

    # Padded output slots per kept node, which bounds the time of any
    # implementation that returns the [B, K] layout.
    if k is None:
        k_per_graph = torch.ceil(sizes.double() * RATIO).long().clamp(min=1)
    else:
        k_per_graph = sizes.clamp(max=k)
    row = {
        "layout": layout,
        "selection": f"ratio={RATIO}" if k is None else f"k={k}",
        "num_nodes": num_nodes,
        "num_graphs": num_graphs,
        "max_graph_size": int(sizes.max()),
        "output_padding": num_graphs * int(k_per_graph.max()) / int(k_per_graph.sum()),
        "pyg_ms": time_call(lambda: pyg_topk(scores, RATIO if k is None else k, batch), repeats),
    }

    paths = ["auto", "dense", "sparse"] + (["segment_max"] if k == 1 else [])
    for path in paths:
        forced = None if path == "auto" else path
        row[f"{path}_ms"] = time_call(
            lambda: segment_topk(scores, ptr=ptr, path=forced, **selection), repeats
        )
    row["speedup_auto"] = row["pyg_ms"] / row["auto_ms"]
    return row


def to_markdown(rows: list, header: str) -> str:
    lines = [
        header,
        "",
        "| layout | selection | N | B | max n_b | output slots per kept node | PyG topk (ms) "
        "| auto (ms) | dense (ms) | sparse (ms) | segment_max (ms) | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        segment_max = f"{row['segment_max_ms']:.1f}" if "segment_max_ms" in row else "-"
        lines.append(
            f"| {row['layout']} | {row['selection']} | {row['num_nodes']:,} | {row['num_graphs']:,} | "
            f"{row['max_graph_size']:,} | {row['output_padding']:.1f} | {row['pyg_ms']:.1f} | "
            f"{row['auto_ms']:.1f} | {row['dense_ms']:.1f} | {row['sparse_ms']:.1f} | "
            f"{segment_max} | {row['speedup_auto']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="Run 100,000 scores in 1,000 graphs and write to /tmp."
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="Timed calls per path (default: 5 quick, 20 full)."
    )
    args = parser.parse_args()

    if args.quick:
        num_nodes, num_graphs, repeats = 100_000, 1_000, 5
        out_dir = Path("/tmp/samsa_geo_bench")
    else:
        num_nodes, num_graphs, repeats = 1_000_000, 10_000, 20
        out_dir = Path(__file__).resolve().parent / "results"
    if args.repeats is not None:
        repeats = args.repeats

    cases = [("uniform", None), ("varied", None), ("skewed", None), ("uniform", 1), ("skewed", 1)]
    rows = [run_case(layout, k, num_nodes, num_graphs, repeats) for layout, k in cases]
    for row in rows:
        print(
            f"{row['layout']:>8} {row['selection']:>9}: PyG {row['pyg_ms']:.1f} ms, "
            f"samsa_geo {row['auto_ms']:.1f} ms "
            f"(dense {row['dense_ms']:.1f}, sparse {row['sparse_ms']:.1f}), "
            f"speed-up {row['speedup_auto']:.2f}x"
        )

    machine = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "topk.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    header = (
        f"Median of {repeats} calls, one head, float32 scores, "
        f"torch_scatter {'installed' if installed('torch_scatter') else 'not installed'}, "
        f"torch {machine['torch']}, {machine['threads']} threads on {machine['cpu']}."
    )
    (out_dir / "topk.md").write_text(to_markdown(rows, header))
    print(f"wrote {out_dir / 'topk.json'} and {out_dir / 'topk.md'}")


if __name__ == "__main__":
    main()
