"""The inference graph's fused layers: a convolution or linear layer whose bias, residual sum and
activation run inside the device's primitive (``ops.conv2d`` / ``ops.linear``), and the folding of a
frozen / eval-mode BatchNorm into the convolution before it. See ``modeling.inference_graph``."""
from typing import Optional, Tuple

import torch
from torch import nn

from maskrcnn_multi import ops

__all__ = ["FusedConv2d", "FusedLinear", "fold_norm"]


class FusedConv2d(nn.Module):
    """A convolution with its bias, an optional residual and ReLU applied by `ops.conv2d` (inference only).

    ``forward(x, residual=None)``: ``x`` Tensor[N, Cin, H, W] is cast to the weight's dtype if it
    differs (as autocast would); returns ``relu?(conv(x) + bias + residual?)``.
    """

    fuses_residual = True  # FPN adds its top-down features through ``residual``

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], stride, padding, dilation, groups: int,
                 activation: str = ""):
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", bias, persistent=False)
        self.stride, self.padding, self.dilation, self.groups = tuple(stride), tuple(padding), tuple(dilation), groups
        self.activation = activation

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        if x.dtype != self.weight.dtype:
            x = x.to(self.weight.dtype)
        if residual is not None and residual.dtype != self.weight.dtype:
            residual = residual.to(self.weight.dtype)
        return ops.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                          activation=self.activation, residual=residual)

    def extra_repr(self) -> str:
        out_channels, in_channels, kh, kw = self.weight.shape
        return (f"{in_channels * self.groups}, {out_channels}, kernel_size=({kh}, {kw}), stride={self.stride}, "
                f"padding={self.padding}, activation={self.activation or 'none'}, dtype={self.weight.dtype}")


class FusedLinear(nn.Module):
    """A linear layer with its bias and optional ReLU applied by `ops.linear` (inference only).

    With ``flattens=True`` it also stands for the ``nn.Flatten`` before it: a Tensor[R, C, H, W] input
    is flattened in (H, W, C) order, a free view of a channels_last tensor, against the weight's
    columns permuted to match (computed once per input shape), so the pooled features are not
    copied back to NCHW before the first fully connected layer.
    """

    fuses_residual = False

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], activation: str = "", flattens: bool = False):
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", bias, persistent=False)
        self.activation = activation
        self.flattens = flattens
        self._permuted: Optional[Tuple[Tuple[int, ...], torch.Tensor]] = None

    def _channels_last_weight(self, chw: Tuple[int, ...]) -> torch.Tensor:
        if self._permuted is None or self._permuted[0] != chw or self._permuted[1].dtype != self.weight.dtype:
            channels, height, width = chw
            permuted = self.weight.reshape(-1, channels, height, width).permute(0, 2, 3, 1).reshape(self.weight.shape[0], -1)
            self._permuted = (chw, permuted.contiguous())
        return self._permuted[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if self.flattens and x.dim() == 4:
            weight = self._channels_last_weight(tuple(x.shape[1:]))
            x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # a view when x is channels_last
        elif self.flattens:
            x = torch.flatten(x, start_dim=1)
        if x.dtype != weight.dtype:
            x = x.to(weight.dtype)
        if x.dim() != 2:
            return ops.reference.linear(x, weight, self.bias, self.activation)
        return ops.linear(x, weight, self.bias, activation=self.activation)

    def extra_repr(self) -> str:
        return (f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, "
                f"activation={self.activation or 'none'}, flattens={self.flattens}, dtype={self.weight.dtype}")


def fold_norm(weight: torch.Tensor, bias: Optional[torch.Tensor], norm: nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of ``norm(conv(x))`` as one convolution, computed in float64, returned in float32
    (or the weight's dtype if wider): the graph rounds to a half dtype once, later, if asked to.
    ``norm``: FrozenBatchNorm2d or a BatchNorm2d in eval mode (running statistics)."""
    mean, var = norm.running_mean.double(), norm.running_var.double()
    gamma = norm.weight.double() if norm.weight is not None else torch.ones_like(mean)
    beta = norm.bias.double() if norm.bias is not None else torch.zeros_like(mean)
    scale = gamma * torch.rsqrt(var + norm.eps)
    conv_bias = bias.double() if bias is not None else torch.zeros_like(mean)
    folded_weight = weight.double() * scale.reshape(-1, 1, 1, 1)
    folded_bias = (conv_bias - mean) * scale + beta
    dtype = torch.promote_types(weight.dtype, torch.float32)  # a half (O2) weight folds into float32
    return folded_weight.to(dtype), folded_bias.to(dtype)
