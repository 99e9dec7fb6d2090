"""Pairwise IoU in pure PyTorch, with torchvision.ops.box_iou's arithmetic."""
import torch


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas (N,) of (N, 4) x0y0x1y1 boxes; negative for inverted boxes, as torchvision."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU (N, M) of boxes1 (N, 4) and boxes2 (M, 4), same floating dtype; NaN where 0 / 0."""
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    width_height = (bottom_right - top_left).clamp(min=0)
    inter = width_height[..., 0] * width_height[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return inter / union
