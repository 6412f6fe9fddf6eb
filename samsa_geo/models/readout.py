"""Graph-level readout over ragged batches."""

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.nn import global_max_pool, global_mean_pool


def mean_max_readout(x: Tensor, batch: Optional[Tensor], num_graphs: Optional[int] = None) -> Tensor:
    """Concatenate the mean and the maximum of every graph's node features.

    Each graph pools only its own rows, so no padding enters the readout.

    Args:
        x (torch.Tensor): ``[N, F]`` node features.
        batch (torch.Tensor, optional): ``[N]`` sorted graph index of every
            node; :obj:`None` for a single graph.
        num_graphs (int, optional): Number of graphs ``B``.

    Returns:
        ``[B, 2 * F]`` graph features.
    """
    mean = global_mean_pool(x, batch, size=num_graphs)
    maximum = global_max_pool(x, batch, size=num_graphs)
    return torch.cat([mean, maximum], dim=-1)


def count_parameters(model: torch.nn.Module) -> int:
    """Return the number of trainable parameters of ``model``.

    Lazy parameters (``in_channels=-1``) are not counted until the first
    forward pass has created them.
    """
    total = 0
    for parameter in model.parameters():
        if parameter.requires_grad and not isinstance(parameter, torch.nn.parameter.UninitializedParameter):
            total += parameter.numel()
    return total
