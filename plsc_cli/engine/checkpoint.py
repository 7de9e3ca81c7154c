"""Checkpoints: one folder per save, written completely before it is renamed.

Layout of ``ckpt-<step>/``::

    meta.json             step, epoch, world size, class split, config, version
    backbone.npz          backbone weights (rank 0; every rank has the same)
    optimizer.npz         backbone optimizer state (momentum, master weights)
    head-rank<r>.npz      class centers and their momentum of rank r's classes
    rng-rank<r>.json      seeds and data-order state of rank r

Arrays are stored with ``numpy.savez`` and read with ``allow_pickle=False``;
everything else is JSON, so loading a checkpoint never unpickles objects.

Every rank writes its own files into ``.ckpt-<step>.tmp``; after a barrier,
rank 0 writes meta.json last, renames the folder to ``ckpt-<step>`` and deletes
all but the newest ``keep_last``. A folder without meta.json is never loaded.
NOTE: with several nodes the run folder must be on a file system that every
node sees, because all ranks write into the same folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plsc_cli.errors import PlscError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHECKPOINT_PATTERN = re.compile(r"ckpt-(\d+)")
BEST_NAME = "best"
META_FILE = "meta.json"
BACKBONE_FILE = "backbone.npz"
OPTIMIZER_FILE = "optimizer.npz"


def head_file(rank: int) -> str:
    return f"head-rank{rank}.npz"


def rng_file(rank: int) -> str:
    return f"rng-rank{rank}.json"


@dataclass
class Checkpoint:
    """A checkpoint read back for one rank."""

    path: Path
    meta: dict[str, Any]
    backbone: dict[str, np.ndarray]
    optimizer: dict[str, Any]
    head: dict[str, Any]
    rng: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def checkpoint_dirs(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Return the complete checkpoints in ``run_dir``, oldest step first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for path in run_dir.iterdir():
        match = CHECKPOINT_PATTERN.fullmatch(path.name)
        if match and (path / META_FILE).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """Return the newest complete checkpoint in ``run_dir``, or None."""
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def resolve_resume(resume: str | None, run_dir: str | os.PathLike[str]) -> Path | None:
    """Turn the --resume value into a checkpoint folder (None: start fresh)."""
    if resume is None:
        return None
    if resume == "auto":
        return latest_checkpoint(run_dir)
    path = Path(resume)
    if path.is_dir() and not (path / META_FILE).is_file():
        # A run folder: take its newest checkpoint.
        latest = latest_checkpoint(path)
        if latest is not None:
            return latest
    if not (path / META_FILE).is_file():
        raise PlscError(
            f"--resume {resume}: no complete checkpoint there ({META_FILE} missing); "
            "give a ckpt-<step> folder, a run folder, or 'auto'"
        )
    return path


def flatten_state(state: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """Flatten a nested state dict of tensors and numbers into {"a/b": array}."""
    flat: dict[str, np.ndarray] = {}
    for key, value in state.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_state(value, prefix=name + "/"))
        elif hasattr(value, "numpy"):
            flat[name] = np.asarray(value.numpy())
        else:
            flat[name] = np.asarray(value)
    return flat


def unflatten_state(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    """Invert :func:`flatten_state`; 0-d arrays come back as Python numbers."""
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        parts = name.split("/")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value.item() if value.ndim == 0 else value
    return nested


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, allow_pickle=False, **arrays)  # type: ignore[arg-type]
        f.flush()
        os.fsync(f.fileno())


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise PlscError(f"checkpoint file missing: {path}; the checkpoint is damaged")
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _write_json(path: Path, value: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _head_arrays(head_state: dict[str, Any]) -> dict[str, np.ndarray]:
    return {key: np.asarray(value) for key, value in head_state.items()}


def _head_from_arrays(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return {k: (v.item() if v.ndim == 0 else v) for k, v in arrays.items()}


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    *,
    step: int,
    rank: int,
    world_size: int,
    meta: dict[str, Any],
    backbone: dict[str, Any] | None,
    optimizer: dict[str, Any] | None,
    head: dict[str, Any],
    rng: dict[str, Any],
    keep_last: int,
    barrier: Any,
) -> Path:
    """Write ``ckpt-<step>`` atomically; every rank calls this with its parts.

    ``backbone`` and ``optimizer`` are needed from rank 0 only; ``barrier`` is a
    callable that waits for every rank. Returns the final folder.
    """
    run_dir = Path(run_dir)
    final = run_dir / f"ckpt-{step}"
    temp = run_dir / f".ckpt-{step}.tmp"

    # Rank 0 clears a folder left by a crashed save before anyone writes.
    if rank == 0:
        if temp.exists():
            shutil.rmtree(temp)
        temp.mkdir(parents=True)
    barrier()

    # Each rank writes its own shard; rank 0 also writes the replicated backbone.
    _save_npz(temp / head_file(rank), _head_arrays(head))
    _write_json(temp / rng_file(rank), rng)
    if rank == 0:
        if backbone is None or optimizer is None:
            raise ValueError("rank 0 must pass the backbone and optimizer states")
        _save_npz(temp / BACKBONE_FILE, flatten_state(backbone))
        _save_npz(temp / OPTIMIZER_FILE, flatten_state(optimizer))
    barrier()

    # meta.json is written last, so a folder with it is complete.
    if rank == 0:
        meta = dict(meta, format_version=FORMAT_VERSION, step=step)
        meta["world_size"] = world_size
        _write_json(temp / META_FILE, meta)
        if final.exists():
            shutil.rmtree(final)
        os.replace(temp, final)
        prune_checkpoints(run_dir, keep_last)
        logger.info("saved checkpoint %s", final)
    barrier()
    return final


def prune_checkpoints(run_dir: str | os.PathLike[str], keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (never ``best``)."""
    dirs = checkpoint_dirs(run_dir)
    best_target = _best_target(Path(run_dir))
    for path in dirs[: max(0, len(dirs) - keep_last)]:
        if best_target is not None and path.resolve() == best_target:
            continue
        shutil.rmtree(path, ignore_errors=True)


