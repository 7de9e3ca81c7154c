"""``plsc train``: the training job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plsc_cli.cli._common import not_available


def train(
    config: Annotated[
        Path | None, typer.Option(help="YAML config file; CLI options override it.")
    ] = None,
    mode: Annotated[
        str, typer.Option(help="dynamic (eager) or static (compiled graph).")
    ] = "dynamic",
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Run folder.")
    ] = None,
) -> None:
    """Train a backbone with a sharded Partial FC head."""
    # TODO: replaced by the training engine.
    raise not_available("train")
