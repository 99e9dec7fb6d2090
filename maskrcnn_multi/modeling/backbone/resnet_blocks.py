"""ResNet building blocks with detectron2's parameter names (``conv1``, ``conv1.norm``, ``shortcut`` ...)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..deform_conv import DeformConv, ModulatedDeformConv
from ..layers import Conv2d, FrozenBatchNorm2d, c2_msra_fill, get_norm


class CNNBlockBase(nn.Module):
    """A block with ``in_channels``, ``out_channels`` and the spatial ``stride`` it applies."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def freeze(self) -> "CNNBlockBase":
        """Stop gradients to every parameter and turn its BatchNorms into FrozenBatchNorm2d (in place)."""
        for parameter in self.parameters():
            parameter.requires_grad = False
        FrozenBatchNorm2d.convert_frozen_batchnorm(self)
        return self


def _shortcut(in_channels: int, out_channels: int, stride: int, norm: str):
    if in_channels == out_channels:
        return None
    return Conv2d(
        in_channels, out_channels, kernel_size=1, stride=stride, bias=False, norm=get_norm(norm, out_channels)
    )


class BasicStem(CNNBlockBase):
    """7x7 stride-2 conv + norm + relu, then 3x3 stride-2 max pool: ``[N, 3, H, W] -> [N, C, H/4, W/4]``."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm: str = "BN"):
        super().__init__(in_channels, out_channels, 4)
        self.conv1 = Conv2d(
            in_channels,
            out_channels,
            kernel_size=7,
            stride=2,
            padding=3,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        c2_msra_fill(self.conv1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = F.relu_(x)
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class BasicBlock(CNNBlockBase):
    """Two 3x3 convs with a residual (ResNet-18/34): ``[N, Cin, H, W] -> [N, Cout, H/stride, W/stride]``."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, norm: str = "BN"):
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = _shortcut(in_channels, out_channels, stride, norm)
        self.conv1 = Conv2d(
            in_channels,
            out_channels,
            kernel_size=3,
            stride=stride,
            padding=1,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        self.conv2 = Conv2d(
            out_channels,
            out_channels,
            kernel_size=3,
            stride=1,
            padding=1,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        for layer in (self.conv1, self.conv2, self.shortcut):
            if layer is not None:
                c2_msra_fill(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = self.conv2(out)
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        out += shortcut
        return F.relu_(out)


class BottleneckBlock(CNNBlockBase):
    """1x1 reduce, 3x3 (grouped, dilated), 1x1 expand, with a residual (ResNet-50/101/152).

    ``stride_in_1x1=True`` puts the stride in the first 1x1 conv (MSRA/Caffe2 weights); False puts it in
    the 3x3 conv (torchvision weights). ``[N, Cin, H, W] -> [N, Cout, H/stride, W/stride]``.
    Subclasses replace the 3x3 conv through ``_add_conv2`` and ``_run_conv2``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bottleneck_channels: int,
        stride: int = 1,
        num_groups: int = 1,
        norm: str = "BN",
        stride_in_1x1: bool = False,
        dilation: int = 1,
    ):
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = _shortcut(in_channels, out_channels, stride, norm)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(
            in_channels,
            bottleneck_channels,
            kernel_size=1,
            stride=stride_1x1,
            bias=False,
            norm=get_norm(norm, bottleneck_channels),
        )
        self._add_conv2(bottleneck_channels, stride_3x3, num_groups, dilation, norm)
        self.conv3 = Conv2d(
            bottleneck_channels,
            out_channels,
            kernel_size=1,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        for layer in (self.conv1, self.conv2, self.conv3, self.shortcut):
            if layer is not None:
                c2_msra_fill(layer)

    def _add_conv2(self, channels: int, stride: int, num_groups: int, dilation: int, norm: str) -> None:
        """The 3x3 conv, ``conv2``."""
        self.conv2 = Conv2d(
            channels,
            channels,
            kernel_size=3,
            stride=stride,
            padding=1 * dilation,
            bias=False,
            groups=num_groups,
            dilation=dilation,
            norm=get_norm(norm, channels),
        )

    def _run_conv2(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self._run_conv2(out))
        out = self.conv3(out)
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        out += shortcut
        return F.relu_(out)


class DeformBottleneckBlock(BottleneckBlock):
    """BottleneckBlock whose 3x3 conv is deformable (detectron2's, :paper:`deformable conv`).

    ``conv2_offset`` (a plain 3x3 conv with bias, zero-initialised so training starts from the regular
    grid) predicts 18 channels per deformable group, 27 when ``deform_modulated``: then the first 18
    are the offsets and the sigmoid of the last 9 the mask of ``conv2`` (a ModulatedDeformConv; a
    DeformConv otherwise). ``[N, Cin, H, W] -> [N, Cout, H/stride, W/stride]``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, deform_modulated: bool = False,
                 deform_num_groups: int = 1, **bottleneck_options):
        # read by _add_conv2 during BottleneckBlock.__init__ (plain values may be set before Module.__init__)
        self.deform_modulated = deform_modulated
        self.deform_num_groups = deform_num_groups
        super().__init__(in_channels, out_channels, **bottleneck_options)
        nn.init.constant_(self.conv2_offset.weight, 0)
        nn.init.constant_(self.conv2_offset.bias, 0)

    def _add_conv2(self, channels: int, stride: int, num_groups: int, dilation: int, norm: str) -> None:
        """``conv2_offset``, then the deformable ``conv2`` (registered and initialised in this order)."""
        deform_conv_class, offset_channels = (ModulatedDeformConv, 27) if self.deform_modulated else (DeformConv, 18)
        self.conv2_offset = Conv2d(
            channels,
            offset_channels * self.deform_num_groups,
            kernel_size=3,
            stride=stride,
            padding=1 * dilation,
            dilation=dilation,
        )
        self.conv2 = deform_conv_class(
            channels,
            channels,
            kernel_size=3,
            stride=stride,
            padding=1 * dilation,
            bias=False,
            groups=num_groups,
            dilation=dilation,
            deformable_groups=self.deform_num_groups,
            norm=get_norm(norm, channels),
        )

    def _run_conv2(self, x: torch.Tensor) -> torch.Tensor:
        offsets = self.conv2_offset(x)
        if self.deform_modulated:
            # detectron2 chunks into thirds and concatenates the first two: the first two thirds, in order
            offset_channels = offsets.shape[1] * 2 // 3
            return self.conv2(x, offsets[:, :offset_channels], offsets[:, offset_channels:].sigmoid())
        return self.conv2(x, offsets)
