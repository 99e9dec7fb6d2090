"""Non-maximum suppression (torchvision.ops.nms's signature and results)."""
import torch

from . import reference
from ._checks import check_boxes, check_number, check_per_box, compute_dtype, use_native

__all__ = ["nms"]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS: drop every box whose IoU with a higher-scored kept box exceeds `iou_threshold`.

    Args:
        boxes: (N, 4) x0y0x1y1, any real dtype (half precision is computed in float32).
        scores: (N,) scores.
        iou_threshold: boxes with IoU > iou_threshold are discarded.
    Returns:
        (K,) int64 indices of the kept boxes, sorted by decreasing score (ties: input order).
    """
    check_boxes("nms", "boxes", boxes)
    check_per_box("nms", "scores", scores, boxes.shape[0], boxes.device)
    iou_threshold = check_number("nms", "iou_threshold", iou_threshold)
    dtype = compute_dtype(torch.promote_types(boxes.dtype, scores.dtype))
    boxes = boxes.detach().to(dtype)
    scores = scores.detach().to(dtype)
    if use_native("nms", boxes):
        return torch.ops.maskrcnn_multi.nms(boxes, scores, iou_threshold)
    return reference.nms(boxes, scores, iou_threshold)
