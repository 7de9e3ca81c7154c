"""Parameter and multiply-add counts of a backbone, measured by a forward pass.

``count_macs`` hooks every ``Conv2D`` and ``Linear`` layer and counts the
multiply-adds of their weights: ``out_h * out_w * out_channels * in_channels /
groups * kernel_h * kernel_w`` for a convolution, ``in_features *
out_features`` per row for a linear layer. Batch norm, activations, additions
and biases are not counted, which is the usual convention for the "FLOPs"
quoted for face recognition backbones.
"""

from __future__ import annotations

import math
from typing import Any

import paddle
from paddle import nn

# Paddle stores batch-norm running statistics as parameters (``_mean`` and
# ``_variance``, not trainable). They are state, not weights, so they are not
# counted, as PyTorch buffers are not.
_BATCH_NORM_TYPES = (
    nn.BatchNorm,
    nn.BatchNorm1D,
    nn.BatchNorm2D,
    nn.BatchNorm3D,
    nn.SyncBatchNorm,
)


def count_parameters(model: nn.Layer, trainable_only: bool = False) -> int:
    """Count the parameter elements of ``model``, without BN running statistics."""
    statistics = set()
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, _BATCH_NORM_TYPES):
            statistics.update({id(layer._mean), id(layer._variance)})
    total = 0
    for param in model.parameters():
        if id(param) in statistics:
            continue
        if trainable_only and param.stop_gradient:
            continue
        total += math.prod(param.shape)
    return total


def count_macs(model: nn.Layer, image_size: int = 112) -> int:
    """Count the multiply-adds of one ``3 x image_size x image_size`` image.

    Runs one forward pass in eval mode and restores the training flag after.
    """
    macs = 0

    # A post hook that returns None leaves the layer's output unchanged.
    def conv_hook(layer: nn.Layer, inputs: Any, output: paddle.Tensor) -> Any:
        nonlocal macs
        out_channels, out_h, out_w = output.shape[1:]
        in_per_group = layer.weight.shape[1]
        kernel = math.prod(layer.weight.shape[2:])
        macs += out_h * out_w * out_channels * in_per_group * kernel

    def linear_hook(layer: nn.Layer, inputs: Any, output: paddle.Tensor) -> Any:
        nonlocal macs
        in_features, out_features = layer.weight.shape
        rows = math.prod(output.shape[:-1])
        macs += rows * in_features * out_features

    handles = []
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, nn.Conv2D):
            handles.append(layer.register_forward_post_hook(conv_hook))
        elif isinstance(layer, nn.Linear):
            handles.append(layer.register_forward_post_hook(linear_hook))

    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            model(paddle.zeros([1, 3, image_size, image_size], dtype="float32"))
    finally:
        for handle in handles:
            handle.remove()
        if was_training:
            model.train()
    return macs
