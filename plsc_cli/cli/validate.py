"""``plsc validate``: 10-fold verification accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plsc_cli.cli._common import not_available


def validate(
    model: Annotated[
        Path, typer.Option(help="Exported model folder, .onnx file or checkpoint.")
    ],
    bin_path: Annotated[
        list[Path], typer.Option(help="LFW-style .bin set; repeat for several.")
    ],
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 64,
    nfolds: Annotated[int, typer.Option(min=2, help="Cross-validation folds.")] = 10,
) -> None:
    """Measure 10-fold verification accuracy on LFW-style .bin sets."""
    # TODO: filled in by the verification issue.
    raise not_available("validate")
