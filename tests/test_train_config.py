"""TrainConfig: validation, presets, YAML files, CLI overrides and --gpus."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from plsc_cli.config import (
    PRESETS,
    TrainConfig,
    build_config,
    default_lr,
    parse_gpus,
    parse_margin,
)
from plsc_cli.errors import PlscUsageError


def test_defaults_are_valid():
    config = TrainConfig(data="synthetic:10")
    assert config.margins == (1.0, 0.5, 0.0)
    assert not config.launches_ranks


@pytest.mark.parametrize(
    ("overrides", "option"),
    [
        ({"mode": "graph"}, "--mode"),
        ({"batch_size": 0}, "--batch-size"),
        ({"sample_ratio": 0.0}, "--sample-ratio"),
        ({"sample_ratio": 1.5}, "--sample-ratio"),
        ({"head_dtype": "int8"}, "--head-dtype"),
        ({"margin": "1.0,0.5"}, "--margin"),
        ({"lr_decay_epochs": [16, 10]}, "--lr-decay-epochs"),
        ({"lr": -0.1}, "--lr"),
        ({"data": "synthetic:x"}, "--data"),
        ({"gpus": "3-1"}, "--gpus"),
        ({"gpus": "0", "nproc": 2}, "--gpus and --nproc"),
        ({"fp16": True, "device": "cpu"}, "--fp16"),
        ({"nnodes": 2}, "--master"),
        ({"nnodes": 2, "master": "10.0.0.1", "node_rank": 1}, "--master"),
        ({"node_rank": 1}, "--node-rank"),
        ({"keep_last": 0}, "--keep-last"),
    ],
)
def test_invalid_values_name_option(overrides, option):
    values = {"data": "synthetic:10", **overrides}
    with pytest.raises(PlscUsageError, match=option):
        TrainConfig(**values)


def test_margin_parsing():
    assert parse_margin("cosface") == (1.0, 0.0, 0.35)
    assert parse_margin("sphereface") == (1.35, 0.0, 0.0)
    assert parse_margin("1.0,0.3,0.2") == (1.0, 0.3, 0.2)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_follow_published_recipe(name):
    config = build_config(preset=name, overrides={"data": "synthetic:10"})
    assert config.preset == name
    assert config.batch_size == 128
    assert config.epochs == 25
    assert config.lr_decay_epochs == [10, 16, 22]
    assert config.lr_decay_factor == 0.1
    assert config.momentum == 0.9
    assert config.weight_decay == 5e-4
    assert config.sample_ratio == 0.1
    assert config.margins == (1.0, 0.5, 0.0)
    assert config.fp16 is None  # on with a GPU, off on CPU
    assert config.lr is None  # 0.1 per 512 samples of the global batch


def test_ms1mv3_class_count():
    config = build_config(preset="ms1mv3_r50", overrides={"data": "synthetic:10"})
    assert config.num_classes == 93431
    assert config.backbone == "iresnet50"


def test_default_lr_scales_with_global_batch():
    assert default_lr(512) == pytest.approx(0.1)
    assert default_lr(8 * 128) == pytest.approx(0.2)


def test_yaml_then_cli_precedence(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "preset: ms1mv3_r50\nbatch-size: 64\nlr: 0.05\ndata: synthetic:10\n"
    )
    config = build_config(config_file=path, overrides={"lr": 0.2, "epochs": None})
    assert config.preset == "ms1mv3_r50"
    assert config.backbone == "iresnet50"  # from the preset
    assert config.batch_size == 64  # YAML over the preset
    assert config.lr == 0.2  # command line over YAML
    assert config.epochs == 25  # None means "not given"


def test_yaml_unknown_key_suggests_name(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("batchsize: 64\n")
    with pytest.raises(PlscUsageError, match="did you mean batch_size"):
        build_config(config_file=path)


def test_yaml_not_mapping(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(PlscUsageError, match="mapping"):
        build_config(config_file=path)


def test_unknown_preset():
    with pytest.raises(PlscUsageError, match="ms1mv3_r50"):
        build_config(preset="ms1m", overrides={"data": "synthetic:10"})


def test_save_load_round_trip(tmp_path):
    config = build_config(
        preset="ms1mv2_mobileface", overrides={"data": "synthetic:10", "seed": 3}
    )
    path = config.save(tmp_path / "config.json")
    assert json.loads(path.read_text())["embedding_size"] == 128
    assert TrainConfig.load(path) == config


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0-7", list(range(8))),
        ("0,2,4", [0, 2, 4]),
        ("0-3,6", [0, 1, 2, 3, 6]),
        ("5", [5]),
        ("all", list(range(8))),
    ],
)
def test_parse_gpus(spec, expected):
    assert parse_gpus(spec, available=8) == expected


@pytest.mark.parametrize("spec", ["0-8", "a", "1,1", "2-1", ""])
def test_parse_gpus_rejects(spec):
    with pytest.raises(PlscUsageError, match="--gpus"):
        parse_gpus(spec, available=8)


def test_parse_gpus_all_without_gpu():
    with pytest.raises(PlscUsageError, match="no GPU"):
        parse_gpus("all", available=0)


def test_launch_command_for_gpus(tmp_path, monkeypatch):
    from plsc_cli.distributed import launch
    from plsc_cli.distributed.launch import plan_launch

    monkeypatch.setattr(launch, "_visible_gpus", lambda: 8)
    config = TrainConfig(data="synthetic:10", gpus="0,2,4", output_dir=str(tmp_path))
    plan = plan_launch(config, tmp_path / "config.json")
    command = plan.command
    assert command[command.index("--devices") + 1] == "0,2,4"
    assert command[command.index("--nproc_per_node") + 1] == "3"
    assert command[command.index("--log_dir") + 1] == str(tmp_path / "logs")
    assert command[-1] == str(tmp_path / "config.json")
    assert plan.local_ranks == 3


def test_launch_command_for_cpu_nodes(tmp_path):
    from plsc_cli.distributed.launch import plan_launch

    config = TrainConfig(
        data="synthetic:10",
        nproc=2,
        nnodes=2,
        master="10.0.0.1:8090",
        node_rank=1,
        output_dir=str(tmp_path),
    )
    plan = plan_launch(config, tmp_path / "config.json")
    command = plan.command
    assert "--devices" not in command
    assert command[command.index("--rank") + 1] == "1"
    assert command[command.index("--master") + 1] == "10.0.0.1:8090"
    assert plan.env["PADDLE_DISTRI_BACKEND"] == "gloo"
    assert int(plan.env["OMP_NUM_THREADS"]) >= 1


def test_cli_rejects_bad_value():
    from plsc_cli.cli.app import app

    result = CliRunner().invoke(
        app, ["train", "--data", "synthetic:10", "--sample-ratio", "2"]
    )
    assert result.exit_code == 2
    assert "--sample-ratio" in result.output


def test_cli_needs_data():
    from plsc_cli.cli.app import app

    result = CliRunner().invoke(app, ["train", "--epochs", "1"])
    assert result.exit_code == 2
    assert "--data" in result.output


def test_cli_help_lists_options():
    from plsc_cli.cli.app import app

    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    for option in ("--gpus", "--nproc", "--resume", "--val-bin", "--head-dtype"):
        assert option in result.output


def test_cli_help_shows_config_defaults():
    import re

    from plsc_cli.cli.app import app

    result = CliRunner(env={"COLUMNS": "400"}).invoke(app, ["train", "--help"])
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())
    expected = {
        "--mode": "dynamic",
        "--backbone": "iresnet50",
        "--margin": "arcface",
        "--scale": "64.0",
        "--sample-ratio": "1.0",
        "--momentum": "0.9",
        "--keep-last": "3",
        "--seed": "0",
        "--workers": "2",
        "--log-every": "10",
        "--lr-decay-epochs": "10,16,22",
    }
    for option, default in expected.items():
        # Each option's help runs up to the next option.
        match = re.search(rf"{option} .*?(?= --[a-z]|$)", text)
        assert match, option
        assert f"Default {default}." in match.group(0), match.group(0)


@pytest.mark.parametrize("spec", ["0-1", "0", "3"])
def test_parse_gpus_list_without_gpu(spec):
    with pytest.raises(PlscUsageError, match=rf"--gpus {spec}: .*no GPU.*--nproc"):
        parse_gpus(spec, available=0)


def test_plan_launch_checks_gpu_list_on_cpu_paddle(tmp_path):
    from plsc_cli.config import TrainConfig
    from plsc_cli.console import import_paddle
    from plsc_cli.distributed.launch import plan_launch

    if import_paddle().device.is_compiled_with_cuda():
        pytest.skip("this Paddle build has CUDA")
    config = TrainConfig(data="synthetic:4", gpus="0-1", output_dir=str(tmp_path))
    with pytest.raises(PlscUsageError, match="--gpus 0-1: Paddle sees no GPU"):
        plan_launch(config, tmp_path / "config.json")


class _Payload:
    def __reduce__(self):
        import os

        return (os.getcwd, ())


@pytest.mark.parametrize("problem", ["missing", "unsafe", "data"])
def test_cli_checks_inputs_before_launching_ranks(tmp_path, problem):
    import pickle

    from plsc_cli.cli.app import app

    val_bin = tmp_path / "lfw.bin"
    data = "synthetic:4"
    if problem == "unsafe":
        val_bin.write_bytes(pickle.dumps(_Payload()))
    elif problem == "data":
        val_bin = None
        data = str(tmp_path / "no-such-data")
    args = ["train", "--data", data, "--nproc", "2", "-o", str(tmp_path / "run")]
    if val_bin is not None:
        args += ["--val-bin", str(val_bin)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "starting" not in result.output
    expected = {
        "missing": f"verification set not found: {val_bin}",
        "unsafe": "getcwd",
        "data": "training data not found",
    }[problem]
    assert expected in result.output
    assert not (tmp_path / "run" / "logs").exists()


def test_yaml_value_errors_name_file_and_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("batch-size: -3\nnproc: 2\n")
    with pytest.raises(PlscUsageError) as info:
        build_config(config_file=path)
    assert str(info.value) == f"{path}: invalid batch_size -3: use 1 or more"
    # The same bad value from the command line keeps naming the option.
    with pytest.raises(PlscUsageError) as info:
        build_config(config_file=path, overrides={"batch_size": -2})
    assert str(info.value) == "invalid --batch-size -2: use 1 or more"
    # Mixed sources: the file's key and the command line's option.
    with pytest.raises(PlscUsageError, match=rf"^{path}: --gpus and nproc are both"):
        build_config(config_file=path, overrides={"batch_size": 8, "gpus": "0"})
