"""A ZINC-like molecule set built from the SMILES that ship with MOSES.

The PyPI package ``molsets`` (MOSES, version 0.3.1) ships
``moses/dataset/data/train.csv.gz`` with 1,584,663 SMILES strings, a filtered
subset of ZINC's "Clean Leads" (no charges, no stereo, elements C, N, O, S, F,
Cl and Br, 10 to 26 heavy atoms). :class:`MosesZINC` draws molecules from that file with a seeded
permutation and encodes them like PyG's ZINC, so it is a default molecule set
that needs no download.
"""

import gzip
import importlib.util
import json
import os
import os.path as osp
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.io import fs
from torch_geometric.warnings import warn

from samsa_geo.datasets.cache import file_sha256, replace_atomically
from samsa_geo.datasets.molecules import smiles_to_zinc_graphs

SPLITS = ("train", "val", "test")
DEFAULT_SIZES = (10_000, 1_000, 1_000)
MANIFEST_NAME = "manifest.json"

# Extra candidates drawn beyond the requested total, so that a few molecules
# that cannot be encoded do not need a second pass over the file.
_EXTRA_CANDIDATES = 16


def moses_train_csv() -> str:
    """Return the path of ``train.csv.gz`` inside the installed ``molsets``
    package, found without importing ``moses`` (its import pulls in unrelated
    heavy packages).

    Raises:
        ImportError: If ``molsets`` is not installed or lacks the file.
    """
    spec = importlib.util.find_spec("moses")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "MosesZINC requires the SMILES file of the PyPI package 'molsets'. "
            "Install it with 'pip install --no-deps molsets==0.3.1' (its pinned "
            "dependencies do not build on Python 3.11, and none is needed here)."
        )

    package_dir = list(spec.submodule_search_locations)[0]
    path = osp.join(package_dir, "dataset", "data", "train.csv.gz")
    if not osp.exists(path):
        raise ImportError(
            f"The 'molsets' package at '{package_dir}' has no 'dataset/data/train.csv.gz'. "
            f"Reinstall it with 'pip install --no-deps --force-reinstall molsets==0.3.1'."
        )
    return path


def read_csv_rows(path: str) -> List[bytes]:
    """Return the data rows of a gzipped CSV file with one header line, as
    undecoded lines without their line break.

    The whole file is decompressed at once. For MOSES that keeps about 60 MB
    of text and a list of 1.6 million rows in memory while the set is built.
    """
    with gzip.open(path, "rb") as f:
        lines = f.read().split(b"\n")

    if lines and lines[-1] == b"":
        lines.pop()
    return lines[1:]


def _check_sizes(sizes: Sequence[int]) -> Tuple[int, int, int]:
    sizes = tuple(sizes)
    valid = len(sizes) == 3 and all(
        isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in sizes
    )
    if not valid:
        raise ValueError(
            f"Invalid 'sizes' {sizes!r}. Pass three positive integers, the number "
            f"of train, val and test molecules, for example {DEFAULT_SIZES}."
        )
    return sizes