def _best_target(run_dir: Path) -> Path | None:
    best = run_dir / BEST_NAME
    if best.is_symlink():
        return best.resolve()
    return None


def mark_best(
    run_dir: str | os.PathLike[str], checkpoint: Path, accuracy: float | None = None
) -> Path:
    """Copy ``checkpoint`` to ``<run_dir>/best`` (atomically replaced).

    With ``accuracy``, the copy's meta.json records it as ``best_accuracy``: the
    checkpoint may have been saved before the validation that made it the best.
    """
    run_dir = Path(run_dir)
    best = run_dir / BEST_NAME
    temp = run_dir / ".best.tmp"
    if temp.exists():
        shutil.rmtree(temp)
    shutil.copytree(checkpoint, temp)
    if accuracy is not None:
        meta_path = temp / META_FILE
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["best_accuracy"] = accuracy
        meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if best.is_symlink() or best.is_file():
        best.unlink()
    elif best.exists():
        shutil.rmtree(best)
    os.replace(temp, best)
    return best


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise PlscError(f"{path} is not a complete checkpoint: {META_FILE} missing")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise PlscError(
            f"{path}: checkpoint format {meta.get('format_version')} is not "
            f"supported by this plsc (format {FORMAT_VERSION})"
        )
    return meta


def load_checkpoint(
    path: str | os.PathLike[str], rank: int, world_size: int
) -> Checkpoint:
    """Read the parts of a checkpoint that ``rank`` of ``world_size`` needs.

    When the checkpoint was written by a different number of ranks, every head
    shard is read and the class range is cut again for ``world_size``; the data
    order then restarts from the saved epoch position on the new rank count.
    """
    path = Path(path)
    meta = read_meta(path)
    saved_world = int(meta["world_size"])
    backbone = unflatten_state(_load_npz(path / BACKBONE_FILE))
    optimizer = unflatten_state(_load_npz(path / OPTIMIZER_FILE))
    if saved_world == world_size:
        head = _head_from_arrays(_load_npz(path / head_file(rank)))
        rng = json.loads((path / rng_file(rank)).read_text(encoding="utf-8"))
    else:
        from plsc_cli.distributed.shard import reshard_states

        states = [
            _head_from_arrays(_load_npz(path / head_file(r)))
            for r in range(saved_world)
        ]
        head = reshard_states(states, world_size)[rank]
        rng = json.loads((path / rng_file(0)).read_text(encoding="utf-8"))
        rng["resharded_from"] = saved_world
    return Checkpoint(path, meta, backbone, optimizer, head, rng)
