"""SH3D furniture: a small CAD shape classification set shipped in the
repository.

The point clouds come from the Sweet Home 3D furniture catalogs that Debian
packages as ``sweethome3d-furniture``. ``datasets/build_cad_dataset.py``
samples them once into ``datasets/sh3d_furniture.npz``, so loading needs
neither the Debian package nor a network connection.
"""

import os
import os.path as osp
import pickle
import zipfile
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset

from samsa_geo.datasets.cache import file_sha256

SPLITS = ("train", "test")
NPZ_KEYS = ("points", "normals", "labels", "classes", "shape_names", "split")

REBUILD_HINT = (
    "Restore the committed file from git, or rebuild it from the Debian package "
    "sweethome3d-furniture with `python datasets/build_cad_dataset.py "
    "--furniture-dir <folder with the .sh3f catalogs>` (see datasets/README.md)."
)

# Errors that torch.load raises on a truncated or otherwise corrupt file.
_CACHE_READ_ERRORS = (RuntimeError, EOFError, OSError, pickle.UnpicklingError,
                      KeyError, TypeError, ValueError)


def default_npz_path() -> str:
    """Return the path of the committed ``datasets/sh3d_furniture.npz`` of the
    repository that contains this package.

    The file exists only in a source checkout or an editable install, because
    wheels of ``samsa_geo`` do not include ``datasets/``. Pass ``path=`` to
    :class:`SH3DFurniture` elsewhere.
    """
    package_dir = osp.dirname(osp.dirname(osp.abspath(__file__)))
    return osp.join(osp.dirname(package_dir), "datasets", "sh3d_furniture.npz")


def _check_arrays(arrays: Dict[str, np.ndarray], path: str) -> None:
    points, normals, labels = arrays["points"], arrays["normals"], arrays["labels"]
    num_shapes = len(labels)
    problems = []
    if points.ndim != 3 or points.shape[0] != num_shapes or points.shape[2] != 3:
        problems.append(f"'points' has shape {points.shape}, expected [{num_shapes}, P, 3]")
    if normals.shape != points.shape:
        problems.append(f"'normals' has shape {normals.shape}, expected {points.shape}")
    if num_shapes and int(labels.max()) >= len(arrays["classes"]):
        problems.append(f"'labels' has value {int(labels.max())} for "
                        f"{len(arrays['classes'])} classes")
    if arrays["shape_names"].shape != (num_shapes,):
        problems.append(f"'shape_names' has shape {arrays['shape_names'].shape}, "
                        f"expected ({num_shapes},)")
    unknown = sorted(set(arrays["split"].tolist()) - set(SPLITS))
    if arrays["split"].shape != (num_shapes,) or unknown:
        problems.append(f"'split' has shape {arrays['split'].shape} and unknown values {unknown}")
    if problems:
        raise ValueError(f"Invalid SH3D furniture file {path}: {'; '.join(problems)}. "
                         f"{REBUILD_HINT}")


