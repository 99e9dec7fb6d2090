"""Feature Pyramid Network on a bottom-up backbone (detectron2's ``FPN``, names ``fpn_lateral2`` ...)."""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...config.errors import UserError
from ..layers import Conv2d, ShapeSpec, c2_xavier_fill, get_norm
from .backbone import Backbone
from .resnet import build_resnet_backbone


class LastLevelMaxPool(nn.Module):
    """Adds ``p6`` = ``max_pool2d(p5, kernel_size=1, stride=2)``: ``[N, C, H, W] -> [[N, C, ceil(H/2), ceil(W/2)]]``."""

    def __init__(self):
        super().__init__()
        self.num_levels = 1
        self.in_feature = "p5"

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return [F.max_pool2d(x, kernel_size=1, stride=2, padding=0)]


def _check_strides_log2_contiguous(strides: Sequence[int]) -> None:
    for index, stride in enumerate(strides[1:], 1):
        if stride != 2 * strides[index - 1]:
            raise ValueError(f"FPN: input strides {list(strides)} are not successive powers of 2")


class FPN(Backbone):
    """Top-down pathway with lateral connections over ``bottom_up``'s ``in_features``.

    Outputs ``p{k}`` (k = log2(stride)) with ``out_channels`` channels each, plus the ``top_block``'s
    levels. Input H, W must be multiples of ``size_divisibility`` (the largest input stride).
    """

    def __init__(
        self,
        bottom_up: Backbone,
        in_features: Sequence[str],
        out_channels: int,
        norm: str = "",
        top_block: Optional[nn.Module] = None,
        fuse_type: str = "sum",
        square_pad: int = 0,
    ):
        super().__init__()
        if fuse_type not in ("sum", "avg"):
            raise UserError(f"unknown MODEL.FPN.FUSE_TYPE '{fuse_type}' (choose from: sum, avg)")
        input_shapes = bottom_up.output_shape()
        for name in in_features:
            if name not in input_shapes:
                raise UserError(
                    f"MODEL.FPN.IN_FEATURES: '{name}' is not an output of the bottom-up backbone "
                    f"(choose from: {', '.join(input_shapes)})"
                )
        strides = [input_shapes[name].stride for name in in_features]
        in_channels_per_feature = [input_shapes[name].channels for name in in_features]
        _check_strides_log2_contiguous(strides)

        use_bias = norm == ""
        lateral_convs, output_convs = [], []
        for in_channels, stride in zip(in_channels_per_feature, strides):
            lateral_conv = Conv2d(
                in_channels, out_channels, kernel_size=1, bias=use_bias, norm=get_norm(norm, out_channels)
            )
            output_conv = Conv2d(
                out_channels,
                out_channels,
                kernel_size=3,
                stride=1,
                padding=1,
                bias=use_bias,
                norm=get_norm(norm, out_channels),
            )
            c2_xavier_fill(lateral_conv)
            c2_xavier_fill(output_conv)
            stage = int(math.log2(stride))
            self.add_module(f"fpn_lateral{stage}", lateral_conv)
            self.add_module(f"fpn_output{stage}", output_conv)
            lateral_convs.append(lateral_conv)
            output_convs.append(output_conv)
        # top-down order (coarsest first); plain lists so the registered names above stay the only keys
        self.lateral_convs = lateral_convs[::-1]
        self.output_convs = output_convs[::-1]
        self.top_block = top_block
        self.in_features = tuple(in_features)
        self.bottom_up = bottom_up

        self._out_feature_strides = {f"p{int(math.log2(s))}": s for s in strides}
        if top_block is not None:
            last_stage = int(math.log2(strides[-1]))
            for level in range(last_stage, last_stage + top_block.num_levels):
                self._out_feature_strides[f"p{level + 1}"] = 2 ** (level + 1)
        self._out_features = list(self._out_feature_strides.keys())
        self._out_feature_channels = {name: out_channels for name in self._out_features}
        self._size_divisibility = strides[-1]
        self._square_pad = square_pad
        self._fuse_type = fuse_type

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return {"square_size": self._square_pad}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``x``: ``Tensor[N, C, H, W]`` -> ``{"p2": [N, out_channels, H/4, W/4], ..., "p6": [.., H/64, W/64]}``."""
        bottom_up_features = self.bottom_up(x)
        results = []
        prev_features = self.lateral_convs[0](bottom_up_features[self.in_features[-1]])
        results.append(self.output_convs[0](prev_features))
        for index, (lateral_conv, output_conv) in enumerate(zip(self.lateral_convs, self.output_convs)):
            if index == 0:
                continue
            features = bottom_up_features[self.in_features[-index - 1]]
            top_down_features = F.interpolate(prev_features, scale_factor=2.0, mode="nearest")
            if getattr(lateral_conv, "fuses_residual", False):  # the inference graph's fused convolution
                prev_features = lateral_conv(features, residual=top_down_features)
            else:
                prev_features = lateral_conv(features) + top_down_features
            if self._fuse_type == "avg":
                prev_features /= 2
            results.insert(0, output_conv(prev_features))

        if self.top_block is not None:
            if self.top_block.in_feature in bottom_up_features:
                top_block_input = bottom_up_features[self.top_block.in_feature]
            else:
                top_block_input = results[self._out_features.index(self.top_block.in_feature)]
            results.extend(self.top_block(top_block_input))
        return dict(zip(self._out_features, results))


def fpn_args_from_config(cfg: Any) -> Dict[str, Any]:
    """``FPN`` keyword arguments (besides ``bottom_up`` and ``top_block``) from ``cfg.MODEL.FPN``."""
    return {
        "in_features": list(cfg.MODEL.FPN.IN_FEATURES),
        "out_channels": cfg.MODEL.FPN.OUT_CHANNELS,
        "norm": cfg.MODEL.FPN.NORM,
        "fuse_type": cfg.MODEL.FPN.FUSE_TYPE,
    }


def build_resnet_fpn_backbone(cfg: Any, input_shape: ShapeSpec) -> FPN:
    """``MODEL.BACKBONE.NAME: build_resnet_fpn_backbone``: ResNet + FPN + ``p6`` by max pooling."""
    bottom_up = build_resnet_backbone(cfg, input_shape)
    return FPN(bottom_up=bottom_up, top_block=LastLevelMaxPool(), **fpn_args_from_config(cfg))
