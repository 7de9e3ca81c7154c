"""The CLI frame: commands, exit codes, one-line errors, aliases, completion."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plsc_cli.cli.app import app, rewrite_legacy_options
from plsc_cli.cli.completions import SHELLS, completion_script

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent
PLSC = BIN_DIR / "plsc"

SUBCOMMANDS = ["data", "train", "validate", "export", "infer", "demo"]
DATA_SUBCOMMANDS = ["extract", "convert", "pack"]


def run_plsc(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    if not PLSC.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    return subprocess.run(
        [str(PLSC), *args], capture_output=True, text=True, timeout=timeout
    )


def test_installed_help_lists_subcommands():
    top = run_plsc("--help")
    assert top.returncode == 0, top.stderr
    for name in SUBCOMMANDS:
        assert f"  {name} " in top.stdout, f"{name} missing from plsc --help"
    data = run_plsc("data", "--help")
    assert data.returncode == 0, data.stderr
    for name in DATA_SUBCOMMANDS:
        assert f"  {name} " in data.stdout, f"{name} missing from plsc data --help"


@pytest.mark.parametrize(
    "command",
    [
        ["data", "extract"],
        ["data", "pack"],
        ["data", "convert"],
        ["train"],
        ["validate"],
        ["export"],
        ["infer"],
        ["demo"],
    ],
)
def test_each_command_has_help(command):
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Options" in result.output
    assert "--help" in result.output


def test_python_dash_m_runs():
    result = subprocess.run(
        [sys.executable, "-m", "plsc_cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout


def test_unknown_option_exits_2_one_line():
    result = run_plsc("train", "--no-such-option")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--no-such-option" in lines[0]
    assert "Traceback" not in result.stderr


def test_failure_traceback_only_with_debug(tmp_path):
    missing = tmp_path / "missing"
    args = [
        "data",
        "extract",
        "--root-dir",
        str(missing),
        "--output-dir",
        str(tmp_path / "o"),
    ]
    plain = run_plsc(*args)
    assert plain.returncode == 1
    assert "Traceback" not in plain.stderr
    assert len(plain.stderr.strip().splitlines()) == 1, plain.stderr
    debug = run_plsc("--debug", *args)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr


def test_unexpected_exception_hidden_without_debug(monkeypatch):
    from plsc_cli.cli import app as app_module

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(app_module.console, "set_verbosity", boom)
    runner = CliRunner()
    plain = runner.invoke(app, ["data", "--help"])
    assert plain.exit_code == 1
    assert "RuntimeError: boom" in plain.output
    assert "Traceback" not in plain.output
    debug = runner.invoke(app, ["--debug", "data", "--help"])
    assert debug.exit_code == 1
    assert "Traceback (most recent call last)" in debug.output


def test_legacy_snake_case_options():
    assert rewrite_legacy_options(
        ["--root_dir", "a_b", "--cdd_num=5", "--rec_thresh", "0.4", "--", "--x_y"]
    ) == ["--root-dir", "a_b", "--candidates=5", "--threshold", "0.4", "--", "--x_y"]


def test_legacy_aliases_hidden_but_accepted(tmp_path):
    help_text = CliRunner().invoke(app, ["data", "extract", "--help"]).output
    assert "--root-dir" in help_text
    assert "--root_dir" not in help_text
    result = CliRunner().invoke(
        app,
        [
            "data",
            "extract",
            "--root_dir",
            str(tmp_path / "x"),
            "--output_dir",
            str(tmp_path / "o"),
        ],
    )
    # Parsed: the command ran and failed on the missing folder, not on the option.
    assert result.exit_code == 1, result.output


def test_help_does_not_import_paddle():
    code = (
        "import sys; import plsc_cli.cli.app; "
        "heavy = [m for m in ('paddle', 'cv2', 'onnxruntime') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_completion_scripts_up_to_date():
    for shell in SHELLS:
        committed = (PROJECT_ROOT / "completions" / f"plsc.{shell}").read_text()
        assert committed == completion_script(shell).strip() + "\n", (
            f"completions/plsc.{shell} is stale; run 'make completions'"
        )


def _bash_complete(words: list[str]) -> list[str]:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not installed")
    if not PLSC.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    script = PROJECT_ROOT / "completions" / "plsc.bash"
    quoted = " ".join(f"'{w}'" for w in words)
    command = (
        f"source '{script}'; COMP_WORDS=({quoted}); "
        f"COMP_CWORD={len(words) - 1}; _plsc_completion plsc; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env = dict(os.environ, PATH=f"{BIN_DIR}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        [bash, "-c", command], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]


def test_bash_completes_data():
    assert _bash_complete(["plsc", "da"]) == ["data"]


def test_bash_completes_data_subcommands():
    offered = _bash_complete(["plsc", "data", ""])
    assert "extract" in offered
    assert "convert" in offered


def test_typer_exit_code_kept(monkeypatch):
    import typer

    from plsc_cli.cli import app as app_module

    def exit_three(*args, **kwargs):
        raise typer.Exit(code=3)

    monkeypatch.setattr(app_module.console, "set_verbosity", exit_three)
    assert CliRunner().invoke(app, ["data", "--help"]).exit_code == 3


def test_keyboard_interrupt_exits_130(monkeypatch):
    from plsc_cli.cli import app as app_module

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(app_module.console, "set_verbosity", interrupt)
    result = CliRunner().invoke(app, ["data", "--help"])
    assert result.exit_code == 130
    assert "plsc: interrupted" in result.output


@pytest.mark.slow
def test_ctrl_c_stops_training(tmp_path):
    import signal
    import time

    if not PLSC.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    command = [
        str(PLSC), "train", "--data", "synthetic:8:64", "--backbone",
        "mobilefacenet", "--embedding-size", "16", "--batch-size", "4",
        "--max-steps", "10000", "--log-every", "1", "--workers", "1",
        "--output-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "run").glob("scalars.csv")):
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "training did not start in 120 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr[-2000:]
    assert "plsc: interrupted" in stderr
    assert "Traceback" not in stderr


def test_train_error_is_one_line(tmp_path):
    result = run_plsc(
        "train",
        "--data",
        str(tmp_path / "nowhere"),
        "--output-dir",
        str(tmp_path / "o"),
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "OMP_NUM_THREADS" not in result.stderr
    assert "nowhere" in lines[0]
