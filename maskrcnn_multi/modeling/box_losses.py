"""The box regression losses, in one place: smooth L1 on deltas, and GIoU / DIoU / CIoU on boxes.

Formulas as fvcore's ``smooth_l1_loss`` and ``giou_loss`` and detectron2's ``diou_loss`` / ``ciou_loss``
(``detectron2.layers.losses``). The IoU losses take paired boxes Tensor[R, 4] in x0y0x1y1 and return
Tensor[R] (``reduction="none"``), their sum or their mean. ``BOX_REG_LOSS_TYPES`` names what
MODEL.RPN.BBOX_REG_LOSS_TYPE and MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE accept.
"""
import math
from typing import Callable, Dict, Tuple

import torch

from maskrcnn_multi.config.errors import UserError

__all__ = ["BOX_REG_LOSS_TYPES", "smooth_l1_loss", "giou_loss", "diou_loss", "ciou_loss", "box_iou_loss",
           "check_box_reg_loss_type"]

BOX_REG_LOSS_TYPES = ("smooth_l1", "giou", "diou", "ciou")


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    raise ValueError(f"unknown loss reduction '{reduction}' (choose from: none, mean, sum)")


def smooth_l1_loss(input: torch.Tensor, target: torch.Tensor, beta: float, reduction: str = "none") -> torch.Tensor:
    """fvcore's smooth L1: L1 when ``beta < 1e-5``, else ``0.5 x^2 / beta`` below beta and ``|x| - beta/2`` above."""
    diff = torch.abs(input - target)
    if beta < 1e-5:
        loss = diff
    else:
        loss = torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)
    return _reduce(loss, reduction)


def _overlap(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(IoU, union) of paired boxes; the union as fvcore's (without eps)."""
    x0, y0, x1, y1 = boxes1.unbind(dim=-1)
    x0g, y0g, x1g, y1g = boxes2.unbind(dim=-1)
    # an empty overlap along either axis gives 0 (fvcore's mask), through clamp to keep shapes static
    inter_w = (torch.min(x1, x1g) - torch.max(x0, x0g)).clamp(min=0)
    inter_h = (torch.min(y1, y1g) - torch.max(y0, y0g)).clamp(min=0)
    intersection = inter_w * inter_h
    union = (x1 - x0) * (y1 - y0) + (x1g - x0g) * (y1g - y0g) - intersection
    return intersection / (union + eps), union


def _enclosing_size(boxes1: torch.Tensor, boxes2: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Width and height of the smallest box enclosing each pair."""
    width = torch.max(boxes1[..., 2], boxes2[..., 2]) - torch.min(boxes1[..., 0], boxes2[..., 0])
    height = torch.max(boxes1[..., 3], boxes2[..., 3]) - torch.min(boxes1[..., 1], boxes2[..., 1])
    return width, height


def _center_distance_term(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float) -> torch.Tensor:
    """DIoU's penalty: squared distance of the centres over the squared diagonal of the enclosing box."""
    enclosing_w, enclosing_h = _enclosing_size(boxes1, boxes2)
    diagonal = enclosing_w ** 2 + enclosing_h ** 2 + eps
    center_dx = (boxes1[..., 0] + boxes1[..., 2] - boxes2[..., 0] - boxes2[..., 2]) / 2
    center_dy = (boxes1[..., 1] + boxes1[..., 3] - boxes2[..., 1] - boxes2[..., 3]) / 2
    return (center_dx ** 2 + center_dy ** 2) / diagonal


def giou_loss(boxes1: torch.Tensor, boxes2: torch.Tensor, reduction: str = "none", eps: float = 1e-7) -> torch.Tensor:
    """``1 - GIoU``: ``1 - IoU + (C - U) / C`` with C the enclosing box's area (0 for identical boxes,
    in (1, 2) for disjoint ones)."""
    iou, union = _overlap(boxes1, boxes2, eps)
    enclosing_w, enclosing_h = _enclosing_size(boxes1, boxes2)
    enclosing = enclosing_w * enclosing_h
    return _reduce(1 - (iou - (enclosing - union) / (enclosing + eps)), reduction)


def diou_loss(boxes1: torch.Tensor, boxes2: torch.Tensor, reduction: str = "none", eps: float = 1e-7) -> torch.Tensor:
    """``1 - IoU + d^2 / c^2``: d the distance of the centres, c the diagonal of the enclosing box."""
    iou, _ = _overlap(boxes1, boxes2, eps)
    return _reduce(1 - iou + _center_distance_term(boxes1, boxes2, eps), reduction)


def ciou_loss(boxes1: torch.Tensor, boxes2: torch.Tensor, reduction: str = "none", eps: float = 1e-7) -> torch.Tensor:
    """DIoU plus ``alpha * v``: ``v = 4/pi^2 (atan(w_g/h_g) - atan(w/h))^2`` compares the aspect ratios
    (``boxes2`` is the ground truth), ``alpha = v / (1 - IoU + v)`` is a constant (no gradient)."""
    iou, _ = _overlap(boxes1, boxes2, eps)
    width, height = boxes1[..., 2] - boxes1[..., 0], boxes1[..., 3] - boxes1[..., 1]
    gt_width, gt_height = boxes2[..., 2] - boxes2[..., 0], boxes2[..., 3] - boxes2[..., 1]
    v = (4 / math.pi ** 2) * (torch.atan(gt_width / gt_height) - torch.atan(width / height)) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    loss = 1 - iou + _center_distance_term(boxes1, boxes2, eps) + alpha * v
    return _reduce(loss, reduction)


_IOU_LOSSES: Dict[str, Callable[..., torch.Tensor]] = {"giou": giou_loss, "diou": diou_loss, "ciou": ciou_loss}


def check_box_reg_loss_type(loss_type: str, config_key: str) -> str:
    """``loss_type`` if it is one of BOX_REG_LOSS_TYPES, else a UserError naming ``config_key``."""
    if loss_type not in BOX_REG_LOSS_TYPES:
        raise UserError(f"unknown {config_key} '{loss_type}' (choose from: {', '.join(BOX_REG_LOSS_TYPES)})")
    return loss_type


def box_iou_loss(loss_type: str) -> Callable[..., torch.Tensor]:
    """The IoU-based loss function named ``loss_type`` ("giou", "diou" or "ciou")."""
    if loss_type not in _IOU_LOSSES:
        raise ValueError(f"unknown IoU box loss type '{loss_type}' (choose from: {', '.join(_IOU_LOSSES)})")
    return _IOU_LOSSES[loss_type]
