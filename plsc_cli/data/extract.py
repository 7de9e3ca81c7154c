"""Extract a RecordIO dataset into ``images/%08d.<ext>`` files and ``label.txt``.

By default each record's encoded image bytes are written unchanged, which is
lossless and avoids a decode. With ``reencode`` each image is decoded and
written as JPEG quality 100 instead. Every file goes through a temporary name
and a rename, so an interrupted run leaves only complete files, and a rerun
skips the images that already exist.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plsc_cli.data.fileio import (
    remove_stale_temp_files,
    temp_path_for,
    write_bytes_atomic,
    write_text_atomic,
)
from plsc_cli.data.image import (
    ImageDecodeError,
    decode_image_bgr,
    encode_jpeg,
    image_extension,
)
from plsc_cli.data.recordio import (
    RecordIOIndex,
    RecordIOReader,
    record_class,
    scan_recordio,
    unpack_payload,
)
from plsc_cli.data.verification import load_verification_pickle
from plsc_cli.errors import PlscError, PlscUsageError

logger = logging.getLogger(__name__)

IMAGES_DIR = "images"
LABEL_FILE = "label.txt"
SUMMARY_FILE = "extract_summary.json"
SETTINGS_FILE = "extract_settings.json"
REENCODE_QUALITY = 100
CHUNK_SIZE = 256


@dataclass(frozen=True, slots=True)
class ExtractedRecord:
    key: int
    label: int  # the record's own class label
    file_name: str
    written: bool  # False when the file existed from an earlier run


def image_file_name(key: int, extension: str) -> str:
    return f"{key:08d}{extension}"


def class_count_summary(labels: np.ndarray) -> dict[str, Any]:
    """Return images, classes and images per class (min, median, max)."""
    counts = np.bincount(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    present = counts[counts > 0]
    per_class = {"min": 0, "median": 0.0, "max": 0}
    if present.size:
        per_class = {
            "min": int(present.min()),
            "median": float(np.median(present)),
            "max": int(present.max()),
        }
    return {
        "images": int(len(labels)),
        "classes": int(present.size),
        "images_per_class": per_class,
    }


# Per-process state of the extraction workers, set by _init_worker.
_worker: dict[str, Any] = {}


def _init_worker(reader: RecordIOReader, images_dir: Path, reencode: bool) -> None:
    if reencode:
        import cv2

        # One OpenCV thread per process: the processes already use the cores.
        cv2.setNumThreads(1)
    _worker.update(reader=reader, images_dir=images_dir, reencode=reencode)


def _encode_record(key: int, image: bytes, where: str) -> tuple[bytes, str]:
    if not image:
        raise PlscError(f"{where}: the record has no image bytes (empty payload)")
    try:
        if _worker["reencode"]:
            return encode_jpeg(decode_image_bgr(image), REENCODE_QUALITY), ".jpg"
        return image, image_extension(image)
    except ImageDecodeError as exc:
        raise PlscError(f"{where}: {exc}") from None


def _extract_chunk(
    task: tuple[int, list[int], list[str | None]],
) -> tuple[int, list[ExtractedRecord]]:
    """Write the images of one chunk of keys; existing files are only labelled."""
    chunk_id, keys, existing = task
    reader: RecordIOReader = _worker["reader"]
    images_dir: Path = _worker["images_dir"]
    results: list[ExtractedRecord] = []
    for key, existing_name in zip(keys, existing, strict=True):
        where = f"{reader.rec_path}: record {key}"
        if existing_name is not None:
            label = record_class(reader.read_header(key), where)
            results.append(ExtractedRecord(key, label, existing_name, False))
            continue
        try:
            header, image = unpack_payload(reader.read(key))
        except ValueError as exc:
            raise PlscError(f"{where}: {exc}") from None
        label = record_class(header, where)
        data, extension = _encode_record(key, image, where)
        name = image_file_name(key, extension)
        write_bytes_atomic(images_dir / name, data)
        results.append(ExtractedRecord(key, label, name, True))
    return chunk_id, results


def _existing_images(images_dir: Path) -> dict[str, str]:
    """Map file stem to file name for images finished by an earlier run."""
    existing: dict[str, str] = {}
    with os.scandir(images_dir) as entries:
        for entry in entries:
            if not entry.name.startswith("."):
                existing[entry.name.rsplit(".", 1)[0]] = entry.name
    return existing


def _check_settings(output_dir: Path, rec_path: Path, reencode: bool) -> None:
    """Reject resuming an extraction that used other settings."""
    path = output_dir / SETTINGS_FILE
    settings = {"rec_path": str(rec_path.resolve()), "reencode": reencode}
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous.get("reencode") != reencode:
            flag = "--reencode" if previous.get("reencode") else "no --reencode"
            raise PlscUsageError(
                f"{output_dir} contains an extraction made with {flag}; rerun with the "
                "same options to resume, or use an empty --output-dir"
            )
        if previous.get("rec_path") != settings["rec_path"]:
            raise PlscUsageError(
                f"{output_dir} contains an extraction of {previous.get('rec_path')}; "
                "use an empty --output-dir for another dataset"
            )
    write_text_atomic(path, json.dumps(settings, indent=2) + "\n")


def copy_verification_sets(root_dir: Path, output_dir: Path) -> list[str]:
    """Check every ``*.bin`` in ``root_dir`` with the safe loader and copy it.

    A file that the restricted unpickler rejects raises :class:`PlscError`
    before anything is copied. Files already copied with the same size are kept.
    """
    sources = sorted(p for p in root_dir.glob("*.bin") if p.is_file())
    for source in sources:
        load_verification_pickle(source)
    for source in sources:
        target = output_dir / source.name
        if target.is_file() and target.stat().st_size == source.stat().st_size:
            continue
        temp = temp_path_for(target)
        shutil.copyfile(source, temp)
        os.replace(temp, target)
    return [p.name for p in sources]


def _chunks(
    index: RecordIOIndex, existing: dict[str, str]
) -> Iterator[tuple[int, list[int], list[str | None]]]:
    keys = index.keys.tolist()
    for chunk_id, start in enumerate(range(0, len(keys), CHUNK_SIZE)):
        chunk = keys[start : start + CHUNK_SIZE]
        yield chunk_id, chunk, [existing.get(f"{key:08d}") for key in chunk]


def _run_chunks(
    reader: RecordIOReader,
    images_dir: Path,
    index: RecordIOIndex,
    existing: dict[str, str],
    reencode: bool,
    workers: int,
    progress: Callable[[int], None] | None,
) -> list[ExtractedRecord]:
    results: dict[int, list[ExtractedRecord]] = {}
    tasks = _chunks(index, existing)
    if workers == 1:
        _init_worker(reader, images_dir, reencode)
        for task in tasks:
            chunk_id, records = _extract_chunk(task)
            results[chunk_id] = records
            if progress is not None:
                progress(len(records))
    else:
        # fork shares the reader and its numpy index with the workers; each
        # worker reopens the .rec file on first use.
        context = multiprocessing.get_context("fork")
        with context.Pool(
            workers, initializer=_init_worker, initargs=(reader, images_dir, reencode)
        ) as pool:
            for chunk_id, records in pool.imap_unordered(_extract_chunk, tasks):
                results[chunk_id] = records
                if progress is not None:
                    progress(len(records))
    return [record for chunk_id in sorted(results) for record in results[chunk_id]]


def extract_recordio(
    root_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    reencode: bool = False,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Extract a RecordIO dataset and return the summary that is also saved.

    Writes ``images/%08d.<ext>`` (the record key, the extension of the image
    format), ``label.txt`` (``images/00000001.jpg<TAB>0``), a copy of each
    verification ``*.bin`` and ``extract_summary.json``. ``on_start`` receives
    the number of image records before extraction starts and ``progress`` the
    number done since its last call.
    """
    root_dir = Path(root_dir)
    output_dir = Path(output_dir)
    start_time = time.perf_counter()
    index = scan_recordio(root_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(output_dir, index.rec_path, reencode)
    verification_sets = copy_verification_sets(index.rec_path.parent, output_dir)

    images_dir = output_dir / IMAGES_DIR
    images_dir.mkdir(exist_ok=True)
    stale = remove_stale_temp_files(images_dir)
    if stale:
        logger.info("removed %d partial files left by an interrupted run", stale)
    existing = _existing_images(images_dir)
    if on_start is not None:
        on_start(len(index))

    with RecordIOReader(index.rec_path, index.idx_path) as reader:
        try:
            records = _run_chunks(
                reader, images_dir, index, existing, reencode, workers, progress
            )
        except BaseException:
            # The workers are stopped by now, so any temporary file is partial.
            remove_stale_temp_files(images_dir)
            raise
    labels = np.array([r.label for r in records], dtype=np.int64)

    # The InsightFace identity records and each image record's own label must
    # agree; label.txt uses the record's own label, as the original tools do.
    mismatches = int((labels != index.labels).sum())
    if mismatches:
        first = int(np.flatnonzero(labels != index.labels)[0])
        logger.warning(
            "%s: %d image records have a label that differs from their identity "
            "record (first: record %d, label %d, identity record %d); label.txt "
            "uses the label of the image record",
            index.rec_path,
            mismatches,
            records[first].key,
            records[first].label,
            int(index.labels[first]),
        )
    label_text = "".join(f"{IMAGES_DIR}/{r.file_name}\t{r.label}\n" for r in records)
    label_path = output_dir / LABEL_FILE
    if not label_path.is_file() or label_path.read_text("utf-8") != label_text:
        write_text_atomic(label_path, label_text)

    seconds = time.perf_counter() - start_time
    written = sum(r.written for r in records)
    summary = {
        **class_count_summary(labels),
        "layout": index.layout,
        "num_classes": index.num_classes,
        "written": written,
        "skipped_existing": len(records) - written,
        "label_mismatches": mismatches,
        "verification_sets": verification_sets,
        "reencode": reencode,
        "workers": workers,
        "seconds": round(seconds, 3),
        "records_per_second": round(len(records) / max(seconds, 1e-9), 1),
        "rec_path": str(index.rec_path),
    }
    write_text_atomic(output_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary
