"""PartialFC on one rank against the dense NumPy reference in tests/pfc_reference.py.

Tolerances: values are compared with ``rtol=1e-5`` plus an absolute floor of 1e-5
times the largest reference magnitude, because float32 gradients near zero carry
absolute, not relative, rounding error.
"""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from plsc_cli.errors import PlscError, PlscUsageError
from plsc_cli.heads.center_storage import to_float32
from plsc_cli.heads.margin import MARGIN_PRESETS
from plsc_cli.heads.partial_fc import PartialFC
from tests.pfc_reference import margin_softmax_reference, momentum_update_reference


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-5) -> None:
    expected = np.asarray(expected, dtype=np.float64)
    atol = rtol * float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def make_batch(
    rng: np.random.Generator, batch: int, dim: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    features = rng.standard_normal((batch, dim)).astype(np.float32)
    labels = rng.integers(0, num_classes, batch)
    return features, labels


def weights_of(head: PartialFC) -> tuple[np.ndarray, np.ndarray]:
    state = head.shard_state()
    dtype = state["storage_dtype"]
    return (
        to_float32(state["weight"], dtype).astype(np.float64),
        to_float32(state["momentum"], dtype).astype(np.float64),
    )


def run_forward_backward(
    head: PartialFC, features: np.ndarray, labels: np.ndarray, loss_factor: float = 1.0
) -> tuple[float, np.ndarray]:
    feature_tensor = paddle.to_tensor(features, stop_gradient=False)
    loss = head(feature_tensor, paddle.to_tensor(labels))
    (loss * loss_factor).backward()
    return float(loss), feature_tensor.grad.numpy()


def test_reference_matches_finite_differences() -> None:
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((7, 5))
    features = rng.standard_normal((3, 5))
    labels = np.array([0, 4, 4])
    margins, scale = (1.2, 0.3, 0.1), 8.0
    _, grad_x, grad_w = margin_softmax_reference(
        weight, features, labels, margins, scale
    )
    step = 1e-6
    for array, grad in ((features, grad_x), (weight, grad_w)):
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            saved = array[index]
            array[index] = saved + step
            upper = margin_softmax_reference(weight, features, labels, margins, scale)
            array[index] = saved - step
            lower = margin_softmax_reference(weight, features, labels, margins, scale)
            array[index] = saved
            numeric[index] = (upper[0] - lower[0]) / (2 * step)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("preset", sorted(MARGIN_PRESETS))
def test_full_softmax_matches_reference(preset: str) -> None:
    rng = np.random.default_rng(2)
    num_classes, dim = 53, 24
    # Seven rows per chunk splits the 53 centers into eight chunks.
    head = PartialFC(num_classes, dim, margins=preset, scale=32.0, chunk_rows=7)
    weight, _ = weights_of(head)
    features, labels = make_batch(rng, 12, dim, num_classes)

    loss, feature_grad = run_forward_backward(head, features, labels)
    class_ids, center_grad = head.sampled_center_gradients()
    expected = margin_softmax_reference(
        weight, features, labels, MARGIN_PRESETS[preset], 32.0
    )

    np.testing.assert_array_equal(class_ids, np.arange(num_classes))
    assert loss == pytest.approx(expected[0], rel=1e-5)
    assert_close(feature_grad, expected[1])
    assert_close(center_grad, expected[2])


def test_sampled_steps_match_reference() -> None:
    rng = np.random.default_rng(3)
    num_classes, dim, lr = 101, 16, 0.2
    head = PartialFC(num_classes, dim, sample_ratio=0.3, chunk_rows=8)
    for _ in range(3):
        weight, velocity = weights_of(head)
        features, labels = make_batch(rng, 10, dim, num_classes)
        loss, feature_grad = run_forward_backward(head, features, labels)
        class_ids, center_grad = head.sampled_center_gradients()
        expected = margin_softmax_reference(
            weight, features, labels, (1.0, 0.5, 0.0), 64.0, classes=class_ids
        )
        head.step(lr)
        new_weight, new_velocity = momentum_update_reference(
            weight[class_ids], velocity[class_ids], expected[2], lr, 0.9, 5e-4
        )
        updated_weight, updated_velocity = weights_of(head)

        assert class_ids.size == 30
        assert loss == pytest.approx(expected[0], rel=1e-5)
        assert_close(feature_grad, expected[1])
        assert_close(center_grad, expected[2])
        assert_close(updated_weight[class_ids], new_weight)
        assert_close(updated_velocity[class_ids], new_velocity)


@pytest.mark.parametrize("storage_dtype", ["float32", "float16", "bfloat16"])
def test_sparse_momentum_equals_dense_on_sampled_rows(storage_dtype: str) -> None:
    rng = np.random.default_rng(4)
    num_classes, dim, lr = 200, 8, 0.5
    head = PartialFC(
        num_classes, dim, sample_ratio=0.1, storage_dtype=storage_dtype, chunk_rows=6
    )
    for _ in range(3):
        before = {key: np.copy(value) for key, value in head.shard_state().items()}
        weight, velocity = weights_of(head)
        features, labels = make_batch(rng, 6, dim, num_classes)
        run_forward_backward(head, features, labels)
        class_ids, center_grad = head.sampled_center_gradients()
        dense_grad = np.zeros_like(weight)
        dense_grad[class_ids] = center_grad
        dense_weight, dense_velocity = momentum_update_reference(
            weight, velocity, dense_grad, lr, 0.9, 5e-4
        )
        head.step(lr)
        after = head.shard_state()
        updated_weight, updated_velocity = weights_of(head)
        untouched = np.ones(num_classes, dtype=bool)
        untouched[class_ids] = False

        # Storage rounding: 2^-8 relative for bfloat16, 2^-11 for float16.
        rtol = {"float32": 1e-6, "float16": 1e-3, "bfloat16": 8e-3}[storage_dtype]
        assert_close(updated_weight[class_ids], dense_weight[class_ids], rtol)
        assert_close(updated_velocity[class_ids], dense_velocity[class_ids], rtol)
        assert np.array_equal(after["weight"][untouched], before["weight"][untouched])
        assert np.array_equal(
            after["momentum"][untouched], before["momentum"][untouched]
        )
        assert after["weight"].dtype == before["weight"].dtype


@pytest.mark.parametrize("storage_dtype", ["float16", "bfloat16"])
def test_half_storage_loss_close_to_float32(storage_dtype: str) -> None:
    rng = np.random.default_rng(5)
    num_classes, dim = 300, 32
    full = PartialFC(num_classes, dim, margins="cosface")
    half = PartialFC(num_classes, dim, margins="cosface", storage_dtype=storage_dtype)
    features, labels = make_batch(rng, 16, dim, num_classes)
    full_loss, full_grad = run_forward_backward(full, features, labels)
    half_loss, half_grad = run_forward_backward(half, features, labels)
    assert half_loss == pytest.approx(full_loss, rel=1e-2)
    assert_close(half_grad, full_grad, rtol=5e-2)


def test_loss_scale_reaches_center_update() -> None:
    rng = np.random.default_rng(6)
    features, labels = make_batch(rng, 8, 8, 40)
    plain = PartialFC(40, 8, weight_decay=0.0)
    scaled = PartialFC(40, 8, weight_decay=0.0)
    _, plain_grad = run_forward_backward(plain, features, labels)
    _, scaled_grad = run_forward_backward(scaled, features, labels, loss_factor=4.0)
    _, plain_center_grad = plain.sampled_center_gradients()
    _, scaled_center_grad = scaled.sampled_center_gradients()
    assert_close(scaled_grad, 4.0 * plain_grad)
    assert_close(scaled_center_grad, 4.0 * plain_center_grad)


def test_initial_centers_do_not_depend_on_sharding() -> None:
    whole = PartialFC(70001, 4, seed=9).shard_state()["weight"]
    again = PartialFC(70001, 4, seed=9).shard_state()["weight"]
    other_seed = PartialFC(70001, 4, seed=10).shard_state()["weight"]
    assert np.array_equal(whole, again)
    assert not np.array_equal(whole, other_seed)
    # The second block of 65536 classes starts from its own generator.
    assert not np.array_equal(whole[:100], whole[65536 : 65536 + 100])


def test_shard_state_round_trip_and_dtype_conversion() -> None:
    rng = np.random.default_rng(7)
    head = PartialFC(50, 8, sample_ratio=0.5)
    features, labels = make_batch(rng, 4, 8, 50)
    run_forward_backward(head, features, labels)
    head.step(0.1)
    state = {key: np.copy(value) for key, value in head.shard_state().items()}

    restored = PartialFC(50, 8, sample_ratio=0.5, seed=3)
    restored.load_shard_state(state)
    as_bfloat16 = PartialFC(50, 8, storage_dtype="bfloat16")
    as_bfloat16.load_shard_state(state)

    restored_state = restored.shard_state()
    assert np.array_equal(restored_state["weight"], state["weight"])
    assert np.array_equal(restored_state["momentum"], state["momentum"])
    assert restored_state["step"] == 1
    assert restored_state["seed"] == 0
    bfloat16_state = as_bfloat16.shard_state()
    assert bfloat16_state["weight"].dtype == np.uint16
    assert_close(
        to_float32(bfloat16_state["weight"], "bfloat16"), state["weight"], 8e-3
    )


def test_load_shard_state_rejects_other_class_range() -> None:
    state = PartialFC(50, 8).shard_state()
    state["class_end"] = 49
    with pytest.raises(PlscError, match=r"re-shard"):
        PartialFC(50, 8).load_shard_state(state)


def test_step_before_backward_raises() -> None:
    head = PartialFC(20, 4)
    with pytest.raises(RuntimeError, match="forward"):
        head.step(0.1)
    head(paddle.randn([2, 4]), paddle.to_tensor([1, 2]))
    with pytest.raises(RuntimeError, match="backward"):
        head.step(0.1)


def test_invalid_settings_raise_usage_errors() -> None:
    with pytest.raises(PlscUsageError, match="storage dtype"):
        PartialFC(10, 4, storage_dtype="int8")
    with pytest.raises(PlscUsageError, match="sample_ratio"):
        PartialFC(10, 4, sample_ratio=0.0)
    with pytest.raises(PlscUsageError, match="margin preset"):
        PartialFC(10, 4, margins="adaface")


def test_label_out_of_range_raises() -> None:
    head = PartialFC(10, 4)
    with pytest.raises(PlscError, match="label 10 is outside"):
        head(paddle.randn([2, 4]), paddle.to_tensor([1, 10]))


@pytest.mark.gpu
def test_fused_gpu_path_matches_cpu_path() -> None:
    rng = np.random.default_rng(8)
    features, labels = make_batch(rng, 16, 32, 97)
    paddle.set_device("gpu")
    try:
        gpu_head = PartialFC(97, 32)
        gpu_loss, gpu_grad = run_forward_backward(gpu_head, features, labels)
        gpu_head.step(0.1)
        gpu_weight = gpu_head.shard_state()["weight"]
    finally:
        paddle.set_device("cpu")
    cpu_head = PartialFC(97, 32)
    cpu_loss, cpu_grad = run_forward_backward(cpu_head, features, labels)
    cpu_head.step(0.1)
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-4)
    assert_close(gpu_grad, cpu_grad, rtol=1e-4)
    assert_close(gpu_weight, cpu_head.shard_state()["weight"], rtol=1e-4)


def test_thread_count_does_not_change_results() -> None:
    rng = np.random.default_rng(9)
    features, labels = make_batch(rng, 8, 16, 300)
    results = []
    for num_threads in (1, 3, 3):
        head = PartialFC(
            300, 16, sample_ratio=0.5, chunk_rows=16, num_threads=num_threads
        )
        loss, grad = run_forward_backward(head, features, labels)
        head.step(0.1)
        results.append((loss, grad, np.copy(head.shard_state()["weight"])))
    (loss_1, grad_1, weight_1), (loss_3, grad_3, weight_3), again = results
    assert loss_3 == pytest.approx(loss_1, rel=1e-6)
    assert_close(grad_3, grad_1, rtol=1e-6)
    assert_close(weight_3, weight_1, rtol=1e-6)
    # Chunks are dealt to threads in a fixed order, so a repeat is bit-identical.
    assert again[0] == loss_3
    assert np.array_equal(again[1], grad_3)
    assert np.array_equal(again[2], weight_3)
