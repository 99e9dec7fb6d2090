"""RoI heads, chosen by MODEL.ROI_HEADS.NAME."""
from typing import Dict

from torch import nn

from maskrcnn_multi.config.errors import UserError
from maskrcnn_multi.modeling.layers import ShapeSpec

from .box_head import BOX_HEADS, FastRCNNConvFCHead, build_box_head
from .fast_rcnn import FastRCNNOutputLayers, fast_rcnn_inference
from .mask_head import MASK_HEADS, MaskRCNNConvUpsampleHead, build_mask_head, mask_rcnn_inference, mask_rcnn_loss
from .roi_heads import ROIHeads, StandardROIHeads, select_foreground_proposals

__all__ = ["ROI_HEADS", "build_roi_heads", "ROIHeads", "StandardROIHeads", "select_foreground_proposals",
           "FastRCNNConvFCHead", "BOX_HEADS", "build_box_head", "FastRCNNOutputLayers", "fast_rcnn_inference",
           "MaskRCNNConvUpsampleHead", "MASK_HEADS", "build_mask_head", "mask_rcnn_loss", "mask_rcnn_inference"]

ROI_HEADS = {"StandardROIHeads": StandardROIHeads}


def build_roi_heads(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """The RoI heads named by MODEL.ROI_HEADS.NAME, on the backbone's output shapes."""
    name = cfg.MODEL.ROI_HEADS.NAME
    if name not in ROI_HEADS:
        raise UserError(f"unknown MODEL.ROI_HEADS.NAME '{name}' (choose from: {', '.join(ROI_HEADS)})")
    heads_class = ROI_HEADS[name]
    return heads_class(**heads_class.from_config(cfg, input_shape))
