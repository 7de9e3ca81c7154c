"""``plsc demo``: detection plus recognition against a gallery."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plsc_cli.cli._common import not_available


def demo(
    image_path: Annotated[Path, typer.Option(help="Photo to recognise faces in.")],
    gallery_dir: Annotated[
        Path, typer.Option(help="Folder per identity, or images plus label.txt.")
    ],
    model: Annotated[
        Path, typer.Option(help="Recognition model: exported folder or .onnx.")
    ],
    output: Annotated[
        Path, typer.Option(help="Where to write the annotated photo.")
    ] = Path("demo_out.jpg"),
    candidates: Annotated[
        int, typer.Option(min=1, help="Gallery images compared per identity.")
    ] = 3,
    threshold: Annotated[
        float, typer.Option(help="Cosine similarity below which a face is unknown.")
    ] = 0.3,
) -> None:
    """Detect faces in a photo and draw the names of the gallery matches."""
    # TODO: filled in by the demo issue.
    raise not_available("demo")
