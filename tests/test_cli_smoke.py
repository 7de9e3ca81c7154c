from typer.testing import CliRunner

from plsc_cli.cli.app import app, rewrite_legacy_options


def test_help_lists_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ["data", "train", "validate", "export", "infer", "demo"]:
        assert name in result.output


def test_legacy_options_rewritten():
    assert rewrite_legacy_options(
        ["--root_dir", "a_b", "--cdd_num=5", "--", "--x_y"]
    ) == [
        "--root-dir",
        "a_b",
        "--candidates=5",
        "--",
        "--x_y",
    ]
