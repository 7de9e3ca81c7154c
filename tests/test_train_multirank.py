"""``plsc train --nproc 2`` on real RecordIO data: both modes, resume, a killed
rank, and a 2-rank checkpoint resumed on 1 rank.

Every run uses MobileFaceNet with 64-d embeddings, 8 images per rank and 20
steps at most, on the 245-image friends112 RecordIO set (6 identities).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT, shared_path

pytestmark = [pytest.mark.multirank, pytest.mark.slow]

STEPS = 20
STOP_AT = 8
COMMON = [
    "--backbone", "mobilefacenet",
    "--embedding-size", "64",
    "--batch-size", "8",
    "--lr", "0.02",
    "--margin", "arcface",
    "--scale", "16",
    "--workers", "1",
    "--log-every", "5",
    "--seed", "7",
]  # fmt: skip


def _plsc(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plsc_cli", "train", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT_ROOT,
    )


def _losses(run_dir: Path) -> dict[int, float]:
    with open(run_dir / "scalars.csv", newline="") as f:
        return {int(row["step"]): float(row["loss"]) for row in csv.DictReader(f)}


def _train(run_dir: Path, data: Path, *extra: str) -> dict[int, float]:
    result = _plsc(
        "--data", str(data), "--nproc", "2", "--output-dir", str(run_dir),
        *COMMON, *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return _losses(run_dir)


@pytest.fixture(scope="module")
def friends112() -> Path:
    return shared_path("data", "rec", "friends112")


@pytest.fixture(scope="module")
def dynamic_run(tmp_path_factory, friends112) -> Path:
    run_dir = tmp_path_factory.mktemp("dynamic")
    _train(run_dir, friends112, "--mode", "dynamic", "--max-steps", str(STEPS))
    return run_dir


def test_loss_falls_in_dynamic_mode(dynamic_run):
    losses = _losses(dynamic_run)
    assert sorted(losses) == list(range(1, STEPS + 1))
    first = np.mean([losses[s] for s in range(1, 6)])
    last = np.mean([losses[s] for s in range(STEPS - 4, STEPS + 1)])
    assert last < first - 0.5, (first, last)
    assert (dynamic_run / "logs" / "workerlog.1").is_file()
    assert (dynamic_run / f"ckpt-{STEPS}" / "head-rank1.npz").is_file()


def test_static_mode_matches_dynamic(tmp_path, friends112, dynamic_run):
    static = _train(
        tmp_path / "static", friends112, "--mode", "static", "--max-steps", str(STEPS)
    )
    dynamic = _losses(dynamic_run)
    steps = sorted(dynamic)
    # The compiled backbone runs the same CPU kernels; a tolerance allows for
    # a different order of float32 sums.
    np.testing.assert_allclose(
        [static[s] for s in steps], [dynamic[s] for s in steps], rtol=1e-3, atol=1e-4
    )


def test_resume_repeats_losses(tmp_path, friends112, dynamic_run):
    run_dir = tmp_path / "run"
    _train(run_dir, friends112, "--max-steps", str(STOP_AT))
    assert (run_dir / f"ckpt-{STOP_AT}").is_dir()
    resumed = _train(run_dir, friends112, "--max-steps", str(STEPS), "--resume", "auto")
    straight = _losses(dynamic_run)
    after = range(STOP_AT + 1, STEPS + 1)
    # Same ranks, same kernels and the same data order: the losses are equal.
    assert [resumed[s] for s in after] == [straight[s] for s in after]


def _run_pids(config_path: Path) -> set[int]:
    """Find every process of this run (ranks and their loader workers)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            str(config_path).encode() in cmdline
            and any(arg.endswith(b"worker.py") for arg in cmdline)
            and b"paddle.distributed.launch" not in cmdline
        ):
            pids.add(int(entry.name))
    return pids


def _parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _rank_pid(config_path: Path, rank: int) -> int | None:
    """Find the rank process of ``rank`` for this run, not one of its workers."""
    pids = _run_pids(config_path)
    for pid in pids:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            parent = _parent_pid(pid)
        except OSError:
            continue
        # Loader workers are forked from the rank and share its command line.
        if parent in pids:
            continue
        if f"PADDLE_TRAINER_ID={rank}".encode() in environ:
            return pid
    return None


def test_killed_rank_ends_job(tmp_path, friends112):
    from plsc_cli.engine.checkpoint import latest_checkpoint, load_checkpoint

    run_dir = tmp_path / "killed"
    command = [
        sys.executable, "-m", "plsc_cli", "train", "--data", str(friends112),
        "--nproc", "2", "--output-dir", str(run_dir), "--max-steps", "200",
        "--save-every", "2", *COMMON,
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=PROJECT_ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while latest_checkpoint(run_dir) is None:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no checkpoint after 180 s"
            time.sleep(0.5)
        pid = _rank_pid(run_dir / "config.json", rank=1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
        elapsed = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            for pid in _run_pids(run_dir / "config.json"):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert elapsed < 60
    # The killed rank is blamed, not rank 0 whose collective failed after it.
    assert "plsc: error: rank 1 was killed by SIGKILL" in stderr, stderr[-2000:]
    # No rank and no loader worker of the run outlives the job.
    deadline = time.monotonic() + 10
    while _run_pids(run_dir / "config.json") and time.monotonic() < deadline:
        time.sleep(0.2)
    leftover = _run_pids(run_dir / "config.json")
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    assert not leftover, f"processes left running after the job ended: {leftover}"

    last = latest_checkpoint(run_dir)
    for rank in range(2):
        loaded = load_checkpoint(last, rank=rank, world_size=2)
        assert loaded.step == int(last.name.split("-")[1])
        assert loaded.head["weight"].shape == (3, 64)


def test_two_rank_checkpoint_on_one_rank(tmp_path, dynamic_run):
    """The next batch's loss (eval mode) is the same on 2 ranks and on 1 rank."""
    checkpoint = dynamic_run / f"ckpt-{STEPS}"
    base = json.loads((dynamic_run / "config.json").read_text())
    script = PROJECT_ROOT / "tests" / "next_batch_loss.py"

    two = dict(base, resume=str(checkpoint), output_dir=str(tmp_path / "two"))
    two_config = tmp_path / "two.json"
    two_config.write_text(json.dumps(two))
    launch = [
        sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
        "--log_dir", str(tmp_path / "two-logs"), str(script), str(two_config),
        str(tmp_path / "two-out.json"),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        launch, capture_output=True, text=True, timeout=300, env=env, cwd=PROJECT_ROOT
    )
    assert result.returncode == 0, result.stdout[-3000:]

    # One rank with the same global batch (16) reads the same 16 samples.
    one = dict(
        base,
        resume=str(checkpoint),
        output_dir=str(tmp_path / "one"),
        nproc=None,
        batch_size=16,
        device="cpu",
    )
    one_config = tmp_path / "one.json"
    one_config.write_text(json.dumps(one))
    result = subprocess.run(
        [sys.executable, str(script), str(one_config), str(tmp_path / "one-out.json")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    two_loss = json.loads((tmp_path / "two-out.json").read_text())
    one_loss = json.loads((tmp_path / "one-out.json").read_text())
    assert two_loss["world_size"] == 2
    assert one_loss["world_size"] == 1
    # Float32 sums over a different split of rows: equal to about 1e-5.
    assert one_loss["loss"] == pytest.approx(two_loss["loss"], rel=1e-4)
