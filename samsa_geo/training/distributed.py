"""Data loaders and collectives for data-parallel training.

:func:`fit` shards the loaders itself instead of letting Fabric replace their
samplers. Fabric's replacement does keep PyG's collate function, but Fabric
then calls :meth:`set_epoch` with its own count of :meth:`__iter__` calls,
which restarts at zero in a resumed run and would repeat the data order of
the first epochs. Here the loop calls :meth:`set_epoch` with the true epoch.
"""

from typing import Any, Iterator, List, Optional

import torch
from torch.utils.data import DistributedSampler, RandomSampler, Sampler
from torch_geometric.loader import DataLoader


class ShardSampler(Sampler):
    """Sampler over the indices :obj:`rank, rank + num_replicas, ...` of a
    data set, in order.

    Unlike :class:`~torch.utils.data.DistributedSampler` it never repeats an
    index to even out the shards, so sums over all processes count every
    graph exactly once. Use it for evaluation.

    Args:
        num_samples (int): Size of the data set.
        num_replicas (int): Number of processes.
        rank (int): Rank of this process.
    """

    def __init__(self, num_samples: int, num_replicas: int, rank: int) -> None:
        self.num_samples = num_samples
        self.num_replicas = num_replicas
        self.rank = rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_samples, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.num_replicas))


def with_sampler(loader: DataLoader, sampler: Sampler) -> DataLoader:
    """Return a copy of a PyG :class:`~torch_geometric.loader.DataLoader`
    that draws indices from :obj:`sampler`.

    The copy keeps the batch size, :obj:`follow_batch`, :obj:`exclude_keys`
    and the worker settings.

    Raises:
        ValueError: If :obj:`loader` is not a PyG
            :class:`~torch_geometric.loader.DataLoader`.
    """
    if not isinstance(loader, DataLoader):
        raise ValueError(
            f"Distributed training needs torch_geometric.loader.DataLoader loaders, got "
            f"{type(loader).__name__}. Build the loaders with samsa_geo.training.make_loaders."
        )

    kwargs = dict(
        batch_size=loader.batch_size,
        sampler=sampler,
        follow_batch=loader.follow_batch,
        exclude_keys=loader.exclude_keys,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        persistent_workers=loader.persistent_workers,
    )
    if loader.num_workers > 0:
        kwargs["prefetch_factor"] = loader.prefetch_factor
    return DataLoader(loader.dataset, **kwargs)


def shard_train_loader(loader: DataLoader, num_replicas: int, rank: int, seed: int) -> DataLoader:
    """Give every process its part of the training set through a
    :class:`~torch.utils.data.DistributedSampler`.

    The sampler shuffles when :obj:`loader` shuffles, with the same order on
    every process for a given :obj:`seed` and epoch. When the data set size is
    not a multiple of :obj:`num_replicas`, the sampler repeats a few graphs.
    """
    shuffle = isinstance(loader.sampler, RandomSampler)
    sampler = DistributedSampler(
        loader.dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed
    )
    return with_sampler(loader, sampler)


def shard_eval_loader(loader: DataLoader, num_replicas: int, rank: int) -> DataLoader:
    """Give every process a disjoint part of an evaluation set, see
    :class:`ShardSampler`."""
    sampler = ShardSampler(len(loader.dataset), num_replicas, rank)
    return with_sampler(loader, sampler)


def set_sampler_epoch(loader: Any, epoch: int) -> None:
    """Call :meth:`set_epoch` on the loader's sampler when it has one."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


def loader_generators(loader: Any) -> List[torch.Generator]:
    """Return the random generators a loader owns: its own and its
    sampler's, when set."""
    generators = []
    for owner in (loader, getattr(loader, "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in generators):
            generators.append(generator)
    return generators


def gather_objects(obj: Any, world_size: int) -> List[Any]:
    """Collect a picklable object from every process, in rank order.

    Returns :obj:`[obj]` without communication when :obj:`world_size` is 1.
    """
    if world_size == 1:
        return [obj]

    gathered: List[Optional[Any]] = [None] * world_size
    torch.distributed.all_gather_object(gathered, obj)
    return gathered
