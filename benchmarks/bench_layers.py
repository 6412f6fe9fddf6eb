"""Time and peak memory of SAMSAConv against full attention, GPSConv and
PerformerAttention, forward plus backward.

Every case runs in its own subprocess so that cases do not share a peak.
On CUDA, the peak is ``torch.cuda.max_memory_allocated`` during one forward
and backward pass. On CPU, it is the growth of the process's maximum
resident set size (``resource.getrusage``) over that first pass. That growth
counts every allocation, PyTorch's included, but only the part above the
earlier peak of the process, after inputs and parameters were built.

Usage::

    python benchmarks/bench_layers.py --quick         # small smoke run, prints only
    python benchmarks/bench_layers.py                 # full sizes, writes results/
    python benchmarks/bench_layers.py --device cuda

The full run writes ``benchmarks/results/layers.json`` and
``benchmarks/results/layers.md``.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.nn import GINConv, GPSConv
from torch_geometric.nn.attention import PerformerAttention
from torch_geometric.utils import to_dense_batch

from samsa_geo.nn import SAMSAConv, SAMSAGPSConv
from samsa_geo.ops.attention import segment_attention

WIDTH = 128
HEADS = 4
K = 128
RESULTS = Path(__file__).resolve().parent / "results"


class FullAttention(torch.nn.Module):
    """Softmax attention over all tokens of each graph, of the same width as
    the SAMSA layer, through ``scaled_dot_product_attention`` on a padded
    batch."""

    def __init__(self, channels, heads):
        super().__init__()
        self.heads = heads
        self.norm = torch.nn.RMSNorm(channels)
        self.lin_qkv = torch.nn.Linear(channels, 3 * channels)
        self.lin_out = torch.nn.Linear(channels, channels)

    def forward(self, x, batch):
        dense, mask = to_dense_batch(self.norm(x), batch)
        B, N, C = dense.shape
        q, k, v = self.lin_qkv(dense).view(B, N, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn_mask = mask.view(B, 1, 1, N) if B > 1 else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = out.transpose(1, 2).reshape(B, N, C)[mask]
        return self.lin_out(out)


class DensePerformer(torch.nn.Module):
    def __init__(self, channels, heads):
        super().__init__()
        self.attn = PerformerAttention(channels, heads, head_channels=channels // heads)

    def forward(self, x, batch):
        dense, mask = to_dense_batch(x, batch)
        return self.attn(dense, mask)[mask]


class FixedIndexSAMSA(torch.nn.Module):
    """The attention of a :class:`SAMSAConv` over a given index set: the same
    projections and attention without scoring and sampling, to measure what
    the selection costs."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x, batch, ptr, index, mask):
        conv = self.conv
        H, C = conv.heads, conv.out_channels
        x_norm = conv.norm(x)
        query = conv.lin_query(x_norm).view(-1, H, C)
        kv = conv.lin_kv(x_norm).view(-1, H, 2 * C)

        heads = torch.arange(H, device=x.device).view(1, H, 1)
        rows = kv[index.clamp(min=0), heads]
        key, value = rows.split(C, dim=-1)
        out = segment_attention(query, key, value, mask, batch, ptr)
        return conv.lin_out(out.reshape(-1, H * C))


def ring_edges(ptr):
    sources, targets = [], []
    for start, end in zip(ptr[:-1].tolist(), ptr[1:].tolist()):
        nodes = torch.arange(start, end)
        sources.append(nodes)
        targets.append(nodes.roll(1))
    source, target = torch.cat(sources), torch.cat(targets)
    return torch.stack([torch.cat([source, target]), torch.cat([target, source])])


def make_input(sizes, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.tensor(sizes)
    x = torch.randn(int(sizes.sum()), WIDTH, generator=generator)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)])
    edge_index = ring_edges(ptr)
    return x.to(device), batch.to(device), ptr.to(device), edge_index.to(device)


