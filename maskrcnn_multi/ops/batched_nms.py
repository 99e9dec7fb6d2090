"""NMS within categories (torchvision.ops.batched_nms's signature and results)."""
import torch

from maskrcnn_multi.backends import backend_class

from ._checks import check_boxes, check_number, check_per_box, compute_dtype
from .nms import nms

__all__ = ["batched_nms"]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS performed independently per category: boxes of different `idxs` never suppress each other.

    Args:
        boxes: (N, 4) x0y0x1y1; scores: (N,); idxs: (N,) integer category of each box.
        iou_threshold: boxes with IoU > iou_threshold are discarded.
    Returns:
        (K,) int64 indices of the kept boxes, sorted by decreasing score.
    """
    check_boxes("batched_nms", "boxes", boxes)
    check_per_box("batched_nms", "scores", scores, boxes.shape[0], boxes.device)
    check_per_box("batched_nms", "idxs", idxs, boxes.shape[0], boxes.device)
    if idxs.dtype.is_floating_point or idxs.dtype == torch.bool or idxs.is_complex():
        raise TypeError(f"batched_nms: idxs must be an integer tensor of categories, got dtype {idxs.dtype}")
    iou_threshold = check_number("batched_nms", "iou_threshold", iou_threshold)
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    boxes = boxes.detach().to(compute_dtype(boxes.dtype))
    # the device's crossover between the two strategies (torchvision's figures, see Backend)
    if boxes.numel() > backend_class(boxes.device.type).batched_nms_per_class_above and not torch.jit.is_tracing():
        return _per_category(boxes, scores, idxs, iou_threshold)
    return _with_coordinate_offsets(boxes, scores, idxs, iou_threshold)


def _with_coordinate_offsets(boxes, scores, idxs, iou_threshold: float) -> torch.Tensor:
    """One NMS over all boxes, each category shifted by its own offset so categories cannot overlap."""
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def _per_category(boxes, scores, idxs, iou_threshold: float) -> torch.Tensor:
    """One NMS per category (faster than offsets for many boxes), merged and sorted by score."""
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for category in torch.unique(idxs):
        members = torch.where(idxs == category)[0]
        keep_mask[members[nms(boxes[members], scores[members], iou_threshold)]] = True
    kept = torch.where(keep_mask)[0]
    return kept[scores[kept].sort(descending=True, stable=True).indices]
