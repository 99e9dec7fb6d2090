"""``build_backbone(cfg)``: the backbone named by ``cfg.MODEL.BACKBONE.NAME`` (a dict, not a registry)."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from ...config.errors import UserError
from ..layers import ShapeSpec
from .backbone import Backbone
from .fpn import build_resnet_fpn_backbone
from .resnet import build_resnet_backbone

BACKBONE_BUILDERS: Dict[str, Callable[[Any, ShapeSpec], Backbone]] = {
    "build_resnet_backbone": build_resnet_backbone,
    "build_resnet_fpn_backbone": build_resnet_fpn_backbone,
}


def build_backbone(cfg: Any, input_shape: Optional[ShapeSpec] = None) -> Backbone:
    """Build ``cfg.MODEL.BACKBONE.NAME``; ``input_shape`` defaults to ``len(cfg.MODEL.PIXEL_MEAN)`` channels."""
    if input_shape is None:
        input_shape = ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))
    name = cfg.MODEL.BACKBONE.NAME
    if name not in BACKBONE_BUILDERS:
        raise UserError(f"unknown MODEL.BACKBONE.NAME '{name}' (choose from: {', '.join(BACKBONE_BUILDERS)})")
    backbone = BACKBONE_BUILDERS[name](cfg, input_shape)
    if not isinstance(backbone, Backbone):
        raise TypeError(f"MODEL.BACKBONE.NAME '{name}' built a {type(backbone).__name__}, not a Backbone")
    return backbone
