"""Box <-> delta coding (detectron2's ``Box2BoxTransform``) and the dense box regression loss
(the loss functions themselves live in ``box_losses``)."""
import math
from typing import List, Sequence

import torch

from maskrcnn_multi.config.errors import UserError

from .box_losses import BOX_REG_LOSS_TYPES, box_iou_loss, giou_loss, smooth_l1_loss

__all__ = ["Box2BoxTransform", "smooth_l1_loss", "giou_loss", "dense_box_regression_loss"]

# Largest dw/dh fed to exp(): a box never grows beyond 1000/16 times its anchor in one step.
_DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class Box2BoxTransform:
    """R-CNN's box coding: ``dx = wx * (x_t - x_s) / w_s``, ``dw = ww * log(w_t / w_s)`` (same for y, h).

    Args:
        weights: (wx, wy, ww, wh) multipliers of the deltas.
        scale_clamp: upper bound of dw and dh before ``exp`` when decoding.
    """

    def __init__(self, weights: Sequence[float], scale_clamp: float = _DEFAULT_SCALE_CLAMP):
        if len(weights) != 4:
            raise UserError(f"Box2BoxTransform: weights needs 4 numbers (wx, wy, ww, wh), got {tuple(weights)}")
        self.weights = tuple(weights)
        self.scale_clamp = scale_clamp

    def get_deltas(self, src_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
        """Deltas that turn ``src_boxes`` (Tensor[R, 4] x0y0x1y1) into ``target_boxes`` (Tensor[R, 4]).

        Returns Tensor[R, 4] of (dx, dy, dw, dh).
        """
        if not isinstance(src_boxes, torch.Tensor) or not isinstance(target_boxes, torch.Tensor):
            raise TypeError(f"get_deltas expects two Tensors, got {type(src_boxes).__name__}, "
                            f"{type(target_boxes).__name__}")
        src_widths = src_boxes[:, 2] - src_boxes[:, 0]
        src_heights = src_boxes[:, 3] - src_boxes[:, 1]
        src_ctr_x = src_boxes[:, 0] + 0.5 * src_widths
        src_ctr_y = src_boxes[:, 1] + 0.5 * src_heights

        target_widths = target_boxes[:, 2] - target_boxes[:, 0]
        target_heights = target_boxes[:, 3] - target_boxes[:, 1]
        target_ctr_x = target_boxes[:, 0] + 0.5 * target_widths
        target_ctr_y = target_boxes[:, 1] + 0.5 * target_heights

        wx, wy, ww, wh = self.weights
        dx = wx * (target_ctr_x - src_ctr_x) / src_widths
        dy = wy * (target_ctr_y - src_ctr_y) / src_heights
        dw = ww * torch.log(target_widths / src_widths)
        dh = wh * torch.log(target_heights / src_heights)
        return torch.stack((dx, dy, dw, dh), dim=1)

    def apply_deltas(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Decode ``deltas`` (Tensor[R, 4k], k boxes per row: class-specific) against ``boxes`` (Tensor[R, 4]).

        Computed in float32 (or the deltas' wider float type). Returns Tensor[R, 4k].
        """
        deltas = deltas.float()
        boxes = boxes.to(deltas.dtype)

        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights

        wx, wy, ww, wh = self.weights
        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = torch.clamp(deltas[:, 2::4] / ww, max=self.scale_clamp)
        dh = torch.clamp(deltas[:, 3::4] / wh, max=self.scale_clamp)

        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = torch.exp(dw) * widths[:, None]
        pred_h = torch.exp(dh) * heights[:, None]

        x0 = pred_ctr_x - 0.5 * pred_w
        y0 = pred_ctr_y - 0.5 * pred_h
        x1 = pred_ctr_x + 0.5 * pred_w
        y1 = pred_ctr_y + 0.5 * pred_h
        return torch.stack((x0, y0, x1, y1), dim=-1).reshape(deltas.shape)


def dense_box_regression_loss(
    anchors: List[torch.Tensor],
    box2box_transform: Box2BoxTransform,
    pred_anchor_deltas: List[torch.Tensor],
    gt_boxes: List[torch.Tensor],
    fg_mask,
    box_reg_loss_type: str = "smooth_l1",
    smooth_l1_beta: float = 0.0,
) -> torch.Tensor:
    """Summed box regression loss over the foreground of dense predictions (detectron2's).

    Args:
        anchors: L tensors, level l is Tensor[R_l, 4]; concatenated to Tensor[R, 4].
        pred_anchor_deltas: L tensors, level l is Tensor[N, R_l, 4].
        gt_boxes: N tensors Tensor[R, 4], the matched ground truth of every anchor.
        fg_mask: BoolTensor[N, R] (or ``...`` for all).
        box_reg_loss_type: one of BOX_REG_LOSS_TYPES ("smooth_l1", "giou", "diou", "ciou").
    Returns a 0-d tensor (sum, not normalised).
    """
    anchors = torch.cat(anchors, dim=0) if len(anchors) > 1 else anchors[0]
    pred_deltas = torch.cat(pred_anchor_deltas, dim=1) if len(pred_anchor_deltas) > 1 else pred_anchor_deltas[0]
    if box_reg_loss_type == "smooth_l1":
        gt_anchor_deltas = torch.stack([box2box_transform.get_deltas(anchors, gt) for gt in gt_boxes])
        if isinstance(fg_mask, torch.Tensor):
            # Outside the foreground the target is the prediction itself (zero loss, zero gradient): a mask
            # instead of boolean indexing keeps shapes static and the host out of the loop.
            fg_mask = fg_mask[..., None]
            targets = torch.where(fg_mask, gt_anchor_deltas.to(pred_deltas.dtype), pred_deltas.detach())
            return smooth_l1_loss(pred_deltas, targets, smooth_l1_beta, reduction="sum")
        return smooth_l1_loss(pred_deltas[fg_mask], gt_anchor_deltas[fg_mask], smooth_l1_beta, reduction="sum")
    if box_reg_loss_type in BOX_REG_LOSS_TYPES:
        # the IoU losses compare decoded boxes with the ground truth
        pred_boxes = torch.stack([box2box_transform.apply_deltas(deltas, anchors) for deltas in pred_deltas])
        loss = box_iou_loss(box_reg_loss_type)
        return loss(pred_boxes[fg_mask], torch.stack(gt_boxes).to(pred_boxes.dtype)[fg_mask], reduction="sum")
    raise ValueError(f"unknown box regression loss type '{box_reg_loss_type}' "
                     f"(choose from: {', '.join(BOX_REG_LOSS_TYPES)})")
