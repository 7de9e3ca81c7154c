"""Write the shell completion scripts: ``python -m plsc_cli.cli.completions DIR``.

The scripts call ``plsc`` back with ``_PLSC_COMPLETE`` set, so completion always
matches the installed version's commands and options.
"""

from __future__ import annotations

import sys
from pathlib import Path

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_PLSC_COMPLETE"


def completion_script(shell: str) -> str:
    """Return the completion script of ``plsc`` for ``shell``."""
    from typer._completion_shared import get_completion_script

    return get_completion_script(
        prog_name="plsc", complete_var=COMPLETE_VAR, shell=shell
    )


def write_completion_scripts(out_dir: Path) -> list[Path]:
    """Write ``plsc.<shell>`` for every supported shell into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for shell in SHELLS:
        path = out_dir / f"plsc.{shell}"
        path.write_text(completion_script(shell).strip() + "\n", encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_completion_scripts(
        Path(sys.argv[1] if len(sys.argv) > 1 else "completions")
    ):
        print(written)
