"""Learning-rate schedule: linear warm-up, then cosine decay, per step."""

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    r"""Return the factor that multiplies the peak learning rate at a step.

    .. math::
        f(t) = \begin{cases}
            (t + 1) / w & t < w \\
            \frac{1}{2}\left(1 + \cos\left(\pi \frac{t - w}{T - w}\right)\right)
            & t \geq w
        \end{cases}

    with :math:`w` warm-up steps and :math:`T` total steps. The factor reaches
    1 at the last warm-up step and 0 at step :math:`T`.

    Args:
        step (int): Number of optimizer steps taken so far, :math:`t`.
        warmup_steps (int): Warm-up steps :math:`w`.
        total_steps (int): Total steps :math:`T` of the run.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps

    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """Build a :class:`~torch.optim.lr_scheduler.LambdaLR` that follows
    :func:`warmup_cosine_factor`. Call :meth:`step` after every optimizer
    step.

    Args:
        optimizer (torch.optim.Optimizer): The optimizer. Its learning rate
            is the peak learning rate.
        warmup_steps (int): Steps of linear warm-up.
        total_steps (int): Total optimizer steps of the run.
    """
    return LambdaLR(optimizer, lambda step: warmup_cosine_factor(step, warmup_steps, total_steps))
