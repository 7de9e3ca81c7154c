"""Backbone registry: shapes, parameter counts, multiply-adds, static graphs."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from plsc_cli.errors import PlscUsageError
from plsc_cli.models import build_backbone, list_backbones
from plsc_cli.models.complexity import count_macs, count_parameters

# A forward pass of the deepest IResNets takes seconds on two CPU cores. They
# get one slow shape test; their blocks are the same classes as iresnet50's, so
# the static-graph test covers them through iresnet50.
HEAVY = {"iresnet100", "iresnet200"}
LIGHT = [name for name in list_backbones() if name not in HEAVY]


def _images(batch: int, seed: int = 0) -> paddle.Tensor:
    rng = np.random.default_rng(seed)
    return paddle.to_tensor(rng.uniform(-1, 1, (batch, 3, 112, 112)).astype("float32"))


def test_registry_lists_builtin_backbones() -> None:
    expected = {"iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200"}
    names = list_backbones()
    assert expected <= set(names)
    assert "mobilefacenet" in names


def test_unknown_backbone_lists_choices() -> None:
    with pytest.raises(PlscUsageError, match="iresnet50") as info:
        build_backbone("resnet50")
    assert "resnet50" in str(info.value)


def test_invalid_embedding_size() -> None:
    with pytest.raises(PlscUsageError, match="embedding size 0"):
        build_backbone("mobilefacenet", embedding_size=0)


def _check_forward(name: str, embedding_size: int) -> None:
    paddle.seed(0)
    model = build_backbone(name, embedding_size=embedding_size)
    model.train()
    out = model(_images(2))
    assert out.shape == [2, embedding_size]
    assert out.dtype == paddle.float32
    assert np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("name", LIGHT)
@pytest.mark.parametrize("embedding_size", [512, 128])
def test_output_shape_and_finite(name: str, embedding_size: int) -> None:
    _check_forward(name, embedding_size)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HEAVY))
def test_heavy_output_shape(name: str) -> None:
    _check_forward(name, 512)


@pytest.mark.parametrize("name", list_backbones())
def test_parameter_count_positive(name: str) -> None:
    model = build_backbone(name)
    params = count_parameters(model)
    assert params > 0
    # Every counted parameter is trainable: BN running statistics are left out.
    assert count_parameters(model, trainable_only=True) == params


def test_iresnet50_size_matches_arcface() -> None:
    # The ArcFace IResNet-50 has about 43.6M parameters and 6.3G multiply-adds.
    model = build_backbone("iresnet50")
    assert abs(count_parameters(model) - 43.6e6) / 43.6e6 < 0.01
    assert abs(count_macs(model) - 6.3e9) / 6.3e9 < 0.01


def test_mobilefacenet_size_matches_paper() -> None:
    # The MobileFaceNets paper states fewer than 1M parameters for a 128-d
    # embedding. Its 221M multiply-adds are quoted by arXiv 1908.09124.
    model = build_backbone("mobilefacenet", embedding_size=128)
    assert 0.95e6 < count_parameters(model) < 1.01e6
    assert abs(count_macs(model) - 221e6) / 221e6 < 0.01


def test_count_macs_matches_formula() -> None:
    # One 3x3 conv (3 -> 8 channels, stride 2, 112 -> 56) and a linear layer.
    model = paddle.nn.Sequential(
        paddle.nn.Conv2D(3, 8, 3, stride=2, padding=1),
        paddle.nn.Flatten(),
        paddle.nn.Linear(8 * 56 * 56, 10),
    )
    expected = 56 * 56 * 8 * 3 * 9 + 8 * 56 * 56 * 10
    assert count_macs(model) == expected
    assert model.training


def test_dropout_option() -> None:
    model = build_backbone("iresnet18", dropout=0.2)
    assert isinstance(model.dropout, paddle.nn.Dropout)
    with pytest.raises(ValueError, match="dropout"):
        build_backbone("iresnet18", dropout=1.0)


@pytest.mark.parametrize("name", LIGHT)
def test_to_static_matches_eager(name: str) -> None:
    paddle.seed(1)
    model = build_backbone(name, embedding_size=128)
    model.eval()
    images = _images(2, seed=1)
    eager = model(images).numpy()
    static_model = paddle.jit.to_static(model, full_graph=True)
    static = static_model(images).numpy()
    np.testing.assert_allclose(static, eager, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["mobilefacenet", "iresnet18"])
def test_to_static_training_matches_eager(name: str) -> None:
    # Train mode: batch statistics, running-mean updates and gradients must
    # agree between the eager layer and its static-graph copy.
    paddle.seed(2)
    eager = build_backbone(name, embedding_size=64)
    static = build_backbone(name, embedding_size=64)
    static.set_state_dict(eager.state_dict())
    eager.train()
    static.train()
    images = _images(4, seed=2)
    static_forward = paddle.jit.to_static(static, full_graph=True)

    eager_out = eager(images)
    static_out = static_forward(images)
    (eager_out**2).mean().backward()
    (static_out**2).mean().backward()

    np.testing.assert_allclose(static_out.numpy(), eager_out.numpy(), atol=1e-5)
    static_params = dict(static.named_parameters())
    for param_name, param in eager.named_parameters():
        if param.stop_gradient:  # BN running statistics
            continue
        static_grad = static_params[param_name].grad
        assert static_grad is not None, param_name
        np.testing.assert_allclose(
            static_grad.numpy(),
            param.grad.numpy(),
            rtol=1e-4,
            atol=1e-6,
            err_msg=param_name,
        )
    np.testing.assert_allclose(
        static.features._mean.numpy(), eager.features._mean.numpy(), atol=1e-6
    )


def test_count_parameters_skips_bn_statistics() -> None:
    model = paddle.nn.Sequential(
        paddle.nn.Conv2D(3, 8, 3),  # 8 * 3 * 3 * 3 weights + 8 biases
        paddle.nn.BatchNorm2D(8),  # 8 scales + 8 shifts; mean, variance skipped
        paddle.nn.PReLU(8),  # 8 slopes
    )
    assert count_parameters(model) == 216 + 8 + 16 + 8


def test_register_custom_backbone() -> None:
    from plsc_cli import models

    @models.register("test_linear")
    def build(embedding_size: int = 512) -> paddle.nn.Layer:
        return paddle.nn.Sequential(
            paddle.nn.Flatten(), paddle.nn.Linear(3 * 112 * 112, embedding_size)
        )

    try:
        assert "test_linear" in list_backbones()
        out = build_backbone("test_linear", embedding_size=16)(_images(2))
        assert out.shape == [2, 16]
        with pytest.raises(ValueError, match="already registered"):
            models.register("test_linear")(lambda embedding_size=512: None)
    finally:
        models._REGISTRY.pop("test_linear")
