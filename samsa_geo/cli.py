"""The ``samsa-geo`` command: train a model, or draw what it sampled.

Examples::

    samsa-geo train modelnet --epochs 20 --out runs/shapes
    samsa-geo train zinc --model gps --out runs/gps
    samsa-geo visualize --run runs/shapes --index 3 --out picture.png
"""

import argparse
import sys
from typing import List, Optional

from samsa_geo.experiments import molecules, points
from samsa_geo.training.checkpoint import CheckpointError

# Model sizes per task: the paper-like point-cloud model, and the usual
# budget of about 500k parameters for ZINC.
DEFAULTS = {
    "modelnet": dict(dataset="cad", model="samsa", channels=128, layers=4, heads=4, k=128,
                     points=1024, batch_size=16, lr=1e-3, weight_decay=0.05, epochs=100,
                     warmup_steps=200),
    "zinc": dict(dataset="moses", model="samsa", channels=64, layers=10, heads=4, k=32,
                 points=0, batch_size=32, lr=1e-3, weight_decay=1e-5, epochs=100,
                 warmup_steps=500),
}


def _add_train_parser(subparsers) -> None:
    defaults = "\n".join(f"  {task}: " + ", ".join(f"{key}={value}" for key, value in values.items())
                         for task, values in DEFAULTS.items())
    parser = subparsers.add_parser(
        "train", help="Train a model and report its test metric.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Defaults of the options left out, per task:\n{defaults}\n\nThe defaults train "
               f"for 100 epochs: an estimate from single epochs is 1.5 to 2.5 hours per task on "
               f"2 CPU cores.")
    parser.add_argument("task", choices=sorted(DEFAULTS),
                        help="modelnet: point-cloud classification; zinc: molecule regression.")
    parser.add_argument("--dataset", help=f"Point clouds: {', '.join(points.DATASETS)} "
                        f"(default cad, embedded). Molecules: {', '.join(molecules.DATASETS)} "
                        f"(default moses, embedded).")
    parser.add_argument("--root", help="Data folder with the raw files of modelnet10, modelnet40, "
                        "zinc or zinc-full, and the cache of the built data sets.")
    parser.add_argument("--model", help=f"Point clouds: {', '.join(points.MODELS)}. "
                        f"Molecules: {', '.join(molecules.MODELS)}. (default samsa)")

    parser.add_argument("--out", required=True, help="Output folder for checkpoints, metrics and "
                        "results. Running the same command again resumes from it.")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int, help="Graphs per batch and process.")
    parser.add_argument("--lr", type=float, help="Peak learning rate of AdamW.")
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--warmup-steps", type=int, help="Steps of linear warm-up before the "
                        "cosine decay.")
    parser.add_argument("--grad-clip", type=float, default=2.0, help="Maximum gradient norm.")

    parser.add_argument("--channels", type=int, help="Model width.")
    parser.add_argument("--layers", type=int, help="Number of layers.")
    parser.add_argument("--heads", type=int, help="Attention heads.")
    parser.add_argument("-k", "--k", type=int, help="Tokens each SAMSA head samples per graph.")
    parser.add_argument("--registers", type=int, default=0, help="Learnable register tokens "
                        "per SAMSA layer.")
    parser.add_argument("--points", type=int, help="Points per cloud (point clouds only).")
    parser.add_argument("--sizes", type=int, nargs=3, metavar=("TRAIN", "VAL", "TEST"),
                        help="Sizes of the moses splits (default 10000 1000 1000).")

    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accelerator", default="auto", help="auto, cpu or cuda.")
    parser.add_argument("--devices", default="1", help="Devices per node; under torchrun use "
                        "--strategy ddp.")
    parser.add_argument("--strategy", default="auto", help="auto or ddp.")
    parser.add_argument("--precision", default="auto",
                        help="auto (bf16-mixed on CUDA when supported, else 32-true), 32-true, "
                        "16-mixed or bf16-mixed.")
    parser.add_argument("--no-progress", action="store_true", help="Hide progress bars.")


def _add_visualize_parser(subparsers) -> None:
    parser = subparsers.add_parser("visualize", help="Draw the points or atoms a trained model "
                                   "sampled.")
    parser.add_argument("--run", required=True, help="Output folder of 'samsa-geo train'.")
    parser.add_argument("--index", type=int, default=0, help="Test cloud or molecule to draw.")
    parser.add_argument("--out", required=True, help="Image to write: a PNG file (for molecules "
                        "also .svg). For a single point cloud, a .ply file with the same name is "
                        "written beside it.")
    parser.add_argument("--grid", type=int, default=0,
                        help="Draw this many test clouds in one grid image instead of one cloud.")
    parser.add_argument("--mode", default="count", choices=("sampled", "score", "count"),
                        help="Color by sampled or not, by importance score, or by how many "
                        "heads chose each point.")
    parser.add_argument("--layer", type=int, help="Layer to draw (default: all layers merged).")
    parser.add_argument("--head", type=int, help="Head to draw (default: all heads merged).")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samsa-geo", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(subparsers)
    _add_visualize_parser(subparsers)
    return parser


def _train(args: argparse.Namespace) -> int:
    from samsa_geo.experiments.run import train
    from samsa_geo.training import TrainConfig

    defaults = DEFAULTS[args.task]
    value = lambda name: getattr(args, name) if getattr(args, name) is not None \
        else defaults[name]  # noqa: E731

    run = dict(task=args.task, dataset=value("dataset"), root=args.root, model=value("model"),
               channels=value("channels"), layers=value("layers"), heads=value("heads"),
               k=value("k"), points=value("points"), registers=args.registers, seed=args.seed,
               sizes=args.sizes, out_dir=args.out)
    for name in ("epochs", "batch_size", "channels", "layers", "heads", "k", "points"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            option = "--" + name.replace("_", "-")
            raise ValueError(f"{option} must be a positive integer, got {getattr(args, name)}.")

    devices = int(args.devices) if args.devices.isdigit() else args.devices
    config = TrainConfig(epochs=value("epochs"), lr=value("lr"), weight_decay=value("weight_decay"),
                         warmup_steps=value("warmup_steps"), grad_clip=args.grad_clip,
                         seed=args.seed, precision=args.precision, accelerator=args.accelerator,
                         devices=devices, strategy=args.strategy, batch_size=value("batch_size"),
                         progress=not args.no_progress)

    results = train(run, config)
    print(f"test {results.metric}: {results.test_metric:.4f} (best validation epoch "
          f"{results.best_epoch}); outputs in {results.out_dir}")
    return 0


def _visualize(args: argparse.Namespace) -> int:
    from samsa_geo.experiments.pictures import draw_run

    path = draw_run(args.run, args.out, index=args.index, grid=args.grid, mode=args.mode,
                    layer=args.layer, head=args.head)
    print(f"wrote {path}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run the ``samsa-geo`` command with ``argv`` (default: ``sys.argv``)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        return _visualize(args)
    except (ValueError, FileNotFoundError, CheckpointError) as error:
        print(f"samsa-geo: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
