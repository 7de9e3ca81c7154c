"""``plsc data``: extract, pack and convert face datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plsc_cli.cli._common import OutputDir, not_available

app = typer.Typer(
    help="Extract, pack and convert face datasets (RecordIO, label.txt, kv .bin).",
    no_args_is_help=True,
)


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
    """Extract MXNet RecordIO into images/ plus a tab-separated label.txt."""
    # TODO: replaced by the RecordIO extractor.
    raise not_available("data extract")


@app.command("pack")
def pack(
    image_dir: Annotated[Path, typer.Option(help="Folder of images.")],
    output_dir: OutputDir,
    label_file: Annotated[
        Path | None,
        typer.Option(help="label.txt (path<TAB>label); default: one folder per id."),
    ] = None,
) -> None:
    """Pack a label.txt dataset or a folder per identity into RecordIO."""
    # TODO: replaced by the RecordIO writer.
    raise not_available("data pack")


@app.command("convert")
def convert(
    mode: Annotated[str, typer.Option(help="Direction: image2bin or bin2image.")],
    image_path: Annotated[Path, typer.Option(help="Image file or folder.")],
    bin_path: Annotated[Path, typer.Option(help="kv .bin file or folder.")],
) -> None:
    """Convert image files to and from per-image kv .bin files."""
    # TODO: replaced by the kv .bin converter.
    raise not_available("data convert")
