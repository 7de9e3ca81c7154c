"""Training settings: one dataclass, its presets, YAML files and CLI overrides.

Precedence, lowest first: field defaults, ``--preset``, the ``--config`` YAML file,
then options given on the command line. The resolved config is written as JSON to
the run folder and into every checkpoint, so a run can be repeated or resumed
from either.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from plsc_cli.errors import PlscUsageError
from plsc_cli.heads.margin import MARGIN_PRESETS

MODES = ("dynamic", "static")
DEVICES = ("auto", "cpu", "gpu")
HEAD_DTYPES = ("float32", "float16", "bfloat16")
# (m1, m2, m3) of the combined margin cos(m1 * theta + m2) - m3, one table for
# the config and the head.
NAMED_MARGINS = MARGIN_PRESETS
# Learning rate per 512 samples in the published recipes; scaled linearly with
# the global batch size when --lr is not given.
BASE_LR_PER_512 = 0.1
SYNTHETIC_PREFIX = "synthetic:"
CONFIG_FILE_NAME = "config.json"


@dataclass
class TrainConfig:
    """Every setting of a training run. Field docstrings are the ``--help`` text."""

    mode: str = "dynamic"
    """dynamic runs eagerly; static compiles the backbone's forward and backward
    with paddle.jit.to_static."""

    backbone: str = "iresnet50"
    """Backbone name: iresnet18, iresnet34, iresnet50, iresnet100, iresnet200 or
    mobilefacenet."""

    embedding_size: int = 512
    """Length of the face embedding (features)."""

    data: str = ""
    """Training data: a RecordIO folder (train.rec and train.idx), a folder with
    label.txt, or synthetic:<num_classes>[:<num_samples>] for generated images."""

    num_classes: int | None = None
    """Number of identities; taken from the data when not set."""

    batch_size: int = 128
    """Images per device (rank) per step."""

    epochs: int = 25
    """Passes over the training data."""

    max_steps: int | None = None
    """Stop after this many steps in total, even before the last epoch."""

    lr: float | None = None
    """Learning rate for the global batch; when not set, 0.1 per 512 images scaled
    with the global batch size."""

    lr_decay_epochs: list[int] = field(default_factory=lambda: [10, 16, 22])
    """Epochs at which the learning rate is multiplied by the decay factor."""

    lr_decay_factor: float = 0.1
    """Factor applied to the learning rate at each of lr_decay_epochs."""

    warmup_epochs: float = 0.0
    """Epochs of linear learning-rate warm-up from 0 (0 disables it)."""

    momentum: float = 0.9
    """SGD momentum of the backbone and of the class centers."""

    weight_decay: float = 5e-4
    """L2 weight decay of the backbone and of the sampled class centers."""

    margin: str = "arcface"
    """Margin: arcface (1,0.5,0), cosface (1,0,0.35), sphereface (1.35,0,0),
    softmax (1,0,0), or m1,m2,m3 of cos(m1*theta + m2) - m3."""

    scale: float = 64.0
    """Logit scale s applied to the margin cosine."""

    sample_ratio: float = 1.0
    """Fraction of class centers sampled per step (Partial FC); 1.0 uses all."""

    head_dtype: str = "float32"
    """Storage dtype of the class centers: float32, float16 or bfloat16. On CPU,
    the head always computes in float32."""

    fp16: bool | None = None
    """Pure FP16 training with dynamic loss scaling; on by default on GPU, not
    available on CPU."""

    output_dir: str = "runs/train"
    """Run folder for checkpoints, logs, scalars and the resolved config."""

    save_every: int = 0
    """Save a checkpoint every this many steps (0: only at the end of each
    epoch)."""

    keep_last: int = 3
    """Number of most recent checkpoints kept; older ones are deleted."""

    resume: str | None = None
    """Checkpoint folder to continue from, or auto for the latest one in the run
    folder (starts fresh when there is none)."""

    seed: int = 0
    """Seed of weights, data order, flips and center sampling."""

    workers: int = 2
    """Decoding worker processes per rank (0 decodes in the training process)."""

    log_every: int = 10
    """Print a step line every this many steps."""

    val_bins: list[str] = field(default_factory=list)
    """Verification sets (.bin pairs files) evaluated during training."""

    val_every: int = 0
    """Validate every this many steps (0: at the end of each epoch)."""

    device: str = "auto"
    """Device: cpu, gpu, or auto (gpu when Paddle finds a CUDA device)."""

    gpus: str | None = None
    """GPU ids for one rank each: 0-7, 0,2,4 or all."""

    nproc: int | None = None
    """Number of CPU ranks on this node."""

    nnodes: int = 1
    """Number of nodes taking part in the job."""

    master: str | None = None
    """Rendezvous address ip:port of node 0, needed with nnodes > 1."""

    node_rank: int = 0
    """Rank of this node, 0 to nnodes - 1."""

    preset: str | None = None
    """Name of the preset this config started from, for the record."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise PlscUsageError naming the first invalid option and its fix."""
        _check_choice("--mode", self.mode, MODES)
        _check_choice("--device", self.device, DEVICES)
        _check_choice("--head-dtype", self.head_dtype, HEAD_DTYPES)
        for name in ("embedding_size", "batch_size", "epochs", "log_every"):
            _check_positive(name, getattr(self, name))
        if self.keep_last < 1:
            _invalid("--keep-last", self.keep_last, "keep at least 1 checkpoint")
        for name in ("save_every", "val_every", "workers", "node_rank"):
            if getattr(self, name) < 0:
                _invalid(_option(name), getattr(self, name), "use 0 or more")
        if self.max_steps is not None:
            _check_positive("max_steps", self.max_steps)
        if self.num_classes is not None and self.num_classes < 2:
            _invalid("--num-classes", self.num_classes, "use 2 or more identities")
        if self.lr is not None and not self.lr > 0:
            _invalid("--lr", self.lr, "use a learning rate above 0, such as 0.1")
        if not 0.0 <= self.momentum < 1.0:
            _invalid("--momentum", self.momentum, "use a value in [0, 1)")
        if self.weight_decay < 0:
            _invalid("--weight-decay", self.weight_decay, "use 0 or more")
        if not 0.0 < self.lr_decay_factor <= 1.0:
            _invalid("--lr-decay-factor", self.lr_decay_factor, "use (0, 1]")
        if self.warmup_epochs < 0:
            _invalid("--warmup-epochs", self.warmup_epochs, "use 0 or more")
        decay = list(self.lr_decay_epochs)
        if any(e <= 0 for e in decay) or decay != sorted(set(decay)):
            _invalid(
                "--lr-decay-epochs",
                ",".join(map(str, decay)),
                "give increasing positive epochs, such as 10,16,22",
            )
        if not 0.0 < self.sample_ratio <= 1.0:
            _invalid("--sample-ratio", self.sample_ratio, "use a value in (0, 1]")
        if not self.scale > 0:
            _invalid("--scale", self.scale, "use a positive scale, such as 64")
        parse_margin(self.margin)
        if self.data:
            parse_synthetic(self.data)
        if self.gpus is not None and self.nproc is not None:
            raise PlscUsageError(
                "--gpus and --nproc are both set; --gpus starts one rank per GPU, "
                "--nproc starts CPU ranks: give one of them"
            )
        if self.nproc is not None:
            _check_positive("nproc", self.nproc)
            if self.device == "gpu":
                _invalid("--device", "gpu", "--nproc starts CPU ranks; use --gpus")
        if self.gpus is not None:
            parse_gpus(self.gpus, available=None)
            if self.device == "cpu":
                _invalid("--device", "cpu", "--gpus starts GPU ranks; use --nproc")
        if self.fp16 and self.device == "cpu":
            _invalid(
                "--fp16",
                "on",
                "CPU has no float16 matmul kernels; use --no-fp16 or --device gpu",
            )
        _check_positive("nnodes", self.nnodes)
        if self.node_rank >= self.nnodes:
            _invalid("--node-rank", self.node_rank, f"use 0 to {self.nnodes - 1}")
        if self.nnodes > 1 and not self.master:
            raise PlscUsageError(
                f"--nnodes {self.nnodes} needs --master ip:port of node 0"
            )
        if self.master is not None and not re.fullmatch(r"[^:\s]+:\d+", self.master):
            _invalid("--master", self.master, "use ip:port, such as 10.0.0.1:8090")

    @property
    def margins(self) -> tuple[float, float, float]:
        """(m1, m2, m3) of the chosen margin."""
        return parse_margin(self.margin)

    @property
    def launches_ranks(self) -> bool:
        """Whether the job runs under paddle.distributed.launch."""
        return self.gpus is not None or self.nproc is not None or self.nnodes > 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the config as JSON, creating the parent folder."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build a config from a dict, rejecting unknown keys by name."""
        _check_keys(values, source)
        return cls(**values)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainConfig:
        """Read a config written by :meth:`save`."""
        values = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls.from_dict(values, source=str(path))


