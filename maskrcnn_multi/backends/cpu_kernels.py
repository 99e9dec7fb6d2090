"""The CPU's fused inference convolution and linear layer: oneDNN's primitives with their post-ops.

`onednn_conv2d` serves `ops.conv2d` on the CPU (through `CpuBackend.fused_conv2d`): one oneDNN
primitive computes the convolution, adds the bias and, when asked, a residual tensor, then the ReLU,
in one pass over the output. It runs in the input's dtype (float32 exactly, or bfloat16 with float32
accumulation) and keeps its memory format. It has no autograd: inference only. It returns None for
what it does not serve here (another dtype, mixed dtypes, no oneDNN in this torch, a residual in
bfloat16), and the caller then runs the unfused reference.
"""
from typing import Optional, Sequence

import torch

__all__ = ["onednn_conv2d", "onednn_linear"]

_DTYPES = (torch.float32, torch.bfloat16)


def _available() -> bool:
    return torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled


def onednn_conv2d(
    input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: Sequence[int],
    padding: Sequence[int], dilation: Sequence[int], groups: int, activation: str,
    residual: Optional[torch.Tensor],
) -> Optional[torch.Tensor]:
    """relu?(conv2d(input, weight, bias) + residual?) by oneDNN, or None where it cannot serve."""
    if not _available() or input.dtype not in _DTYPES or weight.dtype != input.dtype:
        return None
    if bias is not None and bias.dtype != input.dtype:
        return None
    unary = activation or "none"
    if residual is None:
        return torch.ops.mkldnn._convolution_pointwise(
            input, weight, bias, list(padding), list(stride), list(dilation), groups, unary, [], "")
    if input.dtype != torch.float32 or residual.dtype != input.dtype:
        # bfloat16: torch's fallback for shapes oneDNN declines has no bfloat16 add_relu, and where
        # oneDNN serves it the sum post-op measured no faster than the convolution then add_/relu_
        return None
    return torch.ops.mkldnn._convolution_pointwise.binary(
        input, residual, weight, bias, list(padding), list(stride), list(dilation), groups, "add", None,
        activation or None, [], "")


def onednn_linear(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                  activation: str) -> Optional[torch.Tensor]:
    """relu?(input @ weight.T + bias) by oneDNN (about twice MKL's float32 addmm on the box head's fc6
    here), or None where it cannot serve (another dtype, mixed dtypes, no oneDNN)."""
    if not _available() or input.dtype not in _DTYPES or weight.dtype != input.dtype or input.dim() != 2:
        return None
    if bias is not None and bias.dtype != input.dtype:
        return None
    return torch.ops.mkldnn._linear_pointwise(input, weight, bias, activation or "none", [], "")
