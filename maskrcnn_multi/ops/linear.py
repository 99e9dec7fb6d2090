"""The inference linear layer with its epilogue fused: ``relu?(x @ weight.T + bias)``.

As `ops.conv2d`: the device's kernel library does matmul, bias and ReLU in one primitive where it
can (the CPU backend: oneDNN), any other device runs torch's ops; with gradients wanted it always
takes the (differentiable) reference.
"""
from typing import Optional

import torch

from maskrcnn_multi.backends import backend_class

from . import reference
from ._checks import check_tensor
from .conv2d import ACTIVATIONS

__all__ = ["linear"]


def linear(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, *,
           activation: str = "") -> torch.Tensor:
    """``relu?(F.linear(input, weight, bias))``: input Tensor[R, In], weight Tensor[Out, In] of the
    input's dtype; returns Tensor[R, Out] in the input's dtype."""
    check_tensor("linear", "input", input)
    check_tensor("linear", "weight", weight)
    if activation not in ACTIVATIONS:
        raise ValueError(f"linear: activation must be one of {ACTIVATIONS}, got {activation!r}")
    wants_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (input, weight, bias))
    kernel = backend_class(input.device.type).fused_linear
    if kernel is not None and not wants_grad:
        output = kernel(input, weight, bias, activation)
        if output is not None:
            return output
    return reference.linear(input, weight, bias, activation)
