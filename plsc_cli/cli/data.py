"""``plsc data``: extract, pack and convert face datasets."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any

import typer

from plsc_cli import console
from plsc_cli.cli._common import OutputDir

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
            self._progress.remove_task(self._task)
            self._progress.live.transient = True
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


def print_summary(title: str, summary: dict[str, Any], saved_to: Path | None) -> None:
    """Print the image and class counts of a dataset summary."""
    out = console.get_console()
    per_class = summary["images_per_class"]
    out.print(title, markup=False)
    out.print(f"  images: {summary['images']:,}", markup=False)
    out.print(f"  classes: {summary['classes']:,}", markup=False)
    out.print(
        f"  images per class: min {per_class['min']}, median "
        f"{per_class['median']:g}, max {per_class['max']}",
        markup=False,
    )
    if saved_to is not None:
        out.print(f"  summary saved to {saved_to}", markup=False)


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

    output_dir.mkdir(parents=True, exist_ok=True)
    console.add_log_file(output_dir)
    with ProgressBar("extract", "img") as bar:
        summary = extract_recordio(
            root_dir,
            output_dir,
            reencode=reencode,
            workers=workers,
            progress=bar.advance,
            on_start=bar.start,
        )
    print_summary(
        f"Extracted {summary['rec_path']} to {output_dir} "
        f"({summary['written']:,} written, {summary['skipped_existing']:,} already "
        f"present, {summary['records_per_second']:,.0f} images/s)",
        summary,
        output_dir / SUMMARY_FILE,
    )
    for name in summary["verification_sets"]:
        console.get_console().print(f"  copied verification set {name}", markup=False)


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
) -> None:
    """Pack a label.txt dataset or a folder per identity into RecordIO.

    Writes train.rec, train.idx and property in the InsightFace layout.
    """
    from plsc_cli.data.pack import pack_dataset

    output_dir.mkdir(parents=True, exist_ok=True)
    console.add_log_file(output_dir)
    with ProgressBar("pack", "img") as bar:
        summary = pack_dataset(
            image_dir,
            output_dir,
            label_file=label_file,
            progress=bar.advance,
            on_start=bar.start,
        )
    print_summary(f"Packed {summary['rec_path']}", summary, None)


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

    with ProgressBar(mode.value, "file") as bar:
        count = run_convert(
            mode.value, image_path, bin_path, progress=bar.advance, on_start=bar.start
        )
    target = bin_path if mode is ConvertMode.IMAGE2BIN else image_path
    console.get_console().print(f"Wrote {count:,} files to {target}", markup=False)
