"""detectron2's deformable convolution layers (``detectron2.layers.DeformConv`` / ``ModulatedDeformConv``):
same constructor arguments, parameter names (``weight``, ``bias``, ``norm.*``) and initialisation, on
``ops.deform_conv2d`` (so on every device, where detectron2's run on CUDA only)."""
from typing import Optional, Tuple, Union

import torch
from torch import nn

from .. import ops

__all__ = ["DeformConv", "ModulatedDeformConv"]

IntPair = Union[int, Tuple[int, int]]


def _pair(value: IntPair) -> Tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class _DeformConvBase(nn.Module):
    """The weight (out_channels, in_channels / groups, kh, kw), optional bias, norm and activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair, stride: IntPair, padding: IntPair,
                 dilation: IntPair, groups: int, deformable_groups: int, bias: bool,
                 norm: Optional[nn.Module], activation):
        super().__init__()
        name = type(self).__name__
        if in_channels % groups != 0:
            raise ValueError(f"{name}: in_channels {in_channels} is not divisible by groups {groups}")
        if out_channels % groups != 0:
            raise ValueError(f"{name}: out_channels {out_channels} is not divisible by groups {groups}")
        if in_channels % deformable_groups != 0:
            raise ValueError(f"{name}: in_channels {in_channels} is not divisible by deformable_groups "
                             f"{deformable_groups}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.deformable_groups = deformable_groups
        self.norm = norm
        self.activation = activation
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")

    def _convolve(self, x: torch.Tensor, offset: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        x = ops.deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask,
                              groups=self.groups, offset_groups=self.deformable_groups)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"deformable_groups={self.deformable_groups}, bias={self.bias is not None}")


class DeformConv(_DeformConvBase):
    """Deformable convolution v1: ``forward(x [N, C, H, W], offset [N, 2 * deformable_groups * kh * kw, oh,
    ow]) -> [N, out_channels, oh, ow]``, then ``norm`` and ``activation``. No bias (as detectron2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair, stride: IntPair = 1,
                 padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1, deformable_groups: int = 1,
                 bias: bool = False, norm: Optional[nn.Module] = None, activation=None):
        if bias:
            raise ValueError("DeformConv has no bias (detectron2's layer); use ModulatedDeformConv for one")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         deformable_groups, False, norm, activation)

    def forward(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        return self._convolve(x, offset, None)


class ModulatedDeformConv(_DeformConvBase):
    """Deformable convolution v2: ``forward(x, offset, mask [N, deformable_groups * kh * kw, oh, ow])``;
    each sample is scaled by its mask value. Bias (zero-initialised) unless ``bias=False``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair, stride: IntPair = 1,
                 padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1, deformable_groups: int = 1,
                 bias: bool = True, norm: Optional[nn.Module] = None, activation=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         deformable_groups, bias, norm, activation)

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self._convolve(x, offset, mask)
