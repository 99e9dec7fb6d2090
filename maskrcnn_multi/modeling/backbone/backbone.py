"""The interface every backbone implements (detectron2's ``Backbone``)."""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from ..layers import ShapeSpec


class Backbone(nn.Module):
    """A network mapping ``Tensor[N, C, H, W]`` images to a dict of named feature maps.

    Subclasses fill ``_out_features`` (names, in order), ``_out_feature_channels`` and
    ``_out_feature_strides`` (dicts keyed by name) and implement ``forward``.
    """

    def __init__(self):
        super().__init__()
        self._out_features: list = []
        self._out_feature_channels: Dict[str, int] = {}
        self._out_feature_strides: Dict[str, int] = {}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``x``: ``Tensor[N, C, H, W]`` -> ``{name: Tensor[N, C_name, H / stride, W / stride]}``."""
        raise NotImplementedError

    @property
    def size_divisibility(self) -> int:
        """Input H and W must be multiples of this (0: no constraint); ImageList pads to it."""
        return 0

    @property
    def padding_constraints(self) -> Dict[str, int]:
        """Extra padding rules for ``ImageList.from_tensors`` (``square_size``, ``size_divisibility``)."""
        return {}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """``{name: ShapeSpec(channels, stride)}`` for each output feature."""
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
            for name in self._out_features
        }
