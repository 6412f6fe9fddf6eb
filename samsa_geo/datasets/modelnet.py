"""ModelNet10/40 that builds offline, skips unreadable meshes and rebuilds a
broken processed cache.

The class keeps PyG's layout and processing: raw meshes in
``root/raw/<class>/{train,test}/<class>_<i>.off``, processed tensors in
``root/processed/{training,test}.pt``, labels numbered by sorted class name.
"""

import glob
import json
import os
import os.path as osp
import tempfile
from typing import Callable, Dict, List, Optional

import torch
from torch_geometric.data import Data, InMemoryDataset, extract_zip
from torch_geometric.datasets import ModelNet as PyGModelNet
from torch_geometric.io import fs
from torch_geometric.warnings import warn

from samsa_geo.datasets.cache import file_sha256, replace_atomically
from samsa_geo.datasets.off import OffFormatError, read_off_files, summarize_skipped
from samsa_geo.datasets.offline import OfflineDownloadMixin

MODELNET10_CLASSES = [
    "bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand",
    "sofa", "table", "toilet",
]

MODELNET40_CLASSES = [
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car",
    "chair", "cone", "cup", "curtain", "desk", "door", "dresser", "flower_pot",
    "glass_box", "guitar", "keyboard", "lamp", "laptop", "mantel", "monitor",
    "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink",
    "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase",
    "wardrobe", "xbox",
]

_MARKER_VERSION = 1


def _non_finite_attributes(data: Data) -> List[str]:
    names = []
    for key, value in data.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if not bool(torch.isfinite(value).all()):
                names.append(key)
    return names


