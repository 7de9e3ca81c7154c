"""The ``plsc`` Typer app: global options, error handling and hidden aliases.

Each command lives in its own module and calls one library function; heavy
imports (paddle, cv2, onnxruntime) happen inside the commands so that ``--help``
and shell completion respond at once.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer import _click as click  # typer 0.29 vendors click as typer._click
from typer.core import TyperGroup

from plsc_cli import __version__, console
from plsc_cli.errors import PlscError

# Option names of the original PLSC scripts that differ from plsc's own by more
# than "_" versus "-". Every other "--snake_case" option is accepted as the
# "--kebab-case" one.
LEGACY_OPTION_NAMES = {
    "--rec_model_file_path": "--model",
    "--det_model_file_path": "--detector",
    "--cdd_num": "--candidates",
    "--rec_thresh": "--threshold",
    "--index_label_file": "--gallery-label-file",
    "--img_path": "--image-path",
}


def rewrite_legacy_options(args: Sequence[str]) -> list[str]:
    """Map the original PLSC scripts' snake_case options to plsc's kebab-case.

    The aliases are hidden from ``--help``; values and anything after ``--`` are
    left alone.
    """
    rewritten: list[str] = []
    passthrough = False
    for arg in args:
        if passthrough or not arg.startswith("--") or arg == "--":
            passthrough = passthrough or arg == "--"
            rewritten.append(arg)
            continue
        name, sep, value = arg.partition("=")
        if name in LEGACY_OPTION_NAMES:
            name = LEGACY_OPTION_NAMES[name]
        elif "_" in name:
            name = name.replace("_", "-")
        rewritten.append(name + sep + value)
    return rewritten


def _one_line(text: str) -> str:
    return " ".join(text.split())


class PlscGroup(TyperGroup):
    """Top-level group: legacy aliases, one-line errors and exit codes.

    Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted. A traceback
    is printed only with ``--debug`` (or ``PLSC_DEBUG=1``).
    """

    def parse_args(self, ctx: click.core.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, rewrite_legacy_options(args))

    def main(self, args: Sequence[str] | None = None, *a: Any, **kw: Any) -> Any:
        if args is None:
            args = sys.argv[1:]
        args = list(args)
        debug = "--debug" in args or console.is_debug()
        kw["standalone_mode"] = False
        err = console.get_console(stderr=True)
        try:
            result = super().main(args, *a, **kw)
        except typer.Exit as exc:
            sys.exit(exc.exit_code)
        except typer.Abort:
            err.print("plsc: interrupted", markup=False)
            sys.exit(130)
        except click.exceptions.NoArgsIsHelpError as exc:
            typer.echo(exc.ctx.get_help() if exc.ctx else "")
            sys.exit(0)
        except click.exceptions.UsageError as exc:
            hint = ""
            if exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            err.print(
                f"plsc: error: {_one_line(exc.format_message())}{hint}", markup=False
            )
            sys.exit(2)
        except click.exceptions.ClickException as exc:
            err.print(f"plsc: error: {_one_line(exc.format_message())}", markup=False)
            sys.exit(exc.exit_code)
        except PlscError as exc:
            if debug:
                traceback.print_exc()
            err.print(f"plsc: error: {_one_line(str(exc))}", markup=False)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            err.print("plsc: interrupted", markup=False)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
            if debug:
                traceback.print_exc()
                tail = ""
            else:
                tail = " (run with --debug for the traceback)"
            err.print(
                f"plsc: error: {type(exc).__name__}: {_one_line(str(exc))}{tail}",
                markup=False,
            )
            sys.exit(1)
        # Without standalone mode, Typer returns the code of typer.Exit instead
        # of exiting, and it turns Ctrl-C into typer.Exit(130).
        if isinstance(result, int) and not isinstance(result, bool):
            if result == 130:
                err.print("plsc: interrupted", markup=False)
            sys.exit(result)
        return result


app = typer.Typer(
    name="plsc",
    cls=PlscGroup,
    help="Train face recognition with millions of identities on PaddlePaddle.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"plsc {__version__}")
        raise typer.Exit()


@app.callback()
def global_options(
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only warnings and errors.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Print debug messages and Paddle's own log lines."
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Print the full traceback on failure.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Train face recognition with millions of identities on PaddlePaddle."""
    console.set_verbosity(quiet=quiet, verbose=verbose, debug=debug)


def _register() -> None:
    from plsc_cli.cli import data, demo, export, infer, train, validate

    app.add_typer(data.app, name="data")
    app.command("train")(train.train)
    app.command("validate")(validate.validate)
    app.command("export")(export.export)
    app.command("infer")(infer.infer)
    app.command("demo")(demo.demo)


_register()


def main() -> None:
    """Console-script entry point."""
    app()
