"""Restricted unpickling: data loads, code-running pickles are rejected."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from plsc_cli.data.kvbin import read_kv_bin
from plsc_cli.data.safe_pickle import UnsafePickleError, safe_load
from plsc_cli.data.verification import load_verification_set
from plsc_cli.errors import PlscError
from tests.data_helpers import jpeg_bytes, py2_pickle


class RunsCommand:
    """Pickles to a call of os.system, the classic pickle exploit."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def malicious_verification_pickle(marker: Path) -> bytes:
    return pickle.dumps(([jpeg_bytes(0), RunsCommand(marker)], [True]))


def test_exploit_runs_with_plain_pickle(tmp_path: Path) -> None:
    # Control: the payload does run a command when loaded with pickle.loads.
    marker = tmp_path / "ran"
    pickle.loads(malicious_verification_pickle(marker))
    assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_exploit_rejected_by_safe_load(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(RunsCommand(marker), protocol=protocol))
    with pytest.raises(UnsafePickleError, match=r"evil.bin: rejected pickle global"):
        safe_load(path)
    assert not marker.exists()


def test_exploit_rejected_by_verification_loader(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "lfw.bin"
    path.write_bytes(malicious_verification_pickle(marker))
    with pytest.raises(UnsafePickleError, match=r"lfw.bin: .*'posix.system'"):
        load_verification_set(path)
    assert not marker.exists()


def test_exploit_rejected_by_kv_bin_reader(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    value = pickle.dumps(RunsCommand(marker))
    path = tmp_path / "a.bin"
    path.write_bytes(
        len(b"a.jpg").to_bytes(4, "little")
        + b"a.jpg"
        + len(value).to_bytes(4, "little")
        + value
    )
    with pytest.raises(UnsafePickleError, match=r"a.bin: rejected pickle global"):
        read_kv_bin(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "forbidden",
    [eval, getattr, __import__, np.load, pickle.loads],
    ids=["eval", "getattr", "import", "np.load", "pickle.loads"],
)
def test_other_globals_rejected(forbidden: object) -> None:
    class Reduce:
        def __reduce__(self) -> tuple:
            return (forbidden, ("1",))

    with pytest.raises(UnsafePickleError, match="rejected pickle global"):
        safe_load(pickle.dumps(Reduce()), name="data")


def test_codecs_encode_only_latin1() -> None:
    data = pickle.dumps(b"\x00\xffab", protocol=2)
    assert b"_codecs" in data
    assert safe_load(data) == b"\x00\xffab"
    crafted = data.replace(b"latin1", b"rot_13")
    with pytest.raises(PlscError, match="only latin1"):
        safe_load(crafted)
    unknown = data.replace(b"latin1", b"nosuch")
    with pytest.raises(PlscError, match="corrupt pickle"):
        safe_load(unknown)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_data_loads(protocol: int) -> None:
    value = (
        [np.arange(10, dtype=np.uint8), b"", b"abc", bytearray(b"x")],
        [True, np.bool_(False)],
        np.arange(6, dtype=np.float32).reshape(2, 3),
    )
    loaded = safe_load(pickle.dumps(value, protocol=protocol))
    assert loaded[0][0].tolist() == list(range(10))
    assert loaded[0][1:] == [b"", b"abc", bytearray(b"x")]
    assert loaded[1] == [True, False]
    assert loaded[2].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_python2_pickle_loads() -> None:
    first = jpeg_bytes(1)
    second = np.frombuffer(jpeg_bytes(2), dtype=np.uint8)
    bins, issame = safe_load(py2_pickle([first, second], [False]))
    assert bins[0] == first
    assert bins[1].tobytes() == second.tobytes()
    assert issame == [False]


def test_invalid_pickle_names_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.bin"
    path.write_bytes(pickle.dumps([1, 2, 3])[:-3])
    with pytest.raises(PlscError, match=r"broken.bin: not a valid pickle"):
        safe_load(path)