def field_help(name: str) -> str:
    """Return the docstring of a TrainConfig field as one line of help text."""
    return _FIELD_DOCS.get(name, "")


def field_default(name: str) -> str | None:
    """Return a TrainConfig field's default as help text; None when it has none."""
    import dataclasses

    for item in dataclasses.fields(TrainConfig):
        if item.name != name:
            continue
        if item.default_factory is not dataclasses.MISSING:
            value = item.default_factory()
        else:
            value = item.default
        if value is None or value == "" or value == []:
            return None
        if isinstance(value, list):
            return ",".join(map(str, value))
        if isinstance(value, bool):
            return "on" if value else "off"
        return str(value)
    raise KeyError(name)


def _field_docs() -> dict[str, str]:
    """Read the field docstrings from this module's source."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(TrainConfig))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


_FIELD_DOCS = _field_docs()
FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TrainConfig))

# The published PLSC recipe that the presets share. It uses 128 images per GPU
# and lr 0.1 per 512 images (lr None scales it with the global batch), decayed
# x0.1 at epochs 10, 16 and 22 of 25. SGD has momentum 0.9 and weight decay
# 5e-4. Partial FC samples 10 % of the centers with ArcFace margins, in FP16 on
# GPU.
_PUBLISHED_RECIPE: dict[str, Any] = {
    "batch_size": 128,
    "epochs": 25,
    "lr": None,
    "lr_decay_epochs": [10, 16, 22],
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "margin": "arcface",
    "scale": 64.0,
    "sample_ratio": 0.1,
    "fp16": None,
}

PRESETS: dict[str, dict[str, Any]] = {
    # MS1MV3 has 93,431 identities.
    "ms1mv3_r50": {
        **_PUBLISHED_RECIPE,
        "backbone": "iresnet50",
        "embedding_size": 512,
        "num_classes": 93431,
    },
    "ms1mv3_r100": {
        **_PUBLISHED_RECIPE,
        "backbone": "iresnet100",
        "embedding_size": 512,
        "num_classes": 93431,
    },
    # MS1MV2 has 85,742 identities; MobileFaceNet uses 128-d embeddings.
    "ms1mv2_mobileface": {
        **_PUBLISHED_RECIPE,
        "backbone": "mobilefacenet",
        "embedding_size": 128,
        "num_classes": 85742,
    },
}


def build_config(
    preset: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Merge defaults, a preset, a YAML file and CLI overrides into a TrainConfig.

    ``overrides`` holds only the options given on the command line; a key with
    the value None counts as not given. A YAML file may name its own ``preset``,
    which ``preset`` (from the command line) replaces.
    """
    values: dict[str, Any] = {}
    file_values: dict[str, Any] = {}
    if config_file is not None:
        file_values = read_yaml_config(config_file)
    preset = preset or file_values.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            _invalid("--preset", preset, f"choose one of {', '.join(PRESETS)}")
        values.update(PRESETS[preset])
        values["preset"] = preset
    values.update(file_values)
    if preset is not None:
        values["preset"] = preset
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    _check_keys(given, "command line")
    values.update(given)
    try:
        return TrainConfig(**values)
    except PlscUsageError as exc:
        from_file = {k for k in file_values if k not in given}
        if config_file is None or not from_file:
            raise
        raise PlscUsageError(
            _name_file_keys(str(exc), from_file, config_file)
        ) from None