def read_sh3d_npz(path: str) -> Dict[str, np.ndarray]:
    """Read and check the arrays of a ``sh3d_furniture.npz`` file.

    Returns:
        A dictionary with ``points`` and ``normals`` (``[S, P, 3]`` float16),
        ``labels`` (``[S]`` uint8), ``classes`` (``[C]`` str), ``shape_names``
        (``[S]`` str) and ``split`` (``[S]``, ``"train"`` or ``"test"``).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a readable ``.npz`` with these arrays.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f"SH3D furniture file not found: {path}. {REBUILD_HINT}")

    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise ValueError(f"arrays {missing} are missing")
            arrays = {key: archive[key] for key in NPZ_KEYS}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise ValueError(f"Cannot read the SH3D furniture file {path}: {error}. "
                         f"{REBUILD_HINT}") from error

    _check_arrays(arrays, path)
    return arrays


def _remove_unreadable_metadata(processed_dir: str) -> None:
    # PyG writes pre_transform.pt and pre_filter.pt in place and loads them
    # without a check, so a truncated copy would stop every later load. They
    # only feed PyG's warning about changed transforms, and PyG writes them
    # again the next time it processes.
    for name in ("pre_transform.pt", "pre_filter.pt"):
        path = osp.join(processed_dir, name)
        if not osp.exists(path):
            continue
        try:
            torch.load(path, weights_only=True)
        except _CACHE_READ_ERRORS:
            os.remove(path)


class SH3DFurniture(InMemoryDataset):
    r"""CAD furniture shapes from the Sweet Home 3D catalogs, as point clouds
    with normals, for shape classification.

    The committed file holds 246 shapes in 8 classes: bed, chair, door, lamp,
    person, plant, sofa and table. Each shape is a
    :class:`~torch_geometric.data.Data` with

    * ``pos`` (``[2048, 3]`` float32): surface points, Z-up, centred on
      their mean and scaled so that the farthest point has norm 1,
    * ``normal`` (``[2048, 3]`` float32): unit face normal at each point,
    * ``y`` (``[1]`` long): class index into :attr:`classes`,

    the same layout as :class:`~torch_geometric.datasets.ModelNet` after
    :class:`~torch_geometric.transforms.SamplePoints` with
    ``include_normals=True``. Points and normals are stored as float16, so
    they carry about three significant digits. The split is stratified, about
    80% train and 20% test per class.

    The meshes are by several creators under CC0 and CC-BY 3.0 licenses.
    ``datasets/sh3d_furniture_ATTRIBUTION.csv`` credits every shape, and
    ``datasets/build_cad_dataset.py`` rebuilds the file.

    Args:
        root (str, optional): Folder for the processed cache
            (``root/processed/{train,test}.pt``). If :obj:`None`, the dataset
            is built in memory on every construction and nothing is written.
            (default: :obj:`None`)
        split (str, optional): :obj:`"train"` or :obj:`"test"`.
            (default: :obj:`"train"`)
        transform (callable, optional): Function applied to each
            :class:`~torch_geometric.data.Data` on access. (default: :obj:`None`)
        pre_transform (callable, optional): Function applied to each
            :class:`~torch_geometric.data.Data` once, before caching.
            (default: :obj:`None`)
        pre_filter (callable, optional): Function that returns whether a
            :class:`~torch_geometric.data.Data` is kept. (default: :obj:`None`)
        path (str, optional): The ``.npz`` file to read. (default: the
            repository's ``datasets/sh3d_furniture.npz``)
        force_reload (bool, optional): Rebuild the processed cache even if it
            is valid. (default: :obj:`False`)
        log (bool, optional): Let PyG print progress while processing.
            (default: :obj:`True`)

    Raises:
        FileNotFoundError: If the ``.npz`` file does not exist.
        ValueError: If ``split`` is invalid or the ``.npz`` file is corrupt.

    A processed cache that fails to load (for example a file truncated by a
    killed process) or that was built from a different ``.npz`` file is
    rebuilt. Cache files are written to a temporary name and renamed, so a
    reader never sees a partly written file under the final name.
    """

    def __init__(
        self,
        root: Optional[str] = None,
        split: str = "train",
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        pre_filter: Optional[Callable] = None,
        path: Optional[str] = None,
        force_reload: bool = False,
        log: bool = True,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"Invalid 'split' {split!r}. Use one of {list(SPLITS)}.")
        self.split = split
        self.path = osp.abspath(path) if path is not None else default_npz_path()
        self._arrays = read_sh3d_npz(self.path)
        self._source_sha256 = file_sha256(self.path)
        self._use_cache = root is not None
        if self._use_cache:
            _remove_unreadable_metadata(osp.join(osp.expanduser(root), "processed"))

        super().__init__(root, transform, pre_transform, pre_filter, log=log,
                         force_reload=force_reload)

        if self._use_cache:
            self._load_cache()
        else:
            self._set_data(self._build_split(split))

    @property
    def has_process(self) -> bool:
        # Without a root there is no cache to process into.
        return self._use_cache

    @property
    def raw_file_names(self) -> List[str]:
        return []

    @property
    def processed_file_names(self) -> List[str]:
        return [f"{split}.pt" for split in SPLITS]

    @property
    def classes(self) -> List[str]:
        """Class names, indexed by ``y``."""
        return [str(name) for name in self._arrays["classes"]]

    @property
    def num_classes(self) -> int:
        return len(self._arrays["classes"])

    @property
    def shape_names(self) -> List[str]:
        """Shape names of this split, in dataset order (before
        ``pre_filter``), as listed in the attribution file."""
        mask = self._arrays["split"] == self.split
        return [str(name) for name in self._arrays["shape_names"][mask]]

    def process(self) -> None:
        for split in SPLITS:
            data, slices = self.collate(self._build_split(split))
            payload = {
                "data": data.to_dict(),
                "slices": slices,
                "source_sha256": self._source_sha256,
            }
            path = osp.join(self.processed_dir, f"{split}.pt")
            temporary = f"{path}.tmp.{os.getpid()}"
            torch.save(payload, temporary)
            os.replace(temporary, path)

    def _build_split(self, split: str) -> List[Data]:
        arrays = self._arrays
        data_list = []
        for i in np.flatnonzero(arrays["split"] == split):
            data = Data(
                pos=torch.from_numpy(arrays["points"][i].astype(np.float32)),
                normal=torch.from_numpy(arrays["normals"][i].astype(np.float32)),
                y=torch.tensor([int(arrays["labels"][i])], dtype=torch.long),
            )
            if self.pre_filter is not None and not self.pre_filter(data):
                continue
            if self.pre_transform is not None:
                data = self.pre_transform(data)
            data_list.append(data)
        return data_list

    def _set_data(self, data_list: List[Data]) -> None:
        self.data, self.slices = self.collate(data_list)

    def _read_cache(self) -> Optional[dict]:
        path = osp.join(self.processed_dir, f"{self.split}.pt")
        try:
            payload = torch.load(path, weights_only=True)
        except _CACHE_READ_ERRORS:
            return None
        if not isinstance(payload, dict) or payload.get("source_sha256") != self._source_sha256:
            return None
        return payload

    def _load_cache(self) -> None:
        payload = self._read_cache()
        if payload is None:
            # Truncated, unreadable or built from another .npz file.
            os.makedirs(self.processed_dir, exist_ok=True)
            self.process()
            payload = self._read_cache()
        if payload is None:
            raise ValueError(
                f"Cannot read the processed cache in {self.processed_dir} right after "
                f"rebuilding it. Delete that folder and try again."
            )
        self.data = Data.from_dict(payload["data"])
        self.slices = payload["slices"]

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self)}, split={self.split!r})"