class MosesZINC(InMemoryDataset):
    r"""A ZINC-like molecule set drawn from the MOSES training SMILES, encoded
    exactly as PyG's :class:`~torch_geometric.datasets.ZINC`, with the
    normalized penalized logP as regression target.

    The first use draws ``sum(sizes)`` molecules from
    ``moses/dataset/data/train.csv.gz`` of the PyPI package ``molsets`` with a
    permutation seeded by :obj:`seed`. The first ``sizes[0]`` encoded
    molecules form the train split, the next ``sizes[1]`` the val split and
    the last ``sizes[2]`` the test split, so the splits are disjoint and the
    same on every machine. Molecules that cannot be encoded are skipped with a
    warning and replaced by the next ones of the permutation. The built splits
    are cached under ``root/processed/<sizes and seed>``. Each file is written
    atomically and checked against a SHA-256 manifest on load. A missing or
    damaged file, for example one left by a killed process, is rebuilt and
    never loaded.

    Items carry ``x`` ``[n, 1]`` long (atom labels 0 to 27),
    ``edge_index`` ``[2, 2m]`` long, ``edge_attr`` ``[2m]`` long (bond types
    1 to 3), ``y`` ``[1]`` float and ``smiles`` (str), see
    :mod:`samsa_geo.datasets.molecules`. MOSES molecules have no charges and
    no stereo centers, so only the labels of uncharged C, N, O, S, F, Cl and Br
    occur.

    Args:
        root (str, optional): Root directory of the cache.
            (default: :obj:`"data/moses_zinc"`)
        split (str, optional): ``"train"``, ``"val"`` or ``"test"``.
            (default: :obj:`"train"`)
        sizes (tuple of int, optional): Number of train, val and test
            molecules. (default: :obj:`(10000, 1000, 1000)`)
        seed (int, optional): Seed of the permutation that selects the
            molecules. (default: :obj:`0`)
        transform (callable, optional): Transform applied to every item on
            access. (default: :obj:`None`)
        pre_transform (callable, optional): Transform applied to every item
            before it is saved to disk. (default: :obj:`None`)
        pre_filter (callable, optional): Function that returns whether an item
            is kept. It runs after the split, so it can make a split smaller
            than its size in :obj:`sizes`. (default: :obj:`None`)
        force_reload (bool, optional): Whether to build the splits again.
            (default: :obj:`False`)
        log (bool, optional): Whether to print PyG's progress messages while
            building. (default: :obj:`True`)

    Raises:
        ValueError: If :obj:`split`, :obj:`sizes` or :obj:`seed` is invalid,
            or :obj:`sizes` requests more molecules than the file has.
        ImportError: If the ``molsets`` package or its SMILES file is missing.
    """

    def __init__(
        self,
        root: str = "data/moses_zinc",
        split: str = "train",
        sizes: Sequence[int] = DEFAULT_SIZES,
        seed: int = 0,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        pre_filter: Optional[Callable] = None,
        force_reload: bool = False,
        log: bool = True,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(
                f"Invalid 'split' {split!r}. Use one of {', '.join(map(repr, SPLITS))}."
            )
        self.split = split
        self.sizes = _check_sizes(sizes)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise ValueError(
                f"Invalid 'seed' {seed!r}. Pass an integer in [0, 2**32), the range "
                f"that numpy.random.RandomState accepts."
            )
        self.seed = seed

        # PyG sets self.root only in super().__init__, which already loads or
        # builds the cache, so the cache folder is derived here the same way.
        cache_dir = osp.join(osp.expanduser(fs.normpath(root)), "processed", self._cache_name)
        if not force_reload and self._has_damaged_cache(cache_dir):
            warn(f"The MosesZINC cache in '{cache_dir}' is incomplete or damaged, "
                 f"for example by a killed build. Building it again.")
            force_reload = True

        super().__init__(root, transform, pre_transform, pre_filter, log=log,
                         force_reload=force_reload)

        path = self.processed_paths[SPLITS.index(split)]
        if not self._cache_is_valid(self.processed_dir):
            raise RuntimeError(
                f"The MosesZINC cache in '{self.processed_dir}' failed its checksum "
                f"right after it was built. Check the disk and free space, then "
                f"delete the folder and try again."
            )
        self.load(path)

    @property
    def _cache_name(self) -> str:
        train, val, test = self.sizes
        return f"{train}_{val}_{test}_seed{self.seed}"

    @property
    def raw_file_names(self) -> List[str]:
        return []

    @property
    def processed_dir(self) -> str:
        return osp.join(self.root, "processed", self._cache_name)

    @property
    def processed_file_names(self) -> List[str]:
        return [f"{split}.pt" for split in SPLITS]

    def _has_damaged_cache(self, cache_dir: str) -> bool:
        names = self.processed_file_names + [MANIFEST_NAME]
        if not any(osp.exists(osp.join(cache_dir, name)) for name in names):
            return False
        return not self._cache_is_valid(cache_dir)

    def _cache_is_valid(self, cache_dir: str) -> bool:
        try:
            with open(osp.join(cache_dir, MANIFEST_NAME)) as f:
                manifest = json.load(f)
            checksums = manifest["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if not isinstance(checksums, dict):
            return False

        for name in self.processed_file_names:
            path = osp.join(cache_dir, name)
            if not osp.exists(path) or checksums.get(name) != file_sha256(path):
                return False
        return True

    def process(self) -> None:
        manifest_path = osp.join(self.processed_dir, MANIFEST_NAME)
        if osp.exists(manifest_path):
            os.remove(manifest_path)

        graphs = self._build_graphs()

        checksums, counts = {}, {}
        start = 0
        for split, size, path in zip(SPLITS, self.sizes, self.processed_paths):
            data_list = self._finish_split(graphs[start:start + size])
            start += size

            self._save_atomically(data_list, path)
            checksums[osp.basename(path)] = file_sha256(path)
            counts[split] = len(data_list)

        manifest = {
            "source": "moses/dataset/data/train.csv.gz",
            "sizes": list(self.sizes),
            "seed": self.seed,
            "num_graphs": counts,
            "sha256": checksums,
        }
        replace_atomically(lambda tmp: _write_json(manifest, tmp), manifest_path)

    def _build_graphs(self) -> List[Data]:
        path = moses_train_csv()
        lines = read_csv_rows(path)
        num_rows = len(lines)
        total = sum(self.sizes)
        if total > num_rows:
            raise ValueError(
                f"Invalid 'sizes' {self.sizes}: they request {total} molecules but "
                f"'{path}' has {num_rows}. Pass smaller sizes."
            )

        # NumPy documents the legacy RandomState as frozen: it returns the
        # values of NumPy 1.16, so a seed selects the same molecules with every
        # NumPy version.
        permutation = np.random.RandomState(self.seed).permutation(num_rows).tolist()

        graphs: List[Data] = []
        start = 0
        while len(graphs) < total and start < num_rows:
            missing = total - len(graphs)
            rows = permutation[start:start + missing + _EXTRA_CANDIDATES]
            start += len(rows)

            smiles = [lines[row].decode().rstrip("\r").split(",")[0] for row in rows]
            # Line numbers are 1-based and the header is line 1.
            graphs += smiles_to_zinc_graphs(
                smiles,
                line_numbers=[row + 2 for row in rows],
                source=path,
            )

        if len(graphs) < total:
            raise ValueError(
                f"Only {len(graphs)} molecules of '{path}' can be encoded, fewer than "
                f"the {total} that 'sizes' {self.sizes} requests. Pass smaller sizes."
            )
        return graphs[:total]

    def _finish_split(self, data_list: List[Data]) -> List[Data]:
        if self.pre_filter is not None:
            data_list = [data for data in data_list if self.pre_filter(data)]
        if len(data_list) == 0:
            raise ValueError(
                "'pre_filter' rejected every molecule of a split, and an empty split "
                "cannot be saved. Relax the filter or pass larger 'sizes'."
            )

        if self.pre_transform is not None:
            data_list = [self.pre_transform(data) for data in data_list]
        return data_list

    def _save_atomically(self, data_list: List[Data], path: str) -> None:
        data, slices = self.collate(data_list)
        payload = (data.to_dict(), slices, data.__class__)
        replace_atomically(lambda tmp: torch.save(payload, tmp), path)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self)}, split={self.split!r})"


def _write_json(value: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
