"""Greedy NMS in pure PyTorch, with torchvision's arithmetic (bit-identical keeps)."""
import torch


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices (K,) int64 of the boxes (N, 4) kept by greedy NMS, by decreasing score.

    IoUs are computed in the boxes' dtype and compared with the threshold in float64, as
    torchvision's kernel compares a float IoU with a double threshold. Zero-area pairs give NaN,
    which suppresses nothing. The greedy loop is inherently sequential: one step per kept box, each
    vectorised over the boxes after it.
    """
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    x0, y0, x1, y1 = sorted_boxes.unbind(dim=1)
    areas = (x1 - x0) * (y1 - y0)
    num_boxes = sorted_boxes.shape[0]
    suppressed = torch.zeros(num_boxes, dtype=torch.bool, device=boxes.device)
    kept_positions = []
    zero = torch.zeros((), dtype=boxes.dtype, device=boxes.device)
    for position in range(num_boxes):
        if suppressed[position]:  # a host sync per box: this twin favours clarity over speed
            continue
        kept_positions.append(position)
        later = slice(position + 1, None)
        width = torch.maximum(zero, torch.minimum(x1[position], x1[later]) - torch.maximum(x0[position], x0[later]))
        height = torch.maximum(zero, torch.minimum(y1[position], y1[later]) - torch.maximum(y0[position], y0[later]))
        inter = width * height
        iou = inter / (areas[position] + areas[later] - inter)
        suppressed[later] |= iou.to(torch.float64) > iou_threshold
    return order[torch.tensor(kept_positions, dtype=torch.int64, device=boxes.device)]
