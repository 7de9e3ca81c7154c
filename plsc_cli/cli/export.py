"""``plsc export``: inference models from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plsc_cli.cli._common import OutputDir, not_available


def export(
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint folder (ckpt-<step>).")],
    output_dir: OutputDir,
    type: Annotated[str, typer.Option("--type", help="paddle or onnx.")] = "paddle",
) -> None:
    """Export the backbone as a Paddle inference or ONNX model."""
    # TODO: filled in by the export issue.
    raise not_available("export")
