"""Crash-safe processed caches: atomic file writes and content digests."""

import hashlib
import os
import os.path as osp
from typing import Callable


def file_sha256(path: str) -> str:
    """Return the SHA-256 hex digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def replace_atomically(write: Callable[[str], None], path: str) -> None:
    """Write ``path`` through ``write(temporary_path)`` in the same folder,
    flush it to disk, then rename it to ``path``.

    A process killed during ``write`` leaves only the temporary file behind,
    never a half-written file under the final name.
    """
    tmp_path = f"{path}.tmp-{os.getpid()}"
    try:
        write(tmp_path)
        with open(tmp_path, "rb") as file:
            os.fsync(file.fileno())
        os.replace(tmp_path, path)
    finally:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
