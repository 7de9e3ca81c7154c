"""Load pickles from untrusted files without running code from them.

Verification sets (``lfw.bin`` and friends) and kv ``.bin`` image files are
pickles. ``pickle.load`` calls whatever global a file names, so a crafted file
can run any command. :func:`safe_load` resolves only the globals these files
need (bytes, containers and numpy array, dtype and scalar reconstruction) and
raises :class:`UnsafePickleError` for every other global before calling it.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from plsc_cli.errors import PlscError

try:  # numpy >= 2 moved numpy.core to numpy._core
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


class UnsafePickleError(PlscError):
    """A pickle names a global outside the allowed set; nothing from it ran."""


def _encode_latin1(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Python 3 writes ``bytes`` at pickle protocol 2 as _codecs.encode(str,
    # "latin1"). Any other codec name is rejected so that a file cannot pick one.
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(
            f"_codecs.encode with encoding {encoding!r} is not allowed (only latin1)"
        )
    return text.encode("latin1", errors)


# (module, name) -> object. Python 2 pickles name the builtins module
# "__builtin__"; numpy 1.x pickles name "numpy.core", numpy 2 "numpy._core".
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _encode_latin1,
}
for _builtin_module in ("builtins", "__builtin__"):
    for _name, _obj in {
        "bytes": bytes,
        "bytearray": bytearray,
        "set": set,
        "frozenset": frozenset,
        "complex": complex,
    }.items():
        _ALLOWED[(_builtin_module, _name)] = _obj
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(f"{_core}.multiarray", "scalar")] = _multiarray.scalar
    _ALLOWED[(f"{_core}.numeric", "_frombuffer")] = _numeric._frombuffer  # type: ignore[attr-defined]


def allowed_globals() -> list[str]:
    """Return the ``module.name`` globals that :func:`safe_load` resolves."""
    return sorted(f"{module}.{name}" for module, name in _ALLOWED)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str, encoding: str) -> None:
        super().__init__(file, encoding=encoding)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: rejected pickle global '{module}.{name}'; "
                "this file may run code when loaded with pickle, so plsc does not "
                "load it (only numpy arrays, bytes and plain containers are allowed)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"{self._source}: rejected pickle persistent id {pid!r}; "
            "only self-contained pickles are loaded"
        )


def safe_load(
    source: str | os.PathLike[str] | bytes,
    *,
    encoding: str = "bytes",
    name: str | None = None,
) -> Any:
    """Unpickle a file or byte string, allowing only data globals.

    ``encoding`` applies to Python 2 ``str`` objects: ``"bytes"`` keeps them as
    ``bytes`` (encoded images stay intact), ``"latin1"`` turns them into ``str``.
    ``name`` labels the data in error messages when ``source`` is bytes.

    Raises :class:`UnsafePickleError` for a forbidden global, and
    :class:`PlscError` for a file that is missing or is not a valid pickle.
    """
    if isinstance(source, bytes | bytearray):
        label = name or "pickle data"
        data = bytes(source)
    else:
        path = Path(source)
        label = name or str(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise PlscError(f"file not found: {path}") from None
        except OSError as exc:
            raise PlscError(f"cannot read {path}: {exc.strerror}") from None
    unpickler = _RestrictedUnpickler(io.BytesIO(data), label, encoding)
    try:
        return unpickler.load()
    except PlscError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise PlscError(
            f"{label}: not a valid pickle ({type(exc).__name__}: {exc})"
        ) from None
    except (
        AttributeError,
        IndexError,
        KeyError,
        LookupError,
        MemoryError,
        RecursionError,
    ) as exc:
        raise PlscError(
            f"{label}: corrupt pickle ({type(exc).__name__}: {exc})"
        ) from None
