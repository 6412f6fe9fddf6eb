"""PyG's ZINC dataset, built only from local files.

:class:`torch_geometric.datasets.ZINC` downloads its archive whenever a raw
file is missing. :class:`ZINC` here never opens a connection: it processes the
raw files when they are present, extracts a ``molecules.zip`` archive placed
in ``root``, and otherwise raises
:class:`~samsa_geo.datasets.offline.RawFilesMissingError` at once, naming the
download URL and the folder for the files.
"""

import os
import os.path as osp
import shutil
from typing import Callable, List, Optional

import torch_geometric.datasets
from torch_geometric.data import extract_zip

from samsa_geo.datasets.offline import OfflineDownloadMixin

SPLITS = ("train", "val", "test")


class ZINC(OfflineDownloadMixin, torch_geometric.datasets.ZINC):
    r"""The ZINC dataset of PyG's :class:`torch_geometric.datasets.ZINC`
    (about 250,000 molecular graphs, or the 12,000-graph subset of
    `"Benchmarking Graph Neural Networks" <https://arxiv.org/abs/2003.00982>`_),
    built without network access.

    Items are identical to those of PyG's class: ``x`` ``[n, 1]`` long atom
    labels, ``edge_index`` ``[2, 2m]`` long, ``edge_attr`` ``[2m]`` long bond
    types and ``y`` ``[1]`` float, the normalized penalized logP. The
    processed files are the same too, so both classes can share a ``root``.

    Raw files go to ``root/raw``: ``train.pickle``, ``val.pickle`` and
    ``test.pickle`` from the archive at :attr:`url` (the archive unpacks them
    into a folder ``molecules``), and for ``subset=True`` also
    ``train.index``, ``val.index`` and ``test.index`` from :attr:`split_url`.
    An archive saved as ``root/molecules.zip`` is extracted into ``root/raw``
    on first use.

    Args:
        root (str): Root directory of the dataset.
        subset (bool, optional): If :obj:`True`, load the 12,000-graph subset
            (10,000 / 1,000 / 1,000) selected by the ``.index`` files.
            (default: :obj:`False`)
        split (str, optional): ``"train"``, ``"val"`` or ``"test"``.
            (default: :obj:`"train"`)
        transform (callable, optional): Transform applied to every item on
            access. (default: :obj:`None`)
        pre_transform (callable, optional): Transform applied to every item
            before it is saved to disk. (default: :obj:`None`)
        pre_filter (callable, optional): Function that returns whether an item
            is kept. (default: :obj:`None`)
        force_reload (bool, optional): Whether to process the raw files again.
            (default: :obj:`False`)

    Raises:
        RawFilesMissingError: If a raw file is missing and ``root`` contains no
            ``molecules.zip``. It is a :class:`FileNotFoundError`.
        ValueError: If :obj:`split` is not one of the three splits.
    """

    offline_url = torch_geometric.datasets.ZINC.url
    archive_name = "molecules.zip"

    def __init__(
        self,
        root: str,
        subset: bool = False,
        split: str = "train",
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        pre_filter: Optional[Callable] = None,
        force_reload: bool = False,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(
                f"Invalid 'split' {split!r}. Use one of {', '.join(map(repr, SPLITS))}."
            )
        self.split = split
        super().__init__(root, subset, split, transform, pre_transform, pre_filter,
                         force_reload=force_reload)

    @property
    def raw_file_names(self) -> List[str]:
        # PyG's process() reads the .index files only for the subset, so the
        # full set does not require them.
        names = [f"{split}.pickle" for split in SPLITS]
        if self.subset:
            names += [f"{split}.index" for split in SPLITS]
        return names

    @property
    def offline_hint(self) -> str:
        lines = [
            f"The archive unpacks to a folder 'molecules'. Move its files into "
            f"'{self.raw_dir}', or save the archive itself as "
            f"'{osp.join(self.root, self.archive_name)}' to have it extracted."
        ]
        if self.subset:
            urls = ", ".join(self.split_url.format(split) for split in SPLITS)
            lines.append(f"subset=True also needs the split files {urls} in '{self.raw_dir}'.")
        return "\n".join(lines)

    def download(self) -> None:
        """Extract ``root/molecules.zip`` when it is present, then check that
        every raw file exists. No network access takes place."""
        archive = osp.join(self.root, self.archive_name)
        if osp.exists(archive):
            self._extract_archive(archive)

        super().download()

    def _extract_archive(self, archive: str) -> None:
        extract_zip(archive, self.root, log=False)

        extracted = osp.join(self.root, "molecules")
        if not osp.isdir(extracted):
            return

        os.makedirs(self.raw_dir, exist_ok=True)
        for name in os.listdir(extracted):
            os.replace(osp.join(extracted, name), osp.join(self.raw_dir, name))
        shutil.rmtree(extracted)
