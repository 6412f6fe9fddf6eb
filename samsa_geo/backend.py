"""Optional compiled backends and the switch that turns them off.

samsa_geo runs on plain PyTorch. When ``torch-scatter`` or ``torch-cluster``
is installed, some operations dispatch to them for speed. Every such operation
also has a pure-PyTorch path that returns the same result, and the tests compare
the two. Set the environment variable ``SAMSA_GEO_PURE=1``, or use
:func:`pure_pytorch`, to force the pure-PyTorch paths.
"""

import contextlib
import importlib.util
import os
from typing import Iterator

_force_pure = os.environ.get("SAMSA_GEO_PURE", "0") not in ("", "0")


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


_HAS = {name: _importable(name) for name in ("torch_scatter", "torch_cluster", "pyg_lib")}


def has(name: str) -> bool:
    """Return whether the optional backend ``name`` is installed and enabled.

    Args:
        name (str): One of ``"torch_scatter"``, ``"torch_cluster"`` or
            ``"pyg_lib"``.
    """
    if name not in _HAS:
        raise ValueError(f"Unknown backend name={name!r}. Expected one of {sorted(_HAS)}.")
    return _HAS[name] and not _force_pure


def installed(name: str) -> bool:
    """Return whether the optional backend ``name`` is installed, enabled or not."""
    if name not in _HAS:
        raise ValueError(f"Unknown backend name={name!r}. Expected one of {sorted(_HAS)}.")
    return _HAS[name]


@contextlib.contextmanager
def pure_pytorch(enabled: bool = True) -> Iterator[None]:
    """Force the pure-PyTorch paths inside a ``with`` block.

    Args:
        enabled (bool, optional): If :obj:`False`, the block uses whatever
            backends are installed. (default: :obj:`True`)
    """
    global _force_pure
    previous = _force_pure
    _force_pure = enabled
    try:
        yield
    finally:
        _force_pure = previous
