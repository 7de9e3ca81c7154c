"""``plsc train``: the training job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plsc_cli.config import PRESETS, field_default, field_help
from plsc_cli.errors import PlscUsageError


def _help(name: str, extra: str = "") -> str:
    """Join a config field's help, ``extra`` and the field's default value."""
    default = field_default(name)
    tail = f"Default {default}." if default is not None else ""
    return " ".join(part for part in (field_help(name), extra, tail) if part)


def _parse_epochs(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise PlscUsageError(
            f"invalid --lr-decay-epochs {text!r}: give comma-separated epochs, "
            "such as 10,16,22"
        ) from None


def train(
    config: Annotated[
        Path | None,
        typer.Option(help="YAML config file; options given here override it."),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(help=f"Published recipe to start from: {', '.join(PRESETS)}."),
    ] = None,
    mode: Annotated[str | None, typer.Option(help=_help("mode"))] = None,
    backbone: Annotated[str | None, typer.Option(help=_help("backbone"))] = None,
    embedding_size: Annotated[
        int | None,
        typer.Option(
            help=_help(
                "embedding_size",
            )
        ),
    ] = None,
    data: Annotated[str | None, typer.Option(help=_help("data"))] = None,
    num_classes: Annotated[int | None, typer.Option(help=_help("num_classes"))] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help=_help(
                "batch_size",
            )
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            help=_help(
                "epochs",
            )
        ),
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help=_help("max_steps"))] = None,
    lr: Annotated[float | None, typer.Option(help=_help("lr"))] = None,
    lr_decay_epochs: Annotated[
        str | None,
        typer.Option(help=_help("lr_decay_epochs", "Comma-separated.")),
    ] = None,
    lr_decay_factor: Annotated[
        float | None,
        typer.Option(
            help=_help(
                "lr_decay_factor",
            )
        ),
    ] = None,
    warmup_epochs: Annotated[
        float | None, typer.Option(help=_help("warmup_epochs"))
    ] = None,
    momentum: Annotated[float | None, typer.Option(help=_help("momentum"))] = None,
    weight_decay: Annotated[
        float | None,
        typer.Option(
            help=_help(
                "weight_decay",
            )
        ),
    ] = None,
    margin: Annotated[str | None, typer.Option(help=_help("margin"))] = None,
    scale: Annotated[float | None, typer.Option(help=_help("scale"))] = None,
    sample_ratio: Annotated[
        float | None, typer.Option(help=_help("sample_ratio"))
    ] = None,
    head_dtype: Annotated[str | None, typer.Option(help=_help("head_dtype"))] = None,
    fp16: Annotated[
        bool | None, typer.Option("--fp16/--no-fp16", help=_help("fp16"))
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            "-o",
            help=_help(
                "output_dir",
            ),
        ),
    ] = None,
    save_every: Annotated[int | None, typer.Option(help=_help("save_every"))] = None,
    keep_last: Annotated[int | None, typer.Option(help=_help("keep_last"))] = None,
    resume: Annotated[str | None, typer.Option(help=_help("resume"))] = None,
    seed: Annotated[int | None, typer.Option(help=_help("seed"))] = None,
    workers: Annotated[int | None, typer.Option(help=_help("workers"))] = None,
    log_every: Annotated[int | None, typer.Option(help=_help("log_every"))] = None,
    val_bin: Annotated[
        list[Path] | None,
        typer.Option(
            metavar="PATH",
            help=_help("val_bins", "Repeat the option for several sets."),
        ),
    ] = None,
    val_every: Annotated[int | None, typer.Option(help=_help("val_every"))] = None,
    device: Annotated[str | None, typer.Option(help=_help("device"))] = None,
    gpus: Annotated[
        str | None, typer.Option(help=_help("gpus", "Starts one rank per GPU."))
    ] = None,
    nproc: Annotated[
        int | None, typer.Option(help=_help("nproc", "Uses gloo."))
    ] = None,
    nnodes: Annotated[int | None, typer.Option(help=_help("nnodes"))] = None,
    master: Annotated[str | None, typer.Option(help=_help("master"))] = None,
    node_rank: Annotated[int | None, typer.Option(help=_help("node_rank"))] = None,
    rank: Annotated[
        int | None, typer.Option("--rank", hidden=True, help="Alias of --node-rank.")
    ] = None,
) -> None:
    """Train a backbone with a sharded Partial FC head.

    Without --gpus, --nproc or --nnodes the job runs in this process on one
    device. With them, plsc starts one rank per device under
    paddle.distributed.launch and writes per-rank logs to OUTPUT_DIR/logs.
    """
    from plsc_cli.config import build_config
    from plsc_cli.distributed.launch import train as launch_train

    if rank is not None and node_rank is not None and rank != node_rank:
        raise PlscUsageError(
            f"--rank {rank} and --node-rank {node_rank} differ; give only --node-rank"
        )
    overrides = {
        "mode": mode,
        "backbone": backbone,
        "embedding_size": embedding_size,
        "data": data,
        "num_classes": num_classes,
        "batch_size": batch_size,
        "epochs": epochs,
        "max_steps": max_steps,
        "lr": lr,
        "lr_decay_epochs": _parse_epochs(lr_decay_epochs),
        "lr_decay_factor": lr_decay_factor,
        "warmup_epochs": warmup_epochs,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "margin": margin,
        "scale": scale,
        "sample_ratio": sample_ratio,
        "head_dtype": head_dtype,
        "fp16": fp16,
        "output_dir": str(output_dir) if output_dir is not None else None,
        "save_every": save_every,
        "keep_last": keep_last,
        "resume": resume,
        "seed": seed,
        "workers": workers,
        "log_every": log_every,
        "val_bins": [str(p) for p in val_bin] if val_bin else None,
        "val_every": val_every,
        "device": device,
        "gpus": gpus,
        "nproc": nproc,
        "nnodes": nnodes,
        "master": master,
        "node_rank": node_rank if node_rank is not None else rank,
    }
    resolved = build_config(preset=preset, config_file=config, overrides=overrides)
    if not resolved.data:
        raise PlscUsageError(
            "no training data: give --data (a RecordIO folder, a label.txt folder "
            "or synthetic:<num_classes>) or set data in the --config file"
        )
    launch_train(resolved)
