"""Small parts of the training engine: LR schedule, loss scaler, optimizer,
checkpoint state flattening and the launcher's failure report."""

from __future__ import annotations

import numpy as np
import pytest

from plsc_cli.engine.schedule import learning_rate


def test_lr_piecewise_decay():
    kwargs = dict(base_lr=0.4, steps_per_epoch=10, decay_epochs=[2, 4])
    assert learning_rate(0, **kwargs) == pytest.approx(0.4)
    assert learning_rate(19, **kwargs) == pytest.approx(0.4)
    assert learning_rate(20, **kwargs) == pytest.approx(0.04)
    assert learning_rate(39, **kwargs) == pytest.approx(0.04)
    assert learning_rate(40, **kwargs) == pytest.approx(0.004)


def test_lr_linear_warmup():
    kwargs = dict(base_lr=1.0, steps_per_epoch=4, decay_epochs=[10])
    assert learning_rate(0, warmup_epochs=1, **kwargs) == pytest.approx(0.25)
    assert learning_rate(3, warmup_epochs=1, **kwargs) == pytest.approx(1.0)
    assert learning_rate(4, warmup_epochs=1, **kwargs) == pytest.approx(1.0)


def test_loss_scaler_halves_and_grows():
    from plsc_cli.engine.precision import LossScaler

    scaler = LossScaler(scale=1024.0, growth_interval=2)
    scaler.update(False, step=0)
    assert scaler.scale == 512.0
    assert scaler.skipped_steps == 1
    scaler.update(True, step=1)
    scaler.update(True, step=2)
    assert scaler.scale == 1024.0
    restored = LossScaler()
    restored.load_state(scaler.state())
    assert restored.state() == scaler.state()


def test_scale_gradient_multiplies_grad_only():
    import paddle

    from plsc_cli.engine.precision import scale_gradient

    x = paddle.to_tensor([1.0, 2.0], stop_gradient=False)
    y = scale_gradient(x, 8.0)
    np.testing.assert_array_equal(y.numpy(), [1.0, 2.0])
    (y * paddle.to_tensor([3.0, 5.0])).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [24.0, 40.0])


def test_momentum_sgd_matches_formula():
    import paddle

    from plsc_cli.engine.optimizer import MomentumSGD

    paddle.seed(0)
    layer = paddle.nn.Linear(3, 2)
    weight = layer.weight.numpy().copy()
    optimizer = MomentumSGD(layer, momentum=0.9, weight_decay=0.01)
    velocity = np.zeros_like(weight)
    x = paddle.to_tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    for lr in (0.1, 0.05):
        layer(x).sum().backward()
        grad = layer.weight.grad.numpy()
        optimizer.set_lr(lr)
        optimizer.step()
        optimizer.clear_grad()
        velocity = 0.9 * velocity + grad + 0.01 * weight
        weight = weight - lr * velocity
        np.testing.assert_allclose(layer.weight.numpy(), weight, rtol=1e-6)
    state = optimizer.state_dict()
    np.testing.assert_allclose(state["velocity"]["weight"], velocity, rtol=1e-6)


def test_flatten_round_trip():
    from plsc_cli.engine.checkpoint import flatten_state, unflatten_state

    state = {"velocity": {"a.weight": np.ones((2, 2))}, "master": {}, "step": 3}
    flat = flatten_state(state)
    assert set(flat) == {"velocity/a.weight", "step"}
    back = unflatten_state(flat)
    np.testing.assert_array_equal(back["velocity"]["a.weight"], np.ones((2, 2)))
    assert back["step"] == 3


def test_resume_path_without_checkpoint(tmp_path):
    from plsc_cli.engine.checkpoint import resolve_resume
    from plsc_cli.errors import PlscError

    assert resolve_resume("auto", tmp_path) is None
    with pytest.raises(PlscError, match="meta.json"):
        resolve_resume(str(tmp_path / "ckpt-3"), tmp_path)


def test_failure_message_names_rank(tmp_path):
    from plsc_cli.distributed.launch import _failure_message

    (tmp_path / "workerlog.1").write_text(
        "I1204 12:00:00.000 1 tcp_utils.cc:1] noise\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "ValueError: bad batch\n"
    )
    launch_log = tmp_path / "launch.log"
    launch_log.write_text(
        "Container rank 1 status failed cmd ['python'] code 1 log workerlog.1\n"
    )
    message = _failure_message(tmp_path, launch_log, 241)
    assert message.startswith("rank 1 failed with exit code 1")
    assert "ValueError: bad batch" in message