class ModelNet(OfflineDownloadMixin, PyGModelNet):
    r"""The ModelNet10/40 CAD datasets from the `"3D ShapeNets: A Deep
    Representation for Volumetric Shapes"
    <https://people.csail.mit.edu/khosla/papers/cvpr2015_wu.pdf>`_ paper,
    built without network access.

    It is a drop-in replacement for
    :class:`torch_geometric.datasets.ModelNet` with four differences:

    * Without raw files it raises
      :class:`~samsa_geo.datasets.RawFilesMissingError` at once, naming the
      download URL and the folder for the files, instead of downloading. An
      archive ``ModelNet10.zip`` or ``ModelNet40.zip`` placed in :obj:`root`
      is extracted without network access.
    * Meshes are read with :func:`samsa_geo.datasets.off.read_off`. A corrupt,
      truncated, empty or fully degenerate ``.off`` file, or a mesh that
      :obj:`pre_transform` turns into NaN values, is skipped with a warning
      naming the file (or raises with :obj:`strict=True`). The skipped files
      are listed in :attr:`skipped`.
    * Processed files are written atomically and recorded with their SHA-256
      digests in ``processed/complete.json``. A cache without that record or
      with a different digest, for example left by a killed process, is
      rebuilt and never loaded.
    * Files are read in sorted order, so the item order does not depend on
      the file system.

    Args:
        root (str): Root directory. Raw meshes are read from ``root/raw``.
        name (str, optional): :obj:`"10"` for ModelNet10 or :obj:`"40"` for
            ModelNet40. (default: :obj:`"10"`)
        train (bool, optional): If :obj:`True`, loads the training split,
            otherwise the test split. (default: :obj:`True`)
        transform (callable, optional): Transform applied to each
            :class:`~torch_geometric.data.Data` on access.
            (default: :obj:`None`)
        pre_transform (callable, optional): Transform applied once before
            saving. (default: :obj:`None`)
        pre_filter (callable, optional): Predicate that decides whether a
            mesh is kept. (default: :obj:`None`)
        force_reload (bool, optional): Whether to re-process the dataset.
            (default: :obj:`False`)
        strict (bool, optional): If :obj:`True`, a bad mesh raises
            :class:`~samsa_geo.datasets.off.OffFormatError` instead of being
            skipped. (default: :obj:`False`)
    """

    marker_file_name = "complete.json"

    def __init__(
        self,
        root: str,
        name: str = "10",
        train: bool = True,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        pre_filter: Optional[Callable] = None,
        force_reload: bool = False,
        strict: bool = False,
    ) -> None:
        self._check_name(name)
        self.name = name
        self.train = train
        self.strict = strict
        self.skipped: List[List[str]] = []
        self._skipped_by_split: Dict[str, List[List[str]]] = {}

        # PyG's ModelNet.__init__ asserts name in ("10", "40"), which
        # subclasses such as PrimitiveShapes do not use, so the
        # InMemoryDataset constructor runs download and processing directly.
        InMemoryDataset.__init__(self, root, transform, pre_transform, pre_filter,
                                 force_reload=force_reload)

        path = self.processed_paths[0] if train else self.processed_paths[1]
        self.load(path)
        self.skipped = self._read_marker()["skipped"]["train" if train else "test"]

    def _check_name(self, name: str) -> None:
        if name not in self.urls:
            raise ValueError(
                f"'name' must be '10' (ModelNet10) or '40' (ModelNet40), got {name!r}."
            )

    @property
    def raw_file_names(self) -> List[str]:
        return MODELNET10_CLASSES if self.name == "10" else MODELNET40_CLASSES

    @property
    def processed_file_names(self) -> List[str]:
        return ["training.pt", "test.pt", self.marker_file_name]

    @property
    def classes(self) -> List[str]:
        """Class names in label order."""
        return sorted(self.raw_file_names)

    def offline_download_url(self) -> Optional[str]:
        return self.urls[self.name]

    def offline_dataset_name(self) -> str:
        return f"ModelNet{self.name}"

    @property
    def archive_path(self) -> str:
        """Where an already downloaded archive is picked up."""
        return osp.join(self.root, f"ModelNet{self.name}.zip")

    @property
    def offline_hint(self) -> str:
        return (
            f"Alternatively, put the archive unchanged at '{self.archive_path}'; it is "
            f"extracted on the next run. The archive contains a folder "
            f"'ModelNet{self.name}' whose class folders belong in '{self.raw_dir}'."
        )

    def download(self) -> None:
        if not osp.exists(self.archive_path):
            super().download()
            return

        # Extract next to raw/ and move in only the missing class folders, so
        # that files already in raw/ are never overwritten or deleted. The
        # rest of the archive, such as macOS metadata, is deleted with the
        # temporary folder.
        tmp_dir = tempfile.mkdtemp(prefix="extract-", dir=self.root)
        try:
            extract_zip(self.archive_path, tmp_dir, log=False)
            folder = osp.join(tmp_dir, f"ModelNet{self.name}")
            for category in self.raw_file_names:
                source = osp.join(folder, category)
                target = osp.join(self.raw_dir, category)
                if osp.isdir(source) and not osp.exists(target):
                    os.replace(source, target)
        finally:
            fs.rm(tmp_dir)

        # Raise if the archive lacks an expected class folder.
        super().download()

    def _process(self) -> None:
        self._discard_incomplete_cache()
        super()._process()

    def process(self) -> None:
        marker_path = self.processed_paths[2]
        if osp.exists(marker_path):
            os.remove(marker_path)

        train_list = self.process_set("train")
        test_list = self.process_set("test")
        self.save(train_list, self.processed_paths[0])
        self.save(test_list, self.processed_paths[1])
        self._write_marker()

    def process_set(self, dataset: str) -> List[Data]:
        paths, targets = [], []
        for target, category in enumerate(self.classes):
            folder = osp.join(self.raw_dir, category, dataset)
            found = sorted(glob.glob(osp.join(folder, f"{category}_*.off")))
            paths.extend(found)
            targets.extend([target] * len(found))
        if not paths:
            raise FileNotFoundError(
                f"No '<class>_*.off' files found in '{self.raw_dir}/<class>/{dataset}' "
                f"for the classes {self.classes}. Check the raw folder layout."
            )

        data_list, skipped = [], []
        for path, target in zip(paths, targets):
            data = self._read_item(path, target, skipped)
            if data is not None:
                data_list.append(data)

        self._skipped_by_split[dataset] = [
            [osp.relpath(path, self.raw_dir), reason] for path, reason in skipped
        ]
        if skipped:
            dataset_name = f"{self.offline_dataset_name()} ({dataset} split)"
            warn(summarize_skipped(skipped, len(paths), dataset_name))
        if not data_list:
            raise ValueError(
                f"All {len(paths)} meshes of the {dataset!r} split in '{self.raw_dir}' "
                f"were skipped or filtered out, so the split is empty."
            )
        return data_list

    def _read_item(self, path: str, target: int, skipped: List) -> Optional[Data]:
        # Returns None for a skipped or filtered-out mesh.
        data_list, read_skipped = read_off_files([path], strict=self.strict)
        if read_skipped:
            skipped.extend(read_skipped)
            return None

        data = data_list[0]
        data.y = torch.tensor([target])
        if self.pre_filter is not None and not self.pre_filter(data):
            return None
        if self.pre_transform is not None:
            data = self.pre_transform(data)

        bad_keys = _non_finite_attributes(data)
        if bad_keys:
            error = OffFormatError(path, f"pre_transform produced NaN or infinite values "
                                         f"in {bad_keys}.")
            if self.strict:
                raise error
            warn(f"Skipping {error}")
            skipped.append((path, error.reason))
            return None
        return data

    @classmethod
    def save(cls, data_list: List[Data], path: str) -> None:
        data, slices = cls.collate(data_list)
        content = (data.to_dict(), slices, data.__class__)
        replace_atomically(lambda tmp_path: torch.save(content, tmp_path), path)

    def _write_marker(self) -> None:
        files = {}
        for path in self.processed_paths[:2]:
            files[osp.basename(path)] = {
                "size": osp.getsize(path),
                "sha256": file_sha256(path),
            }
        marker = {"version": _MARKER_VERSION, "files": files, "skipped": self._skipped_by_split}

        def write(tmp_path: str) -> None:
            with open(tmp_path, "w", encoding="utf-8") as file:
                json.dump(marker, file, indent=1)

        replace_atomically(write, self.processed_paths[2])

    def _read_marker(self) -> dict:
        with open(self.processed_paths[2], encoding="utf-8") as file:
            return json.load(file)

    def _cache_problem(self) -> Optional[str]:
        # Returns why the processed cache must not be loaded, or None.
        marker_path = self.processed_paths[2]
        if not osp.exists(marker_path):
            return f"'{marker_path}' is missing, so processing did not finish"
        try:
            marker = self._read_marker()
            files = marker["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return f"'{marker_path}' is unreadable"
        if marker.get("version") != _MARKER_VERSION:
            return f"'{marker_path}' has version {marker.get('version')!r}"

        for path in self.processed_paths[:2]:
            record = files.get(osp.basename(path))
            if record is None or not osp.exists(path):
                return f"'{path}' is missing"
            if osp.getsize(path) != record["size"]:
                return f"'{path}' has {osp.getsize(path)} bytes, expected {record['size']}"
            if file_sha256(path) != record["sha256"]:
                return f"'{path}' does not match its recorded SHA-256 digest"
        return None

    def _discard_incomplete_cache(self) -> None:
        existing = [path for path in self.processed_paths if osp.exists(path)]
        if not existing or self.force_reload:
            return

        problem = self._cache_problem()
        if problem is None:
            return

        warn(f"{self.offline_dataset_name()}: the processed cache in '{self.processed_dir}' is incomplete or "
             f"corrupt ({problem}). Rebuilding it from '{self.raw_dir}'.")
        for path in existing:
            os.remove(path)
