"""Settings of one training run."""

import dataclasses
from dataclasses import dataclass
from typing import Optional, Union

import torch

PRECISIONS = ("auto", "32-true", "16-mixed", "bf16-mixed")


@dataclass
class TrainConfig:
    r"""Settings of one training run of :func:`samsa_geo.training.fit`.

    The batch size belongs to the data loaders. :func:`make_loaders` builds
    them from :obj:`batch_size` and :obj:`num_workers`, but :func:`fit` uses
    whatever loaders it receives.

    Args:
        epochs (int, optional): Number of passes over the training split.
            (default: :obj:`100`)
        lr (float, optional): Peak learning rate of AdamW, reached at the end
            of the warm-up. (default: :obj:`1e-3`)
        weight_decay (float, optional): AdamW weight decay. It applies to
            weight matrices only, not to biases and normalization scales.
            (default: :obj:`0.01`)
        warmup_steps (int, optional): Optimizer steps of linear warm-up before
            the cosine decay to zero. (default: :obj:`0`)
        grad_clip (float, optional): Maximum global L2 norm of the gradients.
            :obj:`None` disables clipping. (default: :obj:`1.0`)
        seed (int, optional): Seed of the Python, NumPy and PyTorch random
            number generators and of the distributed sampler.
            (default: :obj:`0`)
        precision (str, optional): Fabric precision: :obj:`"32-true"`,
            :obj:`"16-mixed"`, :obj:`"bf16-mixed"` or
            :obj:`"auto"`, which picks :obj:`"bf16-mixed"` on a CUDA device
            that supports bfloat16, :obj:`"16-mixed"` (with a gradient scaler)
            on other CUDA devices and :obj:`"32-true"` elsewhere.
            (default: :obj:`"auto"`)
        accelerator (str, optional): Fabric accelerator (:obj:`"auto"`,
            :obj:`"cpu"`, :obj:`"cuda"`, ...). :obj:`"auto"` picks CUDA when
            present. (default: :obj:`"auto"`)
        devices (int or str, optional): Devices per node. (default: :obj:`1`)
        strategy (str, optional): Fabric strategy, for example
            :obj:`"ddp"` under :obj:`torchrun`. (default: :obj:`"auto"`)
        num_nodes (int, optional): Number of nodes. (default: :obj:`1`)
        batch_size (int, optional): Graphs per batch and per process, used by
            :func:`make_loaders`. (default: :obj:`32`)
        num_workers (int, optional): Data loader worker processes, used by
            :func:`make_loaders`. (default: :obj:`0`)
        log_every (int, optional): Refresh the progress bar every
            :obj:`log_every` steps. (default: :obj:`10`)
        progress (bool, optional): Show tqdm progress bars on rank 0 when
            standard error is a terminal. (default: :obj:`True`)
        resume (bool, optional): Continue from :obj:`out_dir/last.pt` when it
            exists. (default: :obj:`True`)
    """

    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 0
    grad_clip: Optional[float] = 1.0
    seed: int = 0
    precision: str = "auto"
    accelerator: str = "auto"
    devices: Union[int, str] = 1
    strategy: str = "auto"
    num_nodes: int = 1
    batch_size: int = 32
    num_workers: int = 0
    log_every: int = 10
    progress: bool = True
    resume: bool = True

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, minimum=1, hint="Train for at least one epoch.")
        _check_int("warmup_steps", self.warmup_steps, minimum=0, hint="Use 0 to disable the warm-up.")
        _check_int("batch_size", self.batch_size, minimum=1, hint="Use at least one graph per batch.")
        _check_int("num_workers", self.num_workers, minimum=0, hint="Use 0 to load in the main process.")
        _check_int("log_every", self.log_every, minimum=1, hint="Use 1 to refresh after every step.")
        _check_int("num_nodes", self.num_nodes, minimum=1, hint="Use 1 for a single machine.")
        _check_int("seed", self.seed, minimum=0, hint="Use a non-negative integer seed.")

        if not self.lr > 0:
            raise ValueError(f"Invalid lr={self.lr!r}. Use a positive learning rate such as 1e-3.")
        if not self.weight_decay >= 0:
            raise ValueError(f"Invalid weight_decay={self.weight_decay!r}. Use 0 or a positive value.")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(
                f"Invalid grad_clip={self.grad_clip!r}. Use a positive maximum norm, or None to disable clipping."
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"Invalid precision={self.precision!r}. Expected one of {PRECISIONS}.")

    def to_dict(self) -> dict:
        """Return the settings as a plain dictionary, as stored in checkpoints."""
        return dataclasses.asdict(self)


def _check_int(name: str, value: object, minimum: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"Invalid {name}={value!r}. Expected an integer. {hint}")
    if value < minimum:
        raise ValueError(f"Invalid {name}={value!r}. Expected an integer >= {minimum}. {hint}")


def resolve_precision(precision: str, accelerator: str) -> str:
    """Replace :obj:`"auto"` by the precision the device supports.

    Args:
        precision (str): A value of :attr:`TrainConfig.precision`.
        accelerator (str): The accelerator the run uses, such as
            :obj:`"cuda"` or :obj:`"cpu"`.
    """
    if precision != "auto":
        return precision
    if accelerator != "cuda":
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
