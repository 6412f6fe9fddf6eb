"""The training loop shared by every samsa_geo example.

Device placement, mixed precision and data-parallel training go through
Lightning Fabric (``lightning_fabric``). Unlike Lightning's ``Trainer``,
Fabric keeps the loop in this file: every step (forward, loss, backward,
clipping, optimizer and scheduler step) is a visible line. Fabric contributes
the device choice, autocast and the gradient scaler, the
``DistributedDataParallel`` wrapper, and process-group setup under
``torchrun``.

``benchmarks/bench_ddp_overhead.py`` times one process on the CPU with a
3-layer GCN graph regressor, 50 steps of 32 graphs and one thread. Two runs
gave 18.7 to 20.5 ms per step for a plain loop and 17.8 to 19.3 ms with
Fabric. The gap (-13 % to +3 %) was within the noise of the shared 2-core
machine (load average about 7) it was measured on.
"""

import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from lightning_fabric import Fabric
from torch.nn.parameter import UninitializedParameter
from torch_geometric.warnings import warn
from tqdm.auto import tqdm

from samsa_geo.training.checkpoint import (
    BEST,
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    read_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from samsa_geo.training.config import TrainConfig, resolve_precision
from samsa_geo.training.distributed import (
    gather_objects,
    loader_generators,
    set_sampler_epoch,
    shard_eval_loader,
    shard_train_loader,
)
from samsa_geo.training.loaders import check_loaders, check_out_dir
from samsa_geo.training.metrics import (
    CURVE_FILE,
    METRICS_FILE,
    RunningMean,
    append_record,
    format_record,
    plot_learning_curve,
    write_history,
)
from samsa_geo.training.schedule import warmup_cosine
from samsa_geo.training.task import Task

RESULTS_FILE = "results.json"

# Settings that change the result of a run. A resumed run warns when the
# checkpoint was written with different values.
_RESUME_KEYS = ("epochs", "lr", "weight_decay", "warmup_steps", "grad_clip", "seed", "precision")


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss becomes NaN or infinite.

    Attributes:
        epoch (int): Epoch of the failing step, counted from 1.
        step (int): Global optimizer step that failed, counted from 1.
    """

    def __init__(self, epoch: int, step: int, batch_index: int, value: float, checkpoint: Optional[Path]):
        self.epoch = epoch
        self.step = step
        if checkpoint is not None:
            last_good = f"The last good checkpoint is '{checkpoint}'."
        else:
            last_good = "No checkpoint was written yet."
        super().__init__(
            f"Training loss is {value} at step {step} (epoch {epoch}, batch {batch_index}). "
            f"The run stopped without saving. {last_good} Lower the learning rate, enable grad_clip, "
            f"or check the input data for NaN values."
        )


@dataclass
class Results:
    """Final results of :func:`fit`, also written to :obj:`results.json`.

    Attributes:
        metric (str): Name of the metric, :obj:`"acc"` or :obj:`"mae"`.
        best_epoch (int): Epoch with the best validation metric.
        best_val_metric (float): Validation metric at :obj:`best_epoch`.
        test_metric (float, optional): Test metric of the best-validation
            model, computed once at the end. :obj:`None` without a test loader.
        epochs (int): Number of epochs trained.
        time_per_epoch (float): Mean wall time of an epoch in seconds,
            validation included.
        throughput (float): Mean training throughput in graphs per second,
            summed over processes.
        out_dir (str): Run directory.
    """

    metric: str
    best_epoch: int
    best_val_metric: float
    test_metric: Optional[float]
    epochs: int
    time_per_epoch: float
    throughput: float
    out_dir: str


@dataclass
class _Progress:
    epoch: int = 0
    step: int = 0
    best_metric: Optional[float] = None
    best_epoch: int = 0
    history: List[Dict[str, Any]] = field(default_factory=list)


def fit(
    model: torch.nn.Module,
    train_loader,
    val_loader,
    test_loader,
    task: Task,
    config: TrainConfig,
    out_dir,
    log: Optional[Callable[[str], None]] = None,
) -> Results:
    r"""Train :obj:`model`, select the epoch with the best validation metric
    and report its test metric.

    Each step runs the model on a PyG batch (:meth:`Task.predict`), takes the
    mean loss over the batch's graphs, clips the global gradient norm, and
    steps AdamW and the warm-up/cosine schedule
    (:func:`~samsa_geo.training.schedule.warmup_cosine_factor`). After every
    epoch, the validation metric is computed and :obj:`out_dir` receives

    * :obj:`last.pt` (with the file it replaces kept as :obj:`previous.pt`):
      model, optimizer, scheduler, gradient scaler, epoch, step, best metric,
      history and the random states of every process and loader,
    * :obj:`best.pt`: the model weights with the best validation metric so
      far,
    * a line of :obj:`metrics.jsonl`.

    The test split is never used for selection: at the end, the weights of
    :obj:`best.pt` are loaded and the test metric is computed once.
    :obj:`results.json` and :obj:`learning_curve.png` are written then.

    Calling :func:`fit` again with the same arguments after the process was
    killed resumes from the last complete epoch and ends with the same
    parameters as an uninterrupted run (on the CPU with fixed seeds).

    Under :obj:`torchrun` with :obj:`strategy="ddp"`, every process trains
    on its shard of the training set. Evaluation sums over disjoint shards,
    so validation and test metrics count every graph exactly once. With
    :obj:`strategy="ddp"` and :obj:`devices > 1` outside :obj:`torchrun`,
    Fabric starts the other processes by running the script again. Checkpoints are written by
    rank 0 and read by every rank, so multi-node runs need :obj:`out_dir` on
    a shared file system.

    Args:
        model (torch.nn.Module): The model. :meth:`Task.predict` calls it on
            a batch. Lazy parameters (:obj:`in_channels=-1`) are initialized
            with one forward pass on a validation batch.
        train_loader (torch_geometric.loader.DataLoader): Training loader.
        val_loader (torch_geometric.loader.DataLoader): Validation loader.
        test_loader (torch_geometric.loader.DataLoader, optional): Test
            loader, or :obj:`None`.
        task (Task): Loss, metric and model call.
        config (TrainConfig): Run settings.
        out_dir (str or os.PathLike): Run directory. It is created if needed.
        log (callable, optional): Receives one summary line per epoch and a
            final line, on rank 0 only. The library prints nothing itself.
            (default: :obj:`None`)

    Returns:
        :class:`Results`

    Raises:
        ValueError: If a loader is empty, the training batch size exceeds the
            training set, or :obj:`out_dir` is not writable.
        NonFiniteLossError: If the training loss becomes NaN or infinite.
            Nothing is saved for the failing epoch.
    """
    out_dir = check_out_dir(out_dir)
    check_loaders(train_loader, val_loader, test_loader)

    fabric = _build_fabric(config)
    fabric.launch()
    rank, world_size = fabric.global_rank, fabric.world_size
    _seed_everything(config.seed + rank)
    _initialize_lazy_parameters(model, val_loader, task, fabric)

    if world_size > 1:
        train_loader = shard_train_loader(train_loader, world_size, rank, config.seed)
        val_loader = shard_eval_loader(val_loader, world_size, rank)
        if test_loader is not None:
            test_loader = shard_eval_loader(test_loader, world_size, rank)
    generators = loader_generators(train_loader)

    optimizer = _build_optimizer(model, config)
    scheduler = warmup_cosine(optimizer, config.warmup_steps, config.epochs * len(train_loader))
    ddp_model, optimizer = fabric.setup(model, optimizer)

    progress = _Progress()
    if config.resume:
        _resume(out_dir, progress, model, optimizer, scheduler, fabric, config, generators)
    if rank == 0:
        write_history(progress.history, out_dir / METRICS_FILE)

    for epoch in range(progress.epoch + 1, config.epochs + 1):
        record = _run_epoch(epoch, ddp_model, model, optimizer, scheduler, train_loader, val_loader, task,
                            config, fabric, progress, out_dir)
        improved = task.is_better(record["val_metric"], progress.best_metric)
        if improved:
            progress.best_metric = record["val_metric"]
            progress.best_epoch = epoch
        progress.epoch = epoch
        progress.history.append(record)

        _save_epoch(out_dir, progress, model, optimizer, scheduler, fabric, config, generators, improved)
        if log is not None and rank == 0:
            log(format_record(record, task.metric_name))

    results = _finish(out_dir, progress, model, test_loader, task, fabric)
    if log is not None and rank == 0:
        log(_format_results(results))
    return results


def _build_fabric(config: TrainConfig) -> Fabric:
    accelerator = config.accelerator
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    precision = resolve_precision(config.precision, accelerator)

    return Fabric(
        accelerator=accelerator,
        devices=config.devices,
        strategy=config.strategy,
        num_nodes=config.num_nodes,
        precision=precision,
    )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _initialize_lazy_parameters(model: torch.nn.Module, loader, task: Task, fabric: Fabric) -> None:
    # AdamW needs concrete parameters, so lazy ones are shaped by one
    # forward pass first. The pass runs in evaluation mode, so batch-norm
    # statistics stay untouched, and it consumes no random state.
    if not any(isinstance(p, UninitializedParameter) for p in model.parameters()):
        return

    model.to(fabric.device)
    batch = fabric.to_device(next(iter(loader)))
    devices = [fabric.device] if fabric.device.type == "cuda" else []
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        task.predict(model, batch)
    model.train(was_training)


def _build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    # Weight decay on matrices only. Decaying biases and normalization
    # scales toward zero only adds noise to training.
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [group for group in groups if group["params"]]
    if not groups:
        raise ValueError("The model has no trainable parameters. Set requires_grad=True on the parameters to train.")
    return torch.optim.AdamW(groups, lr=config.lr)


def _resume(out_dir, progress, model, optimizer, scheduler, fabric, config, generators) -> None:
    state = load_checkpoint(out_dir)
    if state is None:
        return

    changed = [key for key in _RESUME_KEYS if state.get("config", {}).get(key) != getattr(config, key)]
    if changed:
        warn(
            f"Resuming from '{out_dir}' with settings that differ from the checkpoint: "
            f"{', '.join(changed)}. Use a new out_dir to start a fresh run."
        )

    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    fabric.strategy.precision.load_state_dict(state["precision"])

    rng_states = state["rng"]
    if len(rng_states) == fabric.world_size:
        restore_rng_state(rng_states[fabric.global_rank], generators)
    else:
        warn(
            f"The checkpoint in '{out_dir}' was written by {len(rng_states)} process(es) but this run has "
            f"{fabric.world_size}. Random states are not restored, so the run is not reproducible."
        )

    progress.epoch = state["epoch"]
    progress.step = state["step"]
    progress.best_metric = state["best_metric"]
    progress.best_epoch = state["best_epoch"]
    progress.history = state["history"]


def _run_epoch(epoch, ddp_model, model, optimizer, scheduler, train_loader, val_loader, task, config, fabric,
               progress, out_dir) -> Dict[str, Any]:
    start = time.perf_counter()
    set_sampler_epoch(train_loader, epoch)
    train = _train_epoch(epoch, ddp_model, optimizer, scheduler, train_loader, task, config, fabric, progress,
                         out_dir)
    train_time = time.perf_counter() - start

    val_metric = evaluate(model, val_loader, task, fabric)
    epoch_time = time.perf_counter() - start

    return {
        "epoch": epoch,
        "step": progress.step,
        "lr": optimizer.param_groups[0]["lr"],
        "train_loss": train["loss"],
        "train_metric": train["metric"],
        "val_metric": val_metric,
        "time": epoch_time,
        "train_time": train_time,
        "throughput": train["graphs"] / train_time,
    }


def _train_epoch(epoch, model, optimizer, scheduler, loader, task, config, fabric, progress,
                 out_dir) -> Dict[str, float]:
    model.train()
    loss_mean = RunningMean()
    metric_sum = 0.0
    bar = tqdm(total=len(loader), desc=f"epoch {epoch}", leave=False, disable=not _show_progress(config, fabric))

    for batch_index, batch in enumerate(loader):
        batch = fabric.to_device(batch)
        out, y = task.predict(model, batch)
        loss = task.loss(out, y)
        loss_value = _checked_loss(loss, fabric, epoch, progress.step + 1, batch_index, out_dir)

        optimizer.zero_grad(set_to_none=True)
        fabric.backward(loss)
        if config.grad_clip is not None:
            # Mixed fp16 steps may overflow; the gradient scaler skips them.
            fabric.clip_gradients(model, optimizer, max_norm=config.grad_clip, error_if_nonfinite=False)
        optimizer.step()
        scheduler.step()
        progress.step += 1

        batch_metric, num_graphs = task.metric_sum(out.detach(), y)
        loss_mean.update(loss_value, num_graphs)
        metric_sum += float(batch_metric)

        bar.update(1)
        if progress.step % config.log_every == 0:
            bar.set_postfix(loss=f"{loss_mean.mean:.4f}", **{task.metric_name: f"{metric_sum / loss_mean.count:.4f}"})
    bar.close()

    totals = torch.tensor([loss_mean.total, metric_sum, loss_mean.count], dtype=torch.float64, device=fabric.device)
    totals = fabric.all_reduce(totals, reduce_op="sum") if fabric.world_size > 1 else totals
    loss_total, metric_total, graphs = totals.tolist()
    return {"loss": loss_total / graphs, "metric": metric_total / graphs, "graphs": graphs}


def _show_progress(config: TrainConfig, fabric: Fabric) -> bool:
    return config.progress and fabric.global_rank == 0 and sys.stderr.isatty()


def _checked_loss(loss, fabric, epoch, step, batch_index, out_dir) -> float:
    # Every process takes part in the check, so one NaN stops all processes
    # together instead of leaving the others waiting in an all-reduce.
    bad = (~torch.isfinite(loss.detach())).to(torch.float32)
    if fabric.world_size > 1:
        bad = fabric.all_reduce(bad, reduce_op="sum")
    value = float(loss.detach())

    if bool(bad > 0):
        checkpoint = Path(out_dir) / "last.pt"
        raise NonFiniteLossError(epoch, step, batch_index, value, checkpoint if checkpoint.exists() else None)
    return value


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, task: Task, fabric: Fabric) -> float:
    """Compute the task metric of :obj:`model` over a loader.

    The model runs in evaluation mode under Fabric's autocast. Under DDP every
    process evaluates its shard and the sums are reduced over processes.

    Args:
        model (torch.nn.Module): The model, not wrapped by Fabric.
        loader (DataLoader): Loader of the split.
        task (Task): Provides the metric.
        fabric (Fabric): The launched Fabric object.

    Returns:
        The metric over all graphs of the split.
    """
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=fabric.device)

    with fabric.autocast():
        for batch in loader:
            batch = fabric.to_device(batch)
            out, y = task.predict(model, batch)
            metric_sum, num_graphs = task.metric_sum(out, y)
            totals[0] += metric_sum
            totals[1] += num_graphs

    model.train(was_training)
    if fabric.world_size > 1:
        totals = fabric.all_reduce(totals, reduce_op="sum")
    return float(totals[0] / totals[1])


def _save_epoch(out_dir, progress, model, optimizer, scheduler, fabric, config, generators, improved) -> None:
    # Collective first: every rank contributes its random state.
    rng_states = gather_objects(capture_rng_state(generators), fabric.world_size)

    if fabric.global_rank == 0:
        if improved:
            atomic_save({"model": model.state_dict(), "epoch": progress.epoch,
                         "val_metric": progress.best_metric}, out_dir / BEST)
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "precision": fabric.strategy.precision.state_dict(),
            "epoch": progress.epoch,
            "step": progress.step,
            "best_metric": progress.best_metric,
            "best_epoch": progress.best_epoch,
            "history": progress.history,
            "rng": rng_states,
            "config": config.to_dict(),
        }
        save_checkpoint(state, out_dir)
        append_record(progress.history[-1], out_dir / METRICS_FILE)

    fabric.barrier()


def _finish(out_dir, progress, model, test_loader, task, fabric) -> Results:
    best = read_checkpoint(out_dir / BEST)
    if best is not None:
        model.load_state_dict(best["model"])
    else:
        warn(f"No readable '{out_dir / BEST}': the test metric uses the weights of the last epoch.")

    test_metric = evaluate(model, test_loader, task, fabric) if test_loader is not None else None
    history = progress.history
    results = Results(
        metric=task.metric_name,
        best_epoch=progress.best_epoch,
        best_val_metric=progress.best_metric if progress.best_metric is not None else math.nan,
        test_metric=test_metric,
        epochs=progress.epoch,
        time_per_epoch=float(np.mean([r["time"] for r in history])) if history else math.nan,
        throughput=float(np.mean([r["throughput"] for r in history])) if history else math.nan,
        out_dir=str(out_dir),
    )

    if fabric.global_rank == 0:
        (out_dir / RESULTS_FILE).write_text(json.dumps(asdict(results), indent=2) + "\n")
        plot_learning_curve(history, out_dir / CURVE_FILE, task.metric_name)
    fabric.barrier()
    return results


def _format_results(results: Results) -> str:
    test = f"{results.test_metric:.4f}" if results.test_metric is not None else "n/a"
    return (
        f"best epoch {results.best_epoch} | val {results.metric} {results.best_val_metric:.4f} | "
        f"test {results.metric} {test} | {results.time_per_epoch:.2f} s/epoch | "
        f"{results.throughput:.0f} graphs/s"
    )
