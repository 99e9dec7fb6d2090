"""The inference convolution with its epilogue fused: ``relu?(conv2d(x, w, b) + residual?)``.

The inference graph (`modeling.inference_graph`) runs every convolution through this op, so that a
device whose kernel library fuses the bias, a residual sum and the ReLU into the convolution does
so in one pass (the CPU backend: oneDNN's post-ops), and any other device runs torch's unfused ops.
It is not differentiable on the fused path: with gradients wanted it always takes the reference.
"""
from typing import Optional, Sequence, Union

import torch

from maskrcnn_multi.backends import backend_class

from . import reference
from ._checks import check_tensor

__all__ = ["conv2d", "ACTIVATIONS"]

ACTIVATIONS = ("", "relu")
_Pair = Union[int, Sequence[int]]


def _pair(value: _Pair, name: str):
    values = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(values) != 2:
        raise ValueError(f"conv2d: {name} must be an int or a pair, got {value!r}")
    return values


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, stride: _Pair = 1,
           padding: _Pair = 0, dilation: _Pair = 1, groups: int = 1, *, activation: str = "",
           residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``relu?(F.conv2d(input, weight, bias, ...) + residual?)``.

    Args:
        input: Tensor[N, Cin, H, W]; weight: Tensor[Cout, Cin / groups, kh, kw] of the input's dtype.
        activation: "" (none) or "relu", applied after the residual is added.
        residual: optional Tensor[N, Cout, H', W'] (the output's shape) added before the activation.
    Returns Tensor[N, Cout, H', W'] in the input's dtype; the memory format follows the device's kernel
    (channels_last in, channels_last out on the CPU).
    """
    check_tensor("conv2d", "input", input)
    check_tensor("conv2d", "weight", weight)
    if activation not in ACTIVATIONS:
        raise ValueError(f"conv2d: activation must be one of {ACTIVATIONS}, got {activation!r}")
    stride, padding, dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    wants_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (input, weight, bias, residual))
    kernel = backend_class(input.device.type).fused_conv2d
    if kernel is not None and not wants_grad and input.dim() == 4:
        output = kernel(input, weight, bias, stride, padding, dilation, groups, activation, residual)
        if output is not None:
            return output
    return reference.conv2d(input, weight, bias, stride, padding, dilation, groups, activation, residual)