def test_failure_message_for_killed_rank(tmp_path):
    from plsc_cli.distributed.launch import _failure_message

    (tmp_path / "workerlog.0").write_text("step 3/10\n")
    launch_log = tmp_path / "launch.log"
    launch_log.write_text("Container rank 0 status failed cmd [] code -9 log x\n")
    message = _failure_message(tmp_path, launch_log, 1)
    assert message.startswith("rank 0 was killed by SIGKILL")


def test_watchdog_stops_hanging_launcher(tmp_path):
    import sys
    import time

    from plsc_cli.distributed.launch import LaunchPlan, run_launch
    from plsc_cli.errors import PlscError

    # A "launcher" that hangs after its rank 1 wrote an error file.
    script = (
        "import pathlib, time; "
        f"pathlib.Path({str(tmp_path)!r}, 'rank1.error').write_text('boom'); "
        "time.sleep(60)"
    )
    plan = LaunchPlan([sys.executable, "-c", script], {}, 2, tmp_path)
    start = time.monotonic()
    with pytest.raises(PlscError, match="rank 1"):
        run_launch(plan, grace_s=1.0)
    assert time.monotonic() - start < 30


def test_blame_prefers_killed_rank_over_collective_error():
    from plsc_cli.distributed.launch import RankEnd, blame

    gloo = "RuntimeError: [gloo] TIMEOUT self_rank = 0 pair_rank = 1"
    # Rank 0's collective error is seen first, within the same second.
    ends = [RankEnd(0, 100.0, 1, gloo), RankEnd(1, 100.4, -9, None)]
    assert blame(ends).rank == 1
    # Rank 1's exit status was not seen, and it wrote no Python error.
    ends = [RankEnd(0, 100.0, None, gloo), RankEnd(1, 100.2, None, None)]
    assert blame(ends).rank == 1


def test_blame_prefers_first_failure_over_stopped_ranks():
    from plsc_cli.distributed.launch import RankEnd, blame

    ends = [
        RankEnd(0, 105.0, -15, None),  # stopped by the launcher later
        RankEnd(1, 100.0, 1, "ValueError: bad batch"),
        RankEnd(2, 100.5, -15, None),
    ]
    assert blame(ends).rank == 1
    assert blame([RankEnd(0, 1.0, 0, None)]) is None


def test_process_state_reads_exit_signal_of_zombie():
    import signal
    import subprocess
    import sys
    import time

    from plsc_cli.distributed.launch import _process_state

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert _process_state(child.pid)[0] != "Z"
        child.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _process_state(child.pid)[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _process_state(child.pid) == ("Z", -signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert _process_state(child.pid) is None


def test_failure_message_is_one_line_for_python_error(tmp_path, capsys):
    from plsc_cli.distributed.launch import RankWatch, _failure_message

    (tmp_path / "rank0.pid").write_text("999999999")
    (tmp_path / "rank0.message").write_text("bad pickle in lfw.bin\n")
    (tmp_path / "rank0.error").write_text("Traceback (most recent...)\nX: y\n")
    (tmp_path / "workerlog.0").write_text("Traceback (most recent call last):\n")
    launch_log = tmp_path / "launch.log"
    launch_log.write_text("Container rank 0 status failed cmd [] code 1 log x\n")
    ranks = RankWatch(tmp_path)
    ranks.settle(timeout=0.1)
    message = _failure_message(tmp_path, launch_log, 1, ranks)
    assert message.startswith("rank 0: bad pickle in lfw.bin")
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err


def test_too_few_classes_names_highest_label_and_line(tmp_path):
    from plsc_cli.engine.trainer import too_few_classes

    (tmp_path / "label.txt").write_text("a.jpg\t0\n\nb.jpg\t1\nc.jpg\t9\nd.jpg\t4\n")
    message = too_few_classes(str(tmp_path), 2, 10)
    assert message.startswith(
        f"--num-classes 2 is too small: {tmp_path} has labels up to 9, "
        "so at least 10 classes are needed"
    )
    assert f"(first: label 9 at {tmp_path / 'label.txt'}:4)" in message
    assert "identities" not in message
    assert "first:" not in too_few_classes("synthetic:10", 2, 10)
