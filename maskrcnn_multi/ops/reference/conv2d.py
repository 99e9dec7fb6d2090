"""The unfused inference convolution: ``relu?(conv2d(x, w, b) + residual?)`` with torch's own ops."""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: Sequence[int],
           padding: Sequence[int], dilation: Sequence[int], groups: int, activation: str,
           residual: Optional[torch.Tensor]) -> torch.Tensor:
    output = F.conv2d(input, weight, bias, tuple(stride), tuple(padding), tuple(dilation), groups)
    in_place = not (torch.is_grad_enabled() and output.requires_grad)  # a fresh output: no copies needed
    if residual is not None:
        output = output.add_(residual) if in_place else output + residual
    if activation == "relu":
        output = F.relu_(output) if in_place else F.relu(output)
    return output
