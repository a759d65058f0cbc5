"""The two convolutional backbones of GReFEL's trunk: the IR image backbone and the MobileFaceNet landmark network.

Layouts (IR-50 stages and units, MobileFaceNet blocks and the taps the cross-attention uses) follow the official
POSTER++ code (Talented-Q/POSTER_V2, models/ir50.py and models/mobilefacenet.py); module names keep the official ones
so that weight conversion is a plain prefix table (`emotionnet.convert`).
"""

from __future__ import annotations

import torch
from torch import nn

from .configuration_grefel import GReFELConfig


# ----------------------------------------------------------------------------------------------- IR backbone
class GReFELIRUnit(nn.Module):
    """ArcFace "improved residual" unit: BN-Conv3x3-PReLU-Conv3x3(stride)-BN plus a (pooled or projected) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if in_channels == out_channels:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.shortcut_layer, nn.MaxPool2d):
            # A 1x1 max-pool is a strided subsample; slicing skips the pooling kernel and its index tensor (4.6% of
            # the paper-size forward under torch.profiler on this machine's CPU).
            stride = self.shortcut_layer.stride
            return self.res_layer(x) + x[:, :, ::stride, ::stride]
        return self.res_layer(x) + self.shortcut_layer(x)


class GReFELIRBackbone(nn.Module):
    """The first three stages of an IR-N network: (B, 3, S, S) -> maps at S/2, S/4, S/8."""

    def __init__(self, config: GReFELConfig):
        super().__init__()
        widths = config.hidden_sizes
        self.input_layer = nn.Sequential(
            nn.Conv2d(config.num_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0])
        )
        in_channels = widths[0]
        stages = []
        for width, units in zip(widths, config.ir_stage_units):
            # Every stage opens with a stride-2 unit (also the first: 112 -> 56), as in get_blocks of ArcFace IR.
            stage = [GReFELIRUnit(in_channels, width, 2)] + [GReFELIRUnit(width, width, 1) for _ in range(units - 1)]
            stages.append(nn.Sequential(*stage))
            in_channels = width
        self.body1, self.body2, self.body3 = stages

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x1 = self.body1(self.input_layer(x))
        x2 = self.body2(x1)
        return x1, x2, self.body3(x2)


# ----------------------------------------------------------------------------------------------- MobileFaceNet
class GReFELConvBlock(nn.Module):
    def __init__(self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1,
                 activation: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_c)
        self.prelu = nn.PReLU(out_c) if activation else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.prelu(x) if self.prelu is not None else x


class GReFELDepthWise(nn.Module):
    """Inverted bottleneck of MobileFaceNet: 1x1 expand to `groups` channels, depth-wise 3x3, linear 1x1 project."""

    def __init__(self, in_c: int, out_c: int, groups: int, stride: int, residual: bool = False):
        super().__init__()
        self.conv = GReFELConvBlock(in_c, groups)
        self.conv_dw = GReFELConvBlock(groups, groups, 3, stride, 1, groups=groups)
        self.project = GReFELConvBlock(groups, out_c, activation=False)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.conv_dw(self.conv(x)))
        return x + out if self.residual else out


class GReFELResidual(nn.Module):
    def __init__(self, channels: int, num_blocks: int, groups: int):
        super().__init__()
        self.model = nn.Sequential(
            *[GReFELDepthWise(channels, channels, groups, stride=1, residual=True) for _ in range(num_blocks)]
        )
        # Read by GReFELPreTrainedModel._init_weights: each branch's projection starts at 1/sqrt(n) of the variance-
        # preserving scale, so the stage's output variance grows at most e-fold ((1 + 1/n)^n), not 2^n-fold.
        for block in self.model:
            block.project.conv.residual_branch_gain = num_blocks**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class GReFELLandmarkHead(nn.Module):
    """MobileFaceNet's GDC landmark head (68 points). Unused by GReFEL, kept so official weights load strictly."""

    def __init__(self, channels: int, side: int, num_outputs: int):
        super().__init__()
        self.conv_6_dw = GReFELConvBlock(channels, channels, side, groups=channels, activation=False)
        self.linear = nn.Linear(channels, num_outputs, bias=False)
        self.bn = nn.BatchNorm1d(num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(self.conv_6_dw(x).flatten(1)))


class GReFELMobileFaceNet(nn.Module):
    """MobileFaceNet landmark network; returns its three taps (64@28, 128@14, 512@7 at 112x112 input)."""

    def __init__(self, config: GReFELConfig):
        super().__init__()
        c3, c4, c6 = config.landmark_hidden_sizes
        b3, b4, b5 = config.landmark_num_blocks
        # Expansion widths (`groups`) follow the official network: 2x the channels, 4x before the last stage.
        self.conv1 = GReFELConvBlock(config.num_channels, c3, 3, 2, 1)
        self.conv2_dw = GReFELConvBlock(c3, c3, 3, 1, 1, groups=c3)
        self.conv_23 = GReFELDepthWise(c3, c3, groups=2 * c3, stride=2)
        self.conv_3 = GReFELResidual(c3, b3, groups=2 * c3)
        self.conv_34 = GReFELDepthWise(c3, c4, groups=2 * c4, stride=2)
        self.conv_4 = GReFELResidual(c4, b4, groups=2 * c4)
        self.conv_45 = GReFELDepthWise(c4, c4, groups=4 * c4, stride=2)
        self.conv_5 = GReFELResidual(c4, b5, groups=2 * c4)
        self.conv_6_sep = GReFELConvBlock(c4, c6)
        self.output_layer = GReFELLandmarkHead(c6, config.feature_map_sizes[2], config.num_landmark_outputs)
        for block in self.modules():
            if isinstance(block, GReFELConvBlock):  # read by GReFELPreTrainedModel._init_weights
                block.conv.variance_preserving_init = "relu" if block.prelu is not None else "linear"

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tap1 = self.conv_3(self.conv_23(self.conv2_dw(self.conv1(x))))
        tap2 = self.conv_4(self.conv_34(tap1))
        tap3 = self.conv_6_sep(self.conv_5(self.conv_45(tap2)))
        return tap1, tap2, tap3
