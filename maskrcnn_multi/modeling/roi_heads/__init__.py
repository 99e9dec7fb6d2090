"""RoI heads, chosen by MODEL.ROI_HEADS.NAME."""
from typing import Dict

from torch import nn

from maskrcnn_multi.modeling.layers import ShapeSpec
from maskrcnn_multi.modeling.registry import Registry

from .box_head import BOX_HEADS, ROI_BOX_HEAD_REGISTRY, FastRCNNConvFCHead, build_box_head
from .fast_rcnn import FastRCNNOutputLayers, fast_rcnn_inference
from .cascade_rcnn import CascadeROIHeads
from .mask_head import (MASK_HEADS, ROI_MASK_HEAD_REGISTRY, MaskRCNNConvUpsampleHead, build_mask_head,
                        mask_rcnn_inference, mask_rcnn_loss)
from .res5_roi_heads import Res5ROIHeads, build_res5_block
from .roi_heads import ROIHeads, StandardROIHeads, select_foreground_proposals

__all__ = ["ROI_HEADS", "ROI_HEADS_REGISTRY", "ROI_BOX_HEAD_REGISTRY", "ROI_MASK_HEAD_REGISTRY", "build_roi_heads",
           "ROIHeads", "StandardROIHeads", "CascadeROIHeads", "Res5ROIHeads", "build_res5_block",
           "select_foreground_proposals",
           "FastRCNNConvFCHead", "BOX_HEADS", "build_box_head", "FastRCNNOutputLayers", "fast_rcnn_inference",
           "MaskRCNNConvUpsampleHead", "MASK_HEADS", "build_mask_head", "mask_rcnn_loss", "mask_rcnn_inference"]

ROI_HEADS = Registry("MODEL.ROI_HEADS.NAME", StandardROIHeads, Res5ROIHeads, CascadeROIHeads)
ROI_HEADS_REGISTRY = ROI_HEADS  # detectron2's name for the table


def build_roi_heads(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """The RoI heads named by MODEL.ROI_HEADS.NAME, on the backbone's output shapes."""
    return ROI_HEADS.get(cfg.MODEL.ROI_HEADS.NAME)(cfg, input_shape)
