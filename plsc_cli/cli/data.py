"""``plsc data``: extract, pack and convert face datasets."""

from __future__ import annotations

import logging
import time
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any

import typer

from plsc_cli import console
from plsc_cli.cli._common import OutputDir
from plsc_cli.data.fileio import make_output_dir

logger = logging.getLogger(__name__)

app = typer.Typer(
    help="Extract, pack and convert face datasets (RecordIO, label.txt, kv .bin).",
    no_args_is_help=True,
)


class ProgressBar:
    """A progress bar whose total is set once the work is counted."""

    def __init__(self, description: str, unit: str) -> None:
        self._progress = console.make_progress()
        self._description = description
        self._unit = unit
        self._task: Any = None
        self._done = 0
        self._start = time.perf_counter()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is None:
            return
        if exc_type is not None:
            # Leave only the error message on stderr, without a stale bar.
            # Progress.stop() would also print an empty line when stderr is not
            # a terminal, so stop the live display directly.
            self._progress.remove_task(self._task)
            self._progress.live.transient = True
            if not self._progress.disable:
                self._progress.live.stop()
            return
        self._progress.stop()

    def start(self, total: int) -> None:
        """Show the bar, now that the total is known."""
        self._start = time.perf_counter()
        self._task = self._progress.add_task(self._description, total=total, rate="")
        self._progress.start()

    def advance(self, count: int) -> None:
        self._done += count
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        rate = f"{self._done / elapsed:,.0f} {self._unit}/s"
        self._progress.update(self._task, advance=count, rate=rate)


def log_summary(title: str, summary: dict[str, Any], saved_to: Path | None) -> None:
    """Log the image and class counts of a dataset summary."""
    per_class = summary["images_per_class"]
    logger.info("%s", title)
    logger.info("  images: %s", f"{summary['images']:,}")
    logger.info("  classes: %s", f"{summary['classes']:,}")
    logger.info(
        "  images per class: min %s, median %s, max %s",
        per_class["min"],
        f"{per_class['median']:g}",
        per_class["max"],
    )
    if saved_to is not None:
        logger.info("  summary saved to %s", saved_to)


@app.command("extract")
def extract(
    root_dir: Annotated[
        Path,
        typer.Option(help="Folder with train.rec, train.idx and *.bin sets."),
    ],
    output_dir: OutputDir,
    reencode: Annotated[
        bool,
        typer.Option(help="Decode and re-encode each image as JPEG quality 100."),
    ] = False,
    workers: Annotated[
        int, typer.Option(min=1, help="Number of writer processes.")
    ] = 1,
) -> None:
    """Extract MXNet RecordIO into images/ plus a tab-separated label.txt.

    Rerunning with the same options resumes an interrupted extraction.
    """
    from plsc_cli.data.extract import SUMMARY_FILE, extract_recordio

    make_output_dir(output_dir, "--output-dir")
    console.add_log_file(output_dir)
    logger.debug("extracting %s to %s", root_dir, output_dir)
    logger.debug("options: reencode=%s workers=%d", reencode, workers)
    with ProgressBar("extract", "img") as bar:
        summary = extract_recordio(
            root_dir,
            output_dir,
            reencode=reencode,
            workers=workers,
            progress=bar.advance,
            on_start=bar.start,
        )
    log_summary(
        f"Extracted {summary['rec_path']} to {output_dir} "
        f"({summary['written']:,} written, {summary['skipped_existing']:,} already "
        f"present, {summary['records_per_second']:,.0f} images/s)",
        summary,
        output_dir / SUMMARY_FILE,
    )
    for name in summary["verification_sets"]:
        logger.info("  copied verification set %s", name)


@app.command("pack")
def pack(
    image_dir: Annotated[
        Path,
        typer.Option(
            help="Folder of images: one subfolder per identity, or the folder "
            "that the --label-file paths are relative to."
        ),
    ],
    output_dir: OutputDir,
    label_file: Annotated[
        Path | None,
        typer.Option(help="label.txt (path<TAB>label); default: one folder per id."),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Resize every image to this size x this size pixels and store it "
            "as JPEG quality 100, dropping any alpha channel (default: store the "
            "files unchanged).",
        ),
    ] = None,
) -> None:
    """Pack a label.txt dataset or a folder per identity into RecordIO.

    Writes train.rec, train.idx and property in the InsightFace layout. Without
    --image-size, images are packed unchanged; property records the most common
    image size, and a warning counts the images of other sizes (training resizes
    every image to 112x112).
    """
    from plsc_cli.data.pack import pack_dataset

    make_output_dir(output_dir, "--output-dir")
    console.add_log_file(output_dir)
    logger.debug("packing %s to %s", image_dir, output_dir)
    logger.debug("options: label_file=%s image_size=%s", label_file, image_size)
    with ProgressBar("pack", "img") as bar:
        summary = pack_dataset(
            image_dir,
            output_dir,
            label_file=label_file,
            image_size=image_size,
            progress=bar.advance,
            on_start=bar.start,
        )
    log_summary(f"Packed {summary['rec_path']}", summary, None)


class ConvertMode(StrEnum):
    """Direction of ``plsc data convert``."""

    IMAGE2BIN = "image2bin"
    BIN2IMAGE = "bin2image"


@app.command("convert")
def convert(
    mode: Annotated[
        ConvertMode,
        typer.Option(help="Direction: image2bin or bin2image."),
    ],
    image_path: Annotated[Path, typer.Option(help="Image file or folder.")],
    bin_path: Annotated[Path, typer.Option(help="kv .bin file or folder.")],
) -> None:
    """Convert image files to and from per-image kv .bin files."""
    from plsc_cli.data.convert import convert as run_convert

    if mode is ConvertMode.IMAGE2BIN:
        source, target, target_option = image_path, bin_path, "--bin-path"
    else:
        source, target, target_option = bin_path, image_path, "--image-path"
    if source.is_dir():
        # A folder input writes into a folder, which also gets plsc.log.
        make_output_dir(target, target_option)
        console.add_log_file(target)
    logger.debug("converting %s to %s (%s)", source, target, mode.value)
    with ProgressBar(mode.value, "file") as bar:
        count = run_convert(
            mode.value, image_path, bin_path, progress=bar.advance, on_start=bar.start
        )
    logger.info("Wrote %s files to %s", f"{count:,}", target)
