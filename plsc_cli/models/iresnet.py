"""IResNet, the ResNet variant of the ArcFace paper for 112x112 face crops.

Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition"
(CVPR 2019), describe the changes to a plain ResNet: a stride-1 3x3 stem so that
the first stage still receives 112x112 maps, residual units ordered
BN-conv-BN-PReLU-conv-BN with the stride on the second convolution, and the
"BN-Dropout-FC-BN" output head instead of global pooling.

Stages have 64, 128, 256 and 512 channels and each starts with stride 2, so a
112x112 input ends at 7x7 before the head.
"""

from __future__ import annotations

import paddle
from paddle import nn

from plsc_cli.models import register

# Residual units per stage for each depth.
STAGE_DEPTHS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    200: (6, 26, 60, 6),
}
STAGE_CHANNELS = (64, 128, 256, 512)
# Spatial size of the last stage's output for a 112x112 input.
FEATURE_MAP_SIZE = 7
BN_EPSILON = 1e-5


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2D:
    return nn.Conv2D(
        in_channels,
        out_channels,
        kernel_size=3,
        stride=stride,
        padding=1,
        weight_attr=nn.initializer.KaimingNormal(),
        bias_attr=False,
    )


class IBasicBlock(nn.Layer):
    """Residual unit BN-conv3x3-BN-PReLU-conv3x3(stride)-BN plus the shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2D(in_channels, epsilon=BN_EPSILON)
        self.conv1 = _conv3x3(in_channels, channels)
        self.bn2 = nn.BatchNorm2D(channels, epsilon=BN_EPSILON)
        self.prelu = nn.PReLU(channels)
        self.conv2 = _conv3x3(channels, channels, stride)
        self.bn3 = nn.BatchNorm2D(channels, epsilon=BN_EPSILON)
        self.downsample: nn.Layer | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2D(
                    in_channels,
                    channels,
                    kernel_size=1,
                    stride=stride,
                    weight_attr=nn.initializer.KaimingNormal(),
                    bias_attr=False,
                ),
                nn.BatchNorm2D(channels, epsilon=BN_EPSILON),
            )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.bn1(x)
        out = self.conv1(out)
        out = self.bn2(out)
        out = self.prelu(out)
        out = self.conv2(out)
        out = self.bn3(out)
        return out + shortcut


class IResNet(nn.Layer):
    """IResNet with the BN-Dropout-FC-BN embedding head.

    Args:
        stage_depths: residual units in each of the four stages.
        embedding_size: length of the output embedding.
        dropout: dropout probability before the FC layer (0 disables it).
    """

    def __init__(
        self,
        stage_depths: tuple[int, int, int, int],
        embedding_size: int = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.stem = nn.Sequential(
            _conv3x3(3, STAGE_CHANNELS[0]),
            nn.BatchNorm2D(STAGE_CHANNELS[0], epsilon=BN_EPSILON),
            nn.PReLU(STAGE_CHANNELS[0]),
        )
        stages = []
        in_channels = STAGE_CHANNELS[0]
        for depth, channels in zip(stage_depths, STAGE_CHANNELS, strict=True):
            blocks = [IBasicBlock(in_channels, channels, stride=2)]
            blocks += [IBasicBlock(channels, channels, 1) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            in_channels = channels
        self.stages = nn.Sequential(*stages)

        self.bn = nn.BatchNorm2D(in_channels, epsilon=BN_EPSILON)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_channels * FEATURE_MAP_SIZE**2, embedding_size)
        self.features = nn.BatchNorm1D(embedding_size, epsilon=BN_EPSILON)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.stem(x)
        x = self.stages(x)
        x = self.bn(x)
        x = self.dropout(x)
        x = self.flatten(x)
        x = self.fc(x)
        return self.features(x)


def _make_factory(depth: int) -> None:
    def build(embedding_size: int = 512, dropout: float = 0.0) -> IResNet:
        return IResNet(STAGE_DEPTHS[depth], embedding_size, dropout)

    build.__name__ = f"iresnet{depth}"
    build.__doc__ = f"Build IResNet-{depth}, stages {STAGE_DEPTHS[depth]}."
    register(f"iresnet{depth}")(build)


for _depth in STAGE_DEPTHS:
    _make_factory(_depth)