def zinc_sizes(num_graphs, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(10, 39, (num_graphs,), generator=generator).tolist()


def build_step(layer, sizes, device):
    """Return a closure that runs one forward and backward pass of ``layer``
    on graphs of the given sizes."""
    torch.manual_seed(0)
    x, batch, ptr, edge_index = make_input(sizes, device)
    x.requires_grad_()

    if layer == "samsa":
        model = SAMSAConv(WIDTH, WIDTH // HEADS, heads=HEADS, k=K)
        run = lambda: model(x, ptr=ptr)
    elif layer == "samsa_fixed":
        conv = SAMSAConv(WIDTH, WIDTH // HEADS, heads=HEADS, k=K).to(device).eval()
        with torch.no_grad():
            _, info = conv(x, ptr=ptr, return_sampling=True)
        model = FixedIndexSAMSA(conv)
        run = lambda: model(x, batch, ptr, info.index, info.mask)
    elif layer == "full":
        model = FullAttention(WIDTH, HEADS)
        run = lambda: model(x, batch)
    elif layer == "gps_mha":
        model = GPSConv(WIDTH, None, heads=HEADS, norm=None)
        run = lambda: model(x, edge_index, batch)
    elif layer == "performer":
        model = DensePerformer(WIDTH, HEADS)
        run = lambda: model(x, batch)
    elif layer == "train_samsa_gps":
        model = SAMSAGPSConv(WIDTH, GINConv(torch.nn.Linear(WIDTH, WIDTH)), heads=HEADS, k=K)
        run = lambda: model(x, edge_index, batch)
    elif layer == "train_gps":
        model = GPSConv(WIDTH, GINConv(torch.nn.Linear(WIDTH, WIDTH)), heads=HEADS)
        run = lambda: model(x, edge_index, batch)
    else:
        raise ValueError(f"Unknown layer={layer!r}.")

    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    training = layer.startswith("train_")

    def step():
        optimizer.zero_grad(set_to_none=True)
        run().square().mean().backward()
        if training:
            optimizer.step()

    return step


def synchronize(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure_case(layer, sizes, device, repeats):
    """Run one case in this process and return its timing and peak memory."""
    step = build_step(layer, sizes, device)

    synchronize(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    step()
    synchronize(device)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "peak_mib": peak / 2**20, "repeats": repeats}


def run_case(layer, sizes, device, repeats, timeout):
    """Run one case in a fresh subprocess, so that peak memory is its own."""
    spec = json.dumps({"layer": layer, "sizes": sizes, "device": device, "repeats": repeats})
    try:
        done = subprocess.run([sys.executable, __file__, "--case", spec], capture_output=True,
                              text=True, timeout=timeout, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if done.returncode != 0:
        last_line = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        return {"error": f"failed with exit code {done.returncode}: {last_line}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def dense_fits(num_tokens, max_dense_gib):
    # Full attention stores one float32 score matrix per head, plus about as
    # much again in the backward pass.
    return 2 * HEADS * num_tokens**2 * 4 <= max_dense_gib * 2**30


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few repeats, prints only and writes no files")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats per case (default: 10, or 2 with --quick)")
    parser.add_argument("--max-dense-gib", type=float, default=32.0,
                        help="skip full attention and GPSConv where their score matrices "
                             "would exceed this many GiB (default: 32)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds per case before it counts as failed (default: 1800)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case:
        spec = json.loads(args.case)
        print(json.dumps(measure_case(spec["layer"], spec["sizes"], spec["device"],
                                      spec["repeats"])))
        return

    repeats = args.repeats or (2 if args.quick else 10)
    single_sizes = [256, 1024] if args.quick else [1024, 4096, 16384, 65536]
    scaling = (256, 1024) if args.quick else (16384, 65536)
    num_zinc = 8 if args.quick else 128
    zinc = zinc_sizes(num_zinc)

    results = {"device": args.device, "width": WIDTH, "heads": HEADS, "k": K,
               "repeats": repeats, "torch": torch.__version__, "cases": []}

    def record(name, layer, sizes, skip=False):
        entry = {"name": name, "layer": layer, "num_tokens": sum(sizes), "num_graphs": len(sizes)}
        if skip:
            entry["error"] = "skipped: score matrix exceeds --max-dense-gib"
        else:
            entry.update(run_case(layer, sizes, args.device, repeats, args.timeout))
        results["cases"].append(entry)
        timing = (f"{entry['median_s'] * 1e3:10.2f} ms {entry['peak_mib']:9.1f} MiB"
                  if "median_s" in entry else entry["error"])
        print(f"{name:>22} {layer:>16} {entry['num_tokens']:>7} tokens  {timing}", flush=True)
        return entry

    single = {}
    for n in single_sizes:
        for layer in ("samsa", "full", "gps_mha", "performer"):
            dense = layer in ("full", "gps_mha")
            single[n, layer] = record("one graph", layer, [n],
                                      skip=dense and not dense_fits(n, args.max_dense_gib))
    for layer in ("samsa", "full", "gps_mha", "performer"):
        single["zinc", layer] = record(f"{num_zinc} ZINC-sized", layer, zinc)

    overhead_n = single_sizes[-2]
    sampled = single[overhead_n, "samsa"]
    fixed = record("fixed index set", "samsa_fixed", [overhead_n])
    train_samsa = record(f"train step {num_zinc} ZINC", "train_samsa_gps", zinc)
    train_gps = record(f"train step {num_zinc} ZINC", "train_gps", zinc)

    def ratio(numerator, denominator, key="median_s"):
        if key in numerator and key in denominator and denominator[key] > 0:
            return numerator[key] / denominator[key]
        return None

    speed_n = 256 if args.quick else 16384
    checks = [
        ("speedup over full attention at %d tokens >= 20" % speed_n,
         ratio(single[speed_n, "full"], single[speed_n, "samsa"]), lambda r: r >= 20),
        ("peak memory vs full attention at %d tokens < 1" % speed_n,
         ratio(single[speed_n, "samsa"], single[speed_n, "full"], "peak_mib"), lambda r: r < 1),
        ("time ratio %d -> %d tokens <= 4.5" % scaling,
         ratio(single[scaling[1], "samsa"], single[scaling[0], "samsa"]), lambda r: r <= 4.5),
        ("sampling overhead at %d tokens <= 1.3" % overhead_n,
         ratio(sampled, fixed), lambda r: r <= 1.3),
        ("ZINC training step vs GPSConv <= 1.3",
         ratio(train_samsa, train_gps), lambda r: r <= 1.3),
    ]
    results["checks"] = []
    print()
    for name, value, passes in checks:
        if value is None:
            verdict, shown = "n/a", "n/a"
        else:
            verdict = "pass" if passes(value) else "FAIL"
            shown = f"{value:.2f}"
        print(f"{verdict:>4}  {name}: {shown}")
        results["checks"].append({"check": name, "value": value, "verdict": verdict})

    if args.quick:
        print("\n--quick: sizes are smoke-test sizes, so the verdicts say nothing about targets.")
        return
    write_results(results)


def write_results(results):
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "layers.json").write_text(json.dumps(results, indent=2) + "\n")

    lines = [
        "# Layer benchmark: SAMSAConv against full attention, GPSConv and Performer",
        "",
        f"Device: {results['device']}, torch {results['torch']}, width {results['width']}, "
        f"{results['heads']} heads, k = {results['k']}, median of {results['repeats']} "
        "forward and backward passes. Produced by `python benchmarks/bench_layers.py`.",
        "",
        "| case | layer | tokens | graphs | median ms | peak MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for case in results["cases"]:
        if "median_s" in case:
            timing = f"{case['median_s'] * 1e3:.2f} | {case['peak_mib']:.1f}"
        else:
            timing = f"{case['error']} | "
        lines.append(f"| {case['name']} | {case['layer']} | {case['num_tokens']} | "
                     f"{case['num_graphs']} | {timing} |")
    lines += ["", "| target | value | verdict |", "| --- | ---: | --- |"]
    for check in results["checks"]:
        value = "n/a" if check["value"] is None else f"{check['value']:.2f}"
        lines.append(f"| {check['check']} | {value} | {check['verdict']} |")
    (RESULTS / "layers.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
