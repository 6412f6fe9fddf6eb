"""Fail fast, with instructions, when a dataset's raw files are missing.

PyG datasets call :meth:`download` when a file of ``raw_file_names`` is
missing. On a machine without access to the dataset's host, that download
can hang until a socket timeout or end in a long network traceback. Datasets in
samsa_geo instead raise :class:`RawFilesMissingError` at once. Its message
names the download URL and the folder that must contain the extracted files.

Use :func:`require_raw_files` inside a dataset, :class:`OfflineDownloadMixin`
to replace a PyG dataset's :meth:`download`, and :func:`block_network` to make
any network access inside a ``with`` block raise at once.
"""

import contextlib
import os.path as osp
import socket
from typing import Iterator, Optional, Sequence, Union


class RawFilesMissingError(FileNotFoundError):
    """Raw files of a dataset are missing, and samsa_geo does not download them.

    Attributes:
        dataset_name (str): Name of the dataset.
        raw_dir (str): Folder that must contain the raw files.
        missing (list of str): Missing file or folder names, relative to
            :obj:`raw_dir`.
        url (str or None): Where the raw files can be downloaded.
    """

    def __init__(self, dataset_name: str, raw_dir: str, missing: Sequence[str],
                 url: Optional[str], hint: Optional[str] = None) -> None:
        self.dataset_name = dataset_name
        self.raw_dir = raw_dir
        self.missing = list(missing)
        self.url = url
        super().__init__(self._message(hint))

    def _message(self, hint: Optional[str]) -> str:
        missing_text = ", ".join(self.missing[:5])
        if len(self.missing) > 5:
            missing_text += f", ... ({len(self.missing)} in all)"
        lines = [
            f"{self.dataset_name}: raw files not found in '{self.raw_dir}' "
            f"(missing: {missing_text}). samsa_geo does not download datasets.",
        ]
        if self.url is not None:
            lines.append(
                f"Download {self.url} on a machine with network access and "
                f"extract it so that the missing entries exist directly inside "
                f"'{self.raw_dir}'."
            )
        if hint:
            lines.append(hint)
        return "\n".join(lines)


class NetworkBlockedError(ConnectionError):
    """A network connection was attempted inside :func:`block_network`."""


def require_raw_files(
    raw_dir: str,
    names: Union[str, Sequence[str]],
    url: Optional[str],
    dataset_name: str,
    hint: Optional[str] = None,
) -> None:
    """Raise :class:`RawFilesMissingError` unless every raw file exists.

    Args:
        raw_dir (str): Folder that must contain the raw files, usually a
            dataset's :obj:`raw_dir` (``root/raw``).
        names (str or list of str): File or folder names relative to
            :obj:`raw_dir`.
        url (str, optional): Download URL to show in the message.
        dataset_name (str): Dataset name to show in the message, for example
            ``"ModelNet10"``.
        hint (str, optional): Extra sentence for the message, for example how
            to rename the extracted folder. (default: :obj:`None`)

    Raises:
        RawFilesMissingError: If an entry of :obj:`names` does not exist. It
            is a :class:`FileNotFoundError`.
    """
    if isinstance(names, str):
        names = [names]

    missing = [name for name in names if not osp.exists(osp.join(raw_dir, name))]
    if missing or len(names) == 0:
        raise RawFilesMissingError(dataset_name, raw_dir, missing or ["<no names given>"],
                                   url, hint)


class OfflineDownloadMixin:
    """Replace a PyG dataset's :meth:`download` with
    :func:`require_raw_files`.

    List the mixin before the PyG dataset class, so that its :meth:`download`
    wins. PyG calls :meth:`download` only when a raw file is missing, so the
    mixin raises :class:`RawFilesMissingError` at once instead of opening a
    connection.

    .. code-block:: python

        class ZINC(OfflineDownloadMixin, torch_geometric.datasets.ZINC):
            offline_url = torch_geometric.datasets.ZINC.url

    Attributes:
        offline_url (str, optional): Download URL for the message. Override
            :meth:`offline_download_url` if it depends on the instance.
        offline_hint (str, optional): Extra sentence for the message.
    """

    offline_url: Optional[str] = None
    offline_hint: Optional[str] = None

    def offline_download_url(self) -> Optional[str]:
        """Return the URL to show in the error message."""
        return self.offline_url

    def offline_dataset_name(self) -> str:
        """Return the dataset name to show in the error message."""
        return type(self).__name__

    def download(self) -> None:
        require_raw_files(
            self.raw_dir,
            self.raw_file_names,
            self.offline_download_url(),
            self.offline_dataset_name(),
            self.offline_hint,
        )


@contextlib.contextmanager
def block_network() -> Iterator[None]:
    """Make every socket connection inside the ``with`` block raise
    :class:`NetworkBlockedError` at once.

    It patches :meth:`socket.socket.connect`, :meth:`socket.socket.connect_ex`,
    :func:`socket.create_connection` and :func:`socket.getaddrinfo` (so name
    lookups fail at once too) for the whole process, so it is meant
    for tests and single-threaded scripts. Other threads lose network access
    too while the block runs.
    """
    saved = (socket.socket.connect, socket.socket.connect_ex, socket.create_connection,
             socket.getaddrinfo)

    def reject(*args, **kwargs):
        address = args[1] if args and isinstance(args[0], socket.socket) else args[:1]
        raise NetworkBlockedError(
            f"Network access is blocked inside block_network(): a connection "
            f"or name lookup for {address!r} was attempted."
        )

    socket.socket.connect = reject
    socket.socket.connect_ex = reject
    socket.create_connection = reject
    socket.getaddrinfo = reject
    try:
        yield
    finally:
        (socket.socket.connect, socket.socket.connect_ex, socket.create_connection,
         socket.getaddrinfo) = saved
