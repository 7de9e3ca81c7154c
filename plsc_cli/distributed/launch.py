"""Start a training job: in this process, or one rank per device under
``python -m paddle.distributed.launch``.

The launched job runs ``plsc_cli/engine/worker.py <run>/config.json`` on every
rank, with per-rank logs in ``<run>/logs`` (``workerlog.<r>``) and the launcher's
own output in ``<run>/logs/launch.log``. ``OMP_NUM_THREADS`` of each rank is set
in the environment before any rank imports paddle: the CPU cores of the node
divided by its ranks.

Failure handling: paddle.distributed.launch stops every rank and exits non-zero
when one rank exits with an error or is killed. As a watchdog for a launcher
that does not stop by itself, a rank's error file (written by the worker when
it fails) gives the launcher ``FAILURE_GRACE_S`` more seconds before its whole
process group is killed.

Which rank to blame: while the job runs, the rank processes (their ids are in
``rank<r>.pid``) are watched, and the time each one ended and its exit status
(read from ``/proc`` while it waits to be reaped) are kept. When the job
fails, the ranks that failed first are preferred. Among those, a rank that
died by a signal or without a Python error comes before a rank with a Python
error, and a collective error (a peer that is gone) comes last.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from plsc_cli.config import CONFIG_FILE_NAME, TrainConfig, parse_gpus
from plsc_cli.engine.metrics import cpu_count
from plsc_cli.engine.worker import LOGS_DIR, PROGRESS_FILE
from plsc_cli.errors import PlscError

logger = logging.getLogger(__name__)

FAILURE_GRACE_S = 20.0
POLL_S = 0.5
# Rank processes are checked this many times per POLL_S.
RANK_POLLS = 5
# After the launcher exits, how long to wait for every rank's end to be seen.
SETTLE_S = 3.0
# Ranks that failed within this many seconds of the first are compared by how
# they failed, not by time.
SAME_TIME_S = 1.0
# Words of errors that follow a peer's death rather than cause it.
_COLLECTIVE = re.compile(
    r"gloo|nccl|timeout|timed out|connection (reset|closed|refused)|broken pipe"
    r"|pair_rank|peer",
    re.IGNORECASE,
)
LOG_TAIL_LINES = 15
# Log lines of Paddle's C++ code and launcher, left out of the error report.
_NOISE = re.compile(
    r"^([IWEF]\d{4} |=+|FLAGS\(|\s*warnings\.warn|.*UserWarning|LAUNCH )"
)
_FAILED_RANK = re.compile(r"Container rank (\d+) status failed .*?code (-?\d+)")


@dataclass
class LaunchPlan:
    """The command and environment of one node's launcher."""

    command: list[str]
    env: dict[str, str]
    local_ranks: int
    log_dir: Path


