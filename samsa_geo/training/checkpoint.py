"""Atomic checkpoint files, the rotation of :obj:`last.pt` and
:obj:`previous.pt`, and the random states a resumed run needs.

A checkpoint is written to a temporary file in the target directory, flushed
to disk with :func:`os.fsync`, and moved over the target with
:func:`os.replace`, so a crash leaves either the old or the new file but never
a partial one. A file can still arrive truncated (a full disk, a copy that
stopped), so :func:`load_checkpoint` falls back to :obj:`previous.pt` and warns
with the name of the file it could not read.
"""

import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch
from torch_geometric.warnings import warn

LAST = "last.pt"
PREVIOUS = "previous.pt"
BEST = "best.pt"

PathLike = Union[str, os.PathLike]


def atomic_save(obj: Any, path: PathLike) -> None:
    """Write :obj:`obj` with :func:`torch.save` so that :obj:`path` is
    replaced in one step.

    Args:
        obj (Any): Object to save.
        path (str or os.PathLike): Target file. Its directory must exist.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise

    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # The rename itself is durable only once the directory entry is on disk.
    # Some file systems do not allow opening a directory, which is harmless.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(state: Dict[str, Any], out_dir: PathLike) -> Path:
    """Save :obj:`state` as :obj:`out_dir/last.pt` and keep the file it
    replaces as :obj:`out_dir/previous.pt`.

    Args:
        state (dict): Checkpoint contents.
        out_dir (str or os.PathLike): Run directory.

    Returns:
        The path of :obj:`last.pt`.
    """
    out_dir = Path(out_dir)
    last = out_dir / LAST

    if last.exists():
        os.replace(last, out_dir / PREVIOUS)
    atomic_save(state, last)
    return last


def read_checkpoint(path: PathLike) -> Optional[Dict[str, Any]]:
    """Load one checkpoint file on the CPU.

    Returns :obj:`None`, after a warning that names the file, when the file is
    truncated or not a checkpoint. Returns :obj:`None` silently when the file
    does not exist.
    """
    path = Path(path)
    if not path.exists():
        return None

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        warn(f"Cannot read checkpoint '{path}' ({type(error).__name__}: {error}). The file is skipped.")
        return None

    if not isinstance(state, dict) or "epoch" not in state:
        warn(f"Cannot read checkpoint '{path}': it is not a samsa_geo training checkpoint. The file is skipped.")
        return None
    return state


class CheckpointError(RuntimeError):
    """Checkpoint files of a run exist, but none of them can be read."""


def load_checkpoint(out_dir: PathLike) -> Optional[Dict[str, Any]]:
    """Load the newest readable checkpoint of a run directory.

    Tries :obj:`last.pt` first and falls back to :obj:`previous.pt`. Every file
    that exists but cannot be read is named in a warning.

    Args:
        out_dir (str or os.PathLike): Run directory.

    Returns:
        The checkpoint dictionary, or :obj:`None` when the run directory has
        no checkpoint yet.

    Raises:
        CheckpointError: If checkpoint files exist but none can be read, so that
            a finished run is never overwritten by a fresh one.
    """
    out_dir = Path(out_dir)
    for name in (LAST, PREVIOUS):
        state = read_checkpoint(out_dir / name)
        if state is not None:
            return state

    present = [str(out_dir / name) for name in (LAST, PREVIOUS) if (out_dir / name).exists()]
    if present:
        raise CheckpointError(
            f"No checkpoint of '{out_dir}' can be read ({', '.join(present)}). Starting over would "
            f"overwrite the run, so nothing was changed. Move these files away to train from "
            f"scratch, or use a new output folder.")
    return None


def capture_rng_state(generators: List[torch.Generator]) -> Dict[str, Any]:
    """Return the states of the Python, NumPy, PyTorch CPU and CUDA random
    number generators and of extra generators such as a loader's.

    Args:
        generators (list of torch.Generator): Extra generators, in a fixed
            order that :func:`restore_rng_state` receives again.
    """
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "generators": [generator.get_state() for generator in generators],
    }
    return state


def restore_rng_state(state: Dict[str, Any], generators: List[torch.Generator]) -> None:
    """Restore the states captured by :func:`capture_rng_state`.

    Args:
        state (dict): Output of :func:`capture_rng_state`.
        generators (list of torch.Generator): The same extra generators, in
            the same order.
    """
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])

    cuda_states = state.get("cuda")
    if cuda_states is not None and torch.cuda.is_available():
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            warn(
                f"The checkpoint holds CUDA random states of {len(cuda_states)} device(s) but "
                f"{torch.cuda.device_count()} are visible. The CUDA random states are not restored."
            )

    saved = state.get("generators", [])
    if len(saved) != len(generators):
        warn(
            f"The checkpoint holds {len(saved)} loader generator state(s) but the loaders have "
            f"{len(generators)}. The loader generators are not restored, so the data order differs."
        )
        return
    for generator, generator_state in zip(generators, saved):
        generator.set_state(generator_state)
