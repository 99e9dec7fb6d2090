"""Pairwise IoU of two box sets (torchvision.ops.box_iou's signature and results)."""
import torch

from . import reference
from ._checks import check_boxes, check_same_device, compute_dtype, use_native

__all__ = ["box_iou"]


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair: boxes1 (N, 4) x boxes2 (M, 4), x0y0x1y1 -> (N, M).

    NaN where two zero-area boxes do not overlap (0 / 0), as torchvision. Floating inputs keep their
    dtype in the result (half precision computed in float32); integer boxes give float32.
    Differentiable through the reference path when an input requires grad.
    """
    check_boxes("box_iou", "boxes1", boxes1)
    check_boxes("box_iou", "boxes2", boxes2)
    check_same_device("box_iou", "boxes2", boxes2, boxes1.device)
    result_dtype = torch.promote_types(boxes1.dtype, boxes2.dtype)
    if not result_dtype.is_floating_point:
        result_dtype = torch.float32
    dtype = compute_dtype(result_dtype)
    boxes1, boxes2 = boxes1.to(dtype), boxes2.to(dtype)
    # The native kernel has no derivative; autograd needs the reference's plain tensor ops.
    needs_grad = torch.is_grad_enabled() and (boxes1.requires_grad or boxes2.requires_grad)
    if not needs_grad and use_native("box_iou", boxes1):
        iou = torch.ops.maskrcnn_multi.box_iou(boxes1, boxes2)
    else:
        iou = reference.box_iou(boxes1, boxes2)
    return iou.to(result_dtype)