def plan_launch(config: TrainConfig, config_path: Path) -> LaunchPlan:
    """Build the paddle.distributed.launch command for this node."""
    log_dir = Path(config.output_dir) / LOGS_DIR
    env = dict(os.environ)
    command = [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--log_dir",
        str(log_dir),
        "--log_overwrite",
        "True",
    ]
    if config.gpus is not None:
        gpu_ids = parse_gpus(config.gpus, available=_visible_gpus())
        local_ranks = len(gpu_ids)
        command += ["--devices", ",".join(map(str, gpu_ids))]
    else:
        local_ranks = config.nproc or 1
        # CPU ranks talk over gloo; the worker sets its device to cpu itself.
        # (An empty CUDA_VISIBLE_DEVICES makes Paddle 3.3's launcher fail.)
        env["PADDLE_DISTRI_BACKEND"] = "gloo"
    command += ["--nproc_per_node", str(local_ranks)]
    if config.nnodes > 1:
        command += [
            "--nnodes",
            str(config.nnodes),
            "--master",
            str(config.master),
            "--rank",
            str(config.node_rank),
        ]
    worker = Path(__file__).resolve().parents[1] / "engine" / "worker.py"
    command += [str(worker), str(config_path)]
    threads = max(1, cpu_count() // local_ranks)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    return LaunchPlan(command, env, local_ranks, log_dir)


def _visible_gpus() -> int:
    """Return the number of GPUs Paddle detects, to check the --gpus ids."""
    from plsc_cli.console import import_paddle

    paddle = import_paddle()
    if not paddle.device.is_compiled_with_cuda():
        return 0
    return paddle.device.cuda.device_count()


def train(config: TrainConfig) -> int:
    """Run the job described by ``config``; returns 0 or raises PlscError."""
    check_inputs(config)
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = config.save(run_dir / CONFIG_FILE_NAME)
    if not config.launches_ranks:
        from plsc_cli import console
        from plsc_cli.engine.worker import run_worker

        console.add_log_file(run_dir)
        run_worker(config)
        return 0
    plan = plan_launch(config, config_path)
    run_launch(plan)
    logger.info(
        "run folder %s: checkpoints, scalars.csv and plsc.log; per-rank logs in %s",
        run_dir,
        plan.log_dir,
    )
    return 0


def check_inputs(config: TrainConfig) -> None:
    """Check the training data path and the verification sets before launching.

    A missing file then gives one clean error here instead of one per rank,
    and before the run folder is made. Loading a verification pickle (without
    decoding its images) is cheap.
    """
    from plsc_cli.data.pipeline import ACCEPTED_LAYOUTS, SYNTHETIC_PREFIX
    from plsc_cli.data.verification import load_verification_pickle

    if config.data and not config.data.startswith(SYNTHETIC_PREFIX):
        if not Path(config.data).exists():
            raise PlscError(
                f"training data not found: {config.data}; pass one of: "
                f"{ACCEPTED_LAYOUTS}"
            )
    for path in config.val_bins:
        if not Path(path).is_file():
            raise PlscError(
                f"verification set not found: {path}; give an existing .bin file "
                "to --val-bin"
            )
        load_verification_pickle(Path(path))


def run_launch(plan: LaunchPlan, grace_s: float = FAILURE_GRACE_S) -> int:
    """Run the launcher, show rank 0's progress, and report a failed rank."""
    plan.log_dir.mkdir(parents=True, exist_ok=True)
    for pattern in ("rank*.error", "rank*.message", "rank*.pid"):
        for stale in plan.log_dir.glob(pattern):
            stale.unlink()
    progress = plan.log_dir / PROGRESS_FILE
    progress.write_text("", encoding="utf-8")
    launch_log = plan.log_dir / "launch.log"
    logger.info(
        "starting %d rank(s); per-rank logs in %s", plan.local_ranks, plan.log_dir
    )
    logger.debug("launch command: %s", " ".join(plan.command))
    with open(launch_log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            plan.command,
            env=plan.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        tail = _ProgressTail(progress)
        ranks = RankWatch(plan.log_dir)
        failure_seen: float | None = None
        try:
            while proc.poll() is None:
                for _ in range(RANK_POLLS):
                    time.sleep(POLL_S / RANK_POLLS)
                    ranks.poll()
                tail.flush()
                if failure_seen is None and _error_files(plan.log_dir):
                    failure_seen = time.monotonic()
                if failure_seen is not None and (
                    time.monotonic() - failure_seen > grace_s
                ):
                    logger.warning(
                        "a rank failed and the launcher is still running after "
                        "%.0f s; stopping the job",
                        grace_s,
                    )
                    _kill_group(proc)
        except KeyboardInterrupt:
            _kill_group(proc)
            raise
        tail.flush()
    if proc.returncode == 0:
        return 0
    ranks.settle()
    raise PlscError(_failure_message(plan.log_dir, launch_log, proc.returncode, ranks))


class _ProgressTail:
    """Copy new lines of rank 0's progress file to the terminal."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def flush(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8", errors="replace") as f:
            f.seek(self.offset)
            text = f.read()
            # Keep a partial last line for the next call.
            end = text.rfind("\n") + 1
            self.offset += len(text[:end].encode("utf-8"))
        from plsc_cli import console

        for line in text[:end].splitlines():
            console.get_console(stderr=True).print(line, markup=False)


@dataclass
class RankEnd:
    """The end of one rank: when, its exit status and its error, as seen."""

    rank: int
    at: float  # wall-clock seconds
    code: int | None  # negative: killed by that signal; None: not seen
    message: str | None  # one-line Python error, if the rank wrote one


class RankWatch:
    """Track the rank processes of one node from their pid files."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.pids: dict[int, int] = {}
        self.ended: dict[int, tuple[float, int | None]] = {}

    def poll(self) -> None:
        for path in self.log_dir.glob("rank*.pid"):
            rank = int(path.stem.removeprefix("rank"))
            if rank not in self.pids:
                try:
                    self.pids[rank] = int(path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
        for rank, pid in self.pids.items():
            if rank in self.ended:
                continue
            state = _process_state(pid)
            if state is None:
                self.ended[rank] = (time.time(), None)
            elif state[0] == "Z":
                self.ended[rank] = (time.time(), state[1])

    def settle(self, timeout: float = SETTLE_S) -> None:
        """Wait until every known rank is seen to end, or ``timeout``."""
        deadline = time.monotonic() + timeout
        self.poll()
        while len(self.ended) < len(self.pids) and time.monotonic() < deadline:
            time.sleep(POLL_S / RANK_POLLS)
            self.poll()

    def ends(self) -> list[RankEnd]:
        result = []
        for rank in sorted(self.pids):
            message_path = self.log_dir / f"rank{rank}.message"
            message = None
            at, code = self.ended.get(rank, (time.time(), None))
            if message_path.exists():
                message = message_path.read_text(encoding="utf-8").strip()
                at = min(at, message_path.stat().st_mtime)
            result.append(RankEnd(rank, at, code, message))
        return result


def _process_state(pid: int) -> tuple[str, int | None] | None:
    """Return the state letter and, for a zombie, the exit code; None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    if fields[0] != "Z":
        return fields[0], None
    try:
        status = int(fields[49])
    except (IndexError, ValueError):
        return "Z", None
    if os.WIFSIGNALED(status):
        return "Z", -os.WTERMSIG(status)
    return "Z", os.WEXITSTATUS(status)


def blame(ends: list[RankEnd]) -> RankEnd | None:
    """Pick the rank that most likely caused the failure."""
    failed = [
        e for e in ends if e.message is not None or (e.code is not None and e.code)
    ]
    # A rank that ended unseen and wrote no error also counts as failed.
    failed += [e for e in ends if e.message is None and e.code is None]
    if not failed:
        return None
    first = min(e.at for e in failed)

    def rank_key(e: RankEnd) -> tuple[int, int, float, int]:
        late = int(e.at - first > SAME_TIME_S)
        if e.message is None and e.code == -signal.SIGTERM:
            kind = 3  # what the launcher sends the others when one fails
        elif e.message is None and (e.code is None or e.code < 0):
            kind = 0  # killed by a signal, or gone without a Python error
        elif _COLLECTIVE.search(e.message or ""):
            kind = 2
        else:
            kind = 1
        return late, kind, e.at, e.rank

    return min(failed, key=rank_key)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _error_files(log_dir: Path) -> list[Path]:
    return sorted(log_dir.glob("rank*.error"))


def _failure_message(
    log_dir: Path, launch_log: Path, returncode: int, ranks: RankWatch | None = None
) -> str:
    """Name the failed rank, how it ended and its error."""
    from plsc_cli import console

    launcher_rank, launcher_code = _launcher_report(launch_log)
    end = blame(ranks.ends()) if ranks is not None else None
    if end is None and launcher_rank is None:
        errors = _error_files(log_dir)
        if errors:
            launcher_rank = int(errors[0].stem.removeprefix("rank"))
    if end is None and launcher_rank is None:
        return (
            f"training job failed (launcher exit code {returncode}); "
            f"see {launch_log} and the worker logs in {log_dir}"
        )
    if end is None:
        assert launcher_rank is not None  # both None returned above
        message = _read_message(log_dir, launcher_rank)
        end = RankEnd(launcher_rank, 0.0, launcher_code, message)
    code = end.code
    if code is None and launcher_rank == end.rank:
        code = launcher_code
    worker_log = log_dir / f"workerlog.{end.rank}"
    err = console.get_console(stderr=True)
    if end.message is not None:
        if console.is_debug():
            trace = log_dir / f"rank{end.rank}.error"
            if trace.exists():
                err.print(trace.read_text(encoding="utf-8").rstrip(), markup=False)
        return f"rank {end.rank}: {end.message} (full log: {worker_log})"
    if code is None:
        status = "ended without a Python error (killed by a signal or out of memory)"
    else:
        status = _describe_exit(code)
    lines = _log_tail(worker_log)
    if lines:
        err.print(f"last lines of rank {end.rank}'s log ({worker_log}):", markup=False)
        for line in lines:
            err.print(f"  {line}", markup=False)
    reason = next((ln for ln in reversed(lines) if _looks_like_error(ln)), "")
    reason = f": {reason.strip()}" if reason else ""
    return f"rank {end.rank} {status}{reason}; full log: {worker_log}"


def _read_message(log_dir: Path, rank: int) -> str | None:
    """Read the rank's one-line error, or the last line of its traceback file."""
    for name in (f"rank{rank}.message", f"rank{rank}.error"):
        path = log_dir / name
        if path.exists():
            lines = path.read_text(encoding="utf-8").strip().splitlines()
            return lines[-1].strip() if lines else None
    return None


def _launcher_report(launch_log: Path) -> tuple[int | None, int | None]:
    """Find the rank and exit code the launcher's log names as failed, if any."""
    if not launch_log.exists():
        return None, None
    text = launch_log.read_text(encoding="utf-8", errors="replace")
    match = _FAILED_RANK.search(text)
    if match:
        return int(match.group(1)), int(match.group(2))
    return None, None


def _log_tail(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    useful = [ln for ln in lines if ln.strip() and not _NOISE.match(ln)]
    return useful[-LOG_TAIL_LINES:]


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "failed"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"failed with exit code {code}"


def _looks_like_error(line: str) -> bool:
    return bool(re.match(r"^\s*[\w.]*(Error|Exception|Interrupt)\b", line)) or (
        "failed" in line
    )