def _name_file_keys(
    message: str, keys: set[str], config_file: str | os.PathLike[str]
) -> str:
    """Name the YAML file, and its keys for the ``--option`` names in ``message``
    whose values came from it."""
    path = os.fspath(config_file)
    named = False

    def replace(match: re.Match[str]) -> str:
        nonlocal named
        key = match.group(1).replace("-", "_")
        if key not in keys:
            return match.group(0)
        named = True
        return key

    rewritten = re.sub(r"--([a-z][a-z0-9-]*)", replace, message)
    return f"{path}: {rewritten}" if named else message


def read_yaml_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file into a dict of TrainConfig fields.

    Keys may be written snake_case or kebab-case.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise PlscUsageError(f"--config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PlscUsageError(f"--config file {path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise PlscUsageError(
            f"--config file {path} must hold a mapping of option: value, "
            f"not a {type(loaded).__name__}"
        )
    values = {str(k).replace("-", "_"): v for k, v in loaded.items()}
    _check_keys(values, str(path))
    return values


def parse_margin(text: str) -> tuple[float, float, float]:
    """Parse arcface, cosface, softmax or 'm1,m2,m3' into three floats."""
    if text in NAMED_MARGINS:
        return NAMED_MARGINS[text]
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        _invalid(
            "--margin",
            text,
            f"use one of {', '.join(NAMED_MARGINS)} or m1,m2,m3 such as 1.0,0.5,0.0",
        )
    return values  # type: ignore[return-value]


def parse_synthetic(data: str) -> int | None:
    """Return the class count of 'synthetic:<num_classes>[:<num_samples>]', or
    None for a path."""
    if not data.startswith(SYNTHETIC_PREFIX):
        return None
    match = re.fullmatch(r"synthetic:(\d+)(?::(\d+))?", data)
    if match is None or int(match.group(1)) < 2 or match.group(2) == "0":
        _invalid(
            "--data",
            data,
            "use synthetic:<num_classes> or synthetic:<num_classes>:<num_samples> "
            "with 2 or more classes",
        )
    return int(match.group(1))


_NO_GPU = (
    "--gpus {spec}: Paddle sees no GPU on this machine (a CPU build of Paddle, "
    "or no CUDA device); use --nproc N for CPU ranks, or install paddlepaddle-gpu"
)


def parse_gpus(spec: str, available: int | None) -> list[int]:
    """Parse a GPU list such as '0-7', '0,2,4', '0-3,6' or 'all' into ids.

    ``available`` is the number of visible GPUs; 'all' needs it, and ids at or
    above it are rejected. With None, only the syntax is checked.
    """
    text = spec.strip().lower()
    if text == "all":
        if available is None:
            return []
        if available == 0:
            raise PlscUsageError(_NO_GPU.format(spec=spec))
        return list(range(available))
    ids: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if match is None:
            _invalid("--gpus", spec, "use ids such as 0-7, 0,2,4 or all")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            _invalid(
                "--gpus", spec, f"range {part} runs backwards; write {last}-{first}"
            )
        ids.extend(range(first, last + 1))
    if len(set(ids)) != len(ids):
        _invalid("--gpus", spec, "list each GPU id once")
    if available == 0:
        raise PlscUsageError(_NO_GPU.format(spec=spec))
    if available is not None:
        missing = [i for i in ids if i >= available]
        if missing:
            _invalid(
                "--gpus",
                spec,
                f"this machine has {available} GPU(s), ids 0 to {available - 1}",
            )
    return ids


def default_lr(global_batch: int) -> float:
    """Return 0.1 per 512 images, scaled linearly to ``global_batch``."""
    return BASE_LR_PER_512 * global_batch / 512


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _invalid(option: str, value: Any, fix: str) -> NoReturn:
    raise PlscUsageError(f"invalid {option} {value!r}: {fix}")


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _invalid(option, value, f"choose one of {', '.join(choices)}")


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        _invalid(_option(name), value, "use 1 or more")


def _check_keys(values: dict[str, Any], source: str) -> None:
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        import difflib

        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, FIELD_NAMES, n=1)
            hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
        raise PlscUsageError(
            f"unknown setting(s) in {source}: {', '.join(hints)}; "
            f"valid settings: {', '.join(FIELD_NAMES)}"
        )
