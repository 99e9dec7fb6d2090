"""Box heads: pooled features -> a feature vector per RoI (detectron2's ``FastRCNNConvFCHead``)."""
from typing import Dict, List, Sequence

import numpy as np
import torch
from torch import nn

from maskrcnn_multi.config.configurable import configurable
from maskrcnn_multi.modeling.registry import Registry
from maskrcnn_multi.config.errors import UserError
from maskrcnn_multi.modeling.layers import Conv2d, ShapeSpec, c2_msra_fill, c2_xavier_fill, get_norm

__all__ = ["FastRCNNConvFCHead", "BOX_HEADS", "ROI_BOX_HEAD_REGISTRY", "build_box_head"]


class FastRCNNConvFCHead(nn.Sequential):
    """``conv1..convK`` (3x3 + norm + ReLU), then ``flatten``, ``fc1..fcM`` each followed by ReLU.

    Args:
        input_shape: the pooled features' ShapeSpec (channels, height, width).
        conv_dims: output channels of each conv.
        fc_dims: output size of each fully connected layer.
        conv_norm: norm name for the convs ("" for none, then the convs have a bias).
    """

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, conv_dims: Sequence[int], fc_dims: Sequence[int], conv_norm: str = ""):
        super().__init__()
        if len(conv_dims) + len(fc_dims) == 0:
            raise UserError("FastRCNNConvFCHead needs at least one conv or fc (ROI_BOX_HEAD.NUM_CONV + NUM_FC = 0)")
        self._output_size = (input_shape.channels, input_shape.height, input_shape.width)
        self.conv_norm_relus: List[nn.Module] = []
        for index, conv_dim in enumerate(conv_dims):
            conv = Conv2d(self._output_size[0], conv_dim, kernel_size=3, padding=1, bias=not conv_norm,
                          norm=get_norm(conv_norm, conv_dim), activation=nn.ReLU())
            self.add_module(f"conv{index + 1}", conv)
            self.conv_norm_relus.append(conv)
            self._output_size = (conv_dim, self._output_size[1], self._output_size[2])

        self.fcs: List[nn.Module] = []
        for index, fc_dim in enumerate(fc_dims):
            if index == 0:
                self.add_module("flatten", nn.Flatten())
            fc = nn.Linear(int(np.prod(self._output_size)), fc_dim)
            self.add_module(f"fc{index + 1}", fc)
            self.add_module(f"fc_relu{index + 1}", nn.ReLU())
            self.fcs.append(fc)
            self._output_size = fc_dim

        for layer in self.conv_norm_relus:
            c2_msra_fill(layer)
        for layer in self.fcs:
            c2_xavier_fill(layer)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> Dict:
        head = cfg.MODEL.ROI_BOX_HEAD
        return {
            "input_shape": input_shape,
            "conv_dims": [head.CONV_DIM] * head.NUM_CONV,
            "fc_dims": [head.FC_DIM] * head.NUM_FC,
            "conv_norm": head.NORM,
        }

    def forward(self, pooled_features: torch.Tensor) -> torch.Tensor:
        """Tensor[R, C, H, W] -> Tensor[R, fc_dim] (or Tensor[R, C', H, W] with no fc)."""
        for layer in self:
            pooled_features = layer(pooled_features)
        return pooled_features

    @property
    def output_shape(self) -> ShapeSpec:
        if isinstance(self._output_size, int):
            return ShapeSpec(channels=self._output_size)
        return ShapeSpec(channels=self._output_size[0], height=self._output_size[1], width=self._output_size[2])


BOX_HEADS = Registry("MODEL.ROI_BOX_HEAD.NAME", FastRCNNConvFCHead)
ROI_BOX_HEAD_REGISTRY = BOX_HEADS  # detectron2's name for the table


def build_box_head(cfg, input_shape: ShapeSpec) -> nn.Module:
    """The box head named by MODEL.ROI_BOX_HEAD.NAME."""
    return BOX_HEADS.get(cfg.MODEL.ROI_BOX_HEAD.NAME)(cfg, input_shape)
