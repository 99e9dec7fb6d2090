"""``build_backbone(cfg)``: the backbone named by ``cfg.MODEL.BACKBONE.NAME``."""
from __future__ import annotations

from typing import Any, Optional

from ..layers import ShapeSpec
from ..registry import Registry
from .backbone import Backbone
from .fpn import build_resnet_fpn_backbone
from .resnet import build_resnet_backbone

# name -> builder(cfg, input_shape) -> Backbone
BACKBONE_BUILDERS = Registry("MODEL.BACKBONE.NAME", build_resnet_backbone, build_resnet_fpn_backbone)
BACKBONE_REGISTRY = BACKBONE_BUILDERS  # detectron2's name for the table


def build_backbone(cfg: Any, input_shape: Optional[ShapeSpec] = None) -> Backbone:
    """Build ``cfg.MODEL.BACKBONE.NAME``; ``input_shape`` defaults to ``len(cfg.MODEL.PIXEL_MEAN)`` channels."""
    if input_shape is None:
        input_shape = ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))
    name = cfg.MODEL.BACKBONE.NAME
    backbone = BACKBONE_BUILDERS.get(name)(cfg, input_shape)
    if not isinstance(backbone, Backbone):
        raise TypeError(f"MODEL.BACKBONE.NAME '{name}' built a {type(backbone).__name__}, not a Backbone")
    return backbone
