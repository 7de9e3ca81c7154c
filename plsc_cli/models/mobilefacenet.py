"""MobileFaceNet, a face embedding network of about one million parameters.

Chen et al., "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face
Verification on Mobile Devices" (2018), build it from MobileNetV2 inverted
residual bottlenecks (1x1 expansion, 3x3 depthwise, linear 1x1 projection) with
PReLU activations, and replace global average pooling with a global depthwise
convolution (GDConv): a 7x7 depthwise convolution without activation that
weights each position of the final 7x7 map separately. A linear layer with
batch normalisation produces the embedding.
"""

from __future__ import annotations

import paddle
from paddle import nn

from plsc_cli.models import register

# Bottleneck stages: (expansion factor, output channels, repeats, first stride).
BOTTLENECK_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)
STEM_CHANNELS = 64
HEAD_CHANNELS = 512
# Spatial size of the last feature map for a 112x112 input.
FEATURE_MAP_SIZE = 7


class ConvBN(nn.Sequential):
    """Convolution, batch norm and an optional PReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        activation: bool = True,
        padding: int | None = None,
    ) -> None:
        if padding is None:
            padding = kernel_size // 2
        layers: list[nn.Layer] = [
            nn.Conv2D(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                groups=groups,
                weight_attr=nn.initializer.KaimingNormal(),
                bias_attr=False,
            ),
            nn.BatchNorm2D(out_channels),
        ]
        if activation:
            layers.append(nn.PReLU(out_channels))
        super().__init__(*layers)


class Bottleneck(nn.Layer):
    """Inverted residual: expand 1x1, depthwise 3x3, linear project 1x1.

    The identity shortcut is added when the block keeps shape (stride 1 and the
    same number of channels).
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, expansion: int
    ) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_shortcut = stride == 1 and in_channels == out_channels
        self.body = nn.Sequential(
            ConvBN(in_channels, hidden, 1),
            ConvBN(hidden, hidden, 3, stride=stride, groups=hidden),
            ConvBN(hidden, out_channels, 1, activation=False),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.body(x)
        if self.use_shortcut:
            out = out + x
        return out


class MobileFaceNet(nn.Layer):
    """MobileFaceNet with a GDConv and a linear BN embedding."""

    def __init__(self, embedding_size: int = 512) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            ConvBN(3, STEM_CHANNELS, 3, stride=2),
            ConvBN(STEM_CHANNELS, STEM_CHANNELS, 3, groups=STEM_CHANNELS),
        )
        blocks = []
        in_channels = STEM_CHANNELS
        for expansion, channels, repeats, stride in BOTTLENECK_STAGES:
            for i in range(repeats):
                blocks.append(
                    Bottleneck(
                        in_channels, channels, stride if i == 0 else 1, expansion
                    )
                )
                in_channels = channels
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = ConvBN(in_channels, HEAD_CHANNELS, 1)
        self.gdconv = ConvBN(
            HEAD_CHANNELS,
            HEAD_CHANNELS,
            FEATURE_MAP_SIZE,
            groups=HEAD_CHANNELS,
            activation=False,
            padding=0,
        )
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(HEAD_CHANNELS, embedding_size, bias_attr=False)
        self.features = nn.BatchNorm1D(embedding_size)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.stem(x)
        x = self.blocks(x)
        x = self.conv_head(x)
        x = self.gdconv(x)
        x = self.flatten(x)
        x = self.fc(x)
        return self.features(x)


@register("mobilefacenet")
def mobilefacenet(embedding_size: int = 512) -> MobileFaceNet:
    """Build MobileFaceNet with an ``embedding_size``-dimensional output."""
    return MobileFaceNet(embedding_size)
