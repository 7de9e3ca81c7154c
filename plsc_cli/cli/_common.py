"""Option types shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plsc_cli.errors import PlscError

OutputDir = Annotated[
    Path,
    typer.Option("--output-dir", "-o", help="Folder to write results and plsc.log to."),
]


def not_available(command: str) -> PlscError:
    """Return the error for a command whose engine is not in this version yet."""
    return PlscError(
        f"'plsc {command}' is not available in plsc 0.1.0 yet; "
        "see README 'Known limits' for what this version does"
    )
