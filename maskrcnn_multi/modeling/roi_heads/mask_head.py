"""Mask heads: pooled features -> per-class mask logits (detectron2's ``MaskRCNNConvUpsampleHead``)."""
from typing import Dict, List, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from maskrcnn_multi.config.configurable import configurable
from maskrcnn_multi.modeling.registry import Registry
from maskrcnn_multi.modeling.layers import Conv2d, ShapeSpec, c2_msra_fill, get_norm
from maskrcnn_multi.structures import Instances

__all__ = ["MaskRCNNConvUpsampleHead", "mask_rcnn_loss", "mask_rcnn_inference", "MASK_HEADS", "ROI_MASK_HEAD_REGISTRY",
           "build_mask_head"]


def mask_rcnn_loss(pred_mask_logits: torch.Tensor, instances: List[Instances]) -> torch.Tensor:
    """Mean binary cross-entropy of the gt class's mask logits against the gt mask cropped to each proposal.

    Args:
        pred_mask_logits: Tensor[R, C, M, M] (C = K, or 1 when class-agnostic), R = foreground proposals.
        instances: per image, the foreground proposals with ``proposal_boxes``, ``gt_classes``, ``gt_masks``
            (PolygonMasks or BitMasks with ``crop_and_resize(boxes, M)``).
    Returns a 0-d tensor.
    """
    cls_agnostic_mask = pred_mask_logits.size(1) == 1
    total_num_masks = pred_mask_logits.size(0)
    mask_side_len = pred_mask_logits.size(2)
    if pred_mask_logits.size(2) != pred_mask_logits.size(3):
        raise ValueError(f"mask_rcnn_loss: mask logits must be square, got shape {tuple(pred_mask_logits.shape)}")

    gt_classes, gt_masks = [], []
    for instances_per_image in instances:
        if len(instances_per_image) == 0:
            continue
        if not cls_agnostic_mask:
            gt_classes.append(instances_per_image.gt_classes.to(dtype=torch.int64))
        cropped = instances_per_image.gt_masks.crop_and_resize(instances_per_image.proposal_boxes.tensor, mask_side_len)
        gt_masks.append(cropped.to(device=pred_mask_logits.device))

    if len(gt_masks) == 0:
        return pred_mask_logits.sum() * 0
    gt_masks = torch.cat(gt_masks, dim=0)
    if cls_agnostic_mask:
        pred_mask_logits = pred_mask_logits[:, 0]
    else:
        indices = torch.arange(total_num_masks, device=pred_mask_logits.device)
        pred_mask_logits = pred_mask_logits[indices, torch.cat(gt_classes, dim=0)]
    gt_masks = gt_masks.to(dtype=pred_mask_logits.dtype)
    return F.binary_cross_entropy_with_logits(pred_mask_logits, gt_masks, reduction="mean")


def mask_rcnn_inference(pred_mask_logits: torch.Tensor, pred_instances: List[Instances]) -> None:
    """Set ``pred_masks`` Tensor[Ri, 1, M, M] (sigmoid of the predicted class's logits) on each image's
    Instances, in place. ``pred_mask_logits`` is Tensor[R, C, M, M] over all images' detections."""
    if pred_mask_logits.size(1) == 1:
        mask_probs = pred_mask_logits.sigmoid()
    else:
        class_pred = torch.cat([i.pred_classes for i in pred_instances])
        indices = torch.arange(pred_mask_logits.shape[0], device=class_pred.device)
        mask_probs = pred_mask_logits[indices, class_pred][:, None].sigmoid()
    num_per_image = [len(i) for i in pred_instances]
    for probs, instances in zip(mask_probs.split(num_per_image, dim=0), pred_instances):
        instances.pred_masks = probs


class MaskRCNNConvUpsampleHead(nn.Sequential):
    """``mask_fcn1..K`` (3x3 + norm + ReLU), ``deconv`` (2x2 stride 2) + ReLU, ``predictor`` (1x1 to C masks).

    Args:
        input_shape: the pooled features' ShapeSpec.
        num_classes: masks predicted per RoI (1 when class-agnostic).
        conv_dims: channels of each mask_fcn, then of the deconv (last entry).
        conv_norm: norm name for the convs ("" for none).
        loss_weight: multiplier of ``loss_mask``.
    """

    # the mask logits: half-precision inference keeps this 1x1 conv in float32 (modeling.inference_graph)
    float32_layers = ("predictor",)

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, num_classes: int, conv_dims: Sequence[int], conv_norm: str = "",
                 loss_weight: float = 1.0):
        super().__init__()
        if len(conv_dims) < 1:
            raise ValueError("MaskRCNNConvUpsampleHead: conv_dims needs at least the deconv's channels")
        self.loss_weight = loss_weight
        self.conv_norm_relus: List[nn.Module] = []
        cur_channels = input_shape.channels
        for index, conv_dim in enumerate(conv_dims[:-1]):
            conv = Conv2d(cur_channels, conv_dim, kernel_size=3, stride=1, padding=1, bias=not conv_norm,
                          norm=get_norm(conv_norm, conv_dim), activation=nn.ReLU())
            self.add_module(f"mask_fcn{index + 1}", conv)
            self.conv_norm_relus.append(conv)
            cur_channels = conv_dim
        self.deconv = nn.ConvTranspose2d(cur_channels, conv_dims[-1], kernel_size=2, stride=2, padding=0)
        self.add_module("deconv_relu", nn.ReLU())
        self.predictor = nn.Conv2d(conv_dims[-1], num_classes, kernel_size=1, stride=1, padding=0)

        for layer in self.conv_norm_relus + [self.deconv]:
            c2_msra_fill(layer)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.constant_(self.predictor.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> Dict:
        head = cfg.MODEL.ROI_MASK_HEAD
        return {
            "input_shape": input_shape,
            "num_classes": 1 if head.CLS_AGNOSTIC_MASK else cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "conv_dims": [head.CONV_DIM] * (head.NUM_CONV + 1),
            "conv_norm": head.NORM,
        }

    def layers(self, pooled_features: torch.Tensor) -> torch.Tensor:
        """Tensor[R, C, M/2, M/2] -> mask logits Tensor[R, num_classes, M, M]."""
        for layer in self:
            pooled_features = layer(pooled_features)
        return pooled_features

    def forward(self, pooled_features: torch.Tensor, instances: List[Instances]):
        """Training: ``{"loss_mask": ...}``; inference: ``instances`` with ``pred_masks`` set."""
        mask_logits = self.layers(pooled_features)
        if self.training:
            return {"loss_mask": mask_rcnn_loss(mask_logits, instances) * self.loss_weight}
        mask_rcnn_inference(mask_logits, instances)
        return instances


MASK_HEADS = Registry("MODEL.ROI_MASK_HEAD.NAME", MaskRCNNConvUpsampleHead)
ROI_MASK_HEAD_REGISTRY = MASK_HEADS  # detectron2's name for the table


def build_mask_head(cfg, input_shape: ShapeSpec) -> nn.Module:
    """The mask head named by MODEL.ROI_MASK_HEAD.NAME."""
    return MASK_HEADS.get(cfg.MODEL.ROI_MASK_HEAD.NAME)(cfg, input_shape)
