"""The unfused inference linear layer: ``relu?(F.linear(x, w, b))`` with torch's own ops."""
from typing import Optional

import torch
import torch.nn.functional as F


def linear(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], activation: str) -> torch.Tensor:
    output = F.linear(input, weight, bias)
    return F.relu(output) if activation == "relu" else output
