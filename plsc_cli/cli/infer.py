"""``plsc infer``: embeddings for images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plsc_cli.cli._common import not_available


def infer(
    model: Annotated[Path, typer.Option(help="Exported model folder or .onnx file.")],
    image_path: Annotated[Path, typer.Option(help="Image file or folder.")],
    output: Annotated[
        Path | None, typer.Option(help="Write embeddings to this .npy file.")
    ] = None,
) -> None:
    """Compute face embeddings with Paddle Inference or ONNX Runtime."""
    # TODO: filled in by the export issue.
    raise not_available("infer")
