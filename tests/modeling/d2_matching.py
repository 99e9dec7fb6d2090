"""The reference README's matching rule between our detections and detectron2's, with a score floor
(0.1 for d2_r18_shapes, 0.0 for the random-init d2_zoo cases); imported by the parity tests."""
from typing import List, Optional, Tuple

import numpy as np
import pycocotools.mask as mask_util

BOX_IOU, SCORE_TOL, MASK_IOU = 0.99, 0.01, 0.97

Detections = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # boxes, scores, classes, masks (N, H, W)


def ours_as_arrays(instances) -> Detections:
    masks = instances.pred_masks.numpy().astype(bool)
    return (instances.pred_boxes.tensor.numpy().astype(np.float64), instances.scores.numpy(),
            instances.pred_classes.numpy(), masks)


def theirs_as_arrays(record: dict) -> Detections:
    height, width = record["image_size"]
    masks = [mask_util.decode({"size": [height, width], "counts": rle["counts"].encode("ascii")}).astype(bool)
             for rle in record["masks_rle"]]
    masks = np.stack(masks) if masks else np.zeros((0, height, width), bool)
    return (np.asarray(record["boxes"], dtype=np.float64).reshape(-1, 4), np.asarray(record["scores"]),
            np.asarray(record["classes"]), masks)


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def unmatched(source: Detections, target: Detections, label: str, score_floor: float,
              source_ties: Optional[np.ndarray] = None, target_ties: Optional[np.ndarray] = None) -> List[str]:
    """Detections of ``source`` scoring >= ``score_floor`` with no twin in ``target``: same class,
    |score difference| <= SCORE_TOL, box IoU >= BOX_IOU, and the twin's mask IoU >= MASK_IOU.
    ``*_ties``: optional BoolArray[N, H, W] of pixels left out of the mask IoU (see ``compare``)."""
    problems = []
    boxes, scores, classes, masks = source
    t_boxes, t_scores, t_classes, t_masks = target
    for i in np.nonzero(scores >= score_floor)[0]:
        candidates = np.nonzero((t_classes == classes[i]) & (np.abs(t_scores - scores[i]) <= SCORE_TOL))[0]
        ious = _box_iou(boxes[i], t_boxes[candidates]) if len(candidates) else np.zeros(0)
        if len(ious) == 0 or ious.max() < BOX_IOU:
            problems.append(f"{label} #{i} class {classes[i]} score {scores[i]:.4f} box {boxes[i].round(2).tolist()}: "
                            f"no twin (best box IoU {ious.max() if len(ious) else 0:.4f})")
            continue
        twin = candidates[int(ious.argmax())]
        counted = np.ones_like(masks[i])
        if source_ties is not None:
            counted &= ~source_ties[i]
        if target_ties is not None:
            counted &= ~target_ties[twin]
        union = (np.logical_or(masks[i], t_masks[twin]) & counted).sum()
        mask_iou = (np.logical_and(masks[i], t_masks[twin]) & counted).sum() / union if union else 1.0
        if mask_iou < MASK_IOU:
            problems.append(f"{label} #{i} class {classes[i]} score {scores[i]:.4f}: mask IoU {mask_iou:.4f}")
    return problems


def compare(ours: Detections, theirs: Detections, name: str, score_floor: float,
            our_ties: Optional[np.ndarray] = None) -> List[str]:
    """Both directions of :func:`unmatched`. ``our_ties``: pixels where our mask probability ties the
    0.5 threshold (within rounding), left out of the mask IoU; None compares every pixel."""
    return (unmatched(theirs, ours, f"{name} detectron2", score_floor, target_ties=our_ties)
            + unmatched(ours, theirs, f"{name} ours", score_floor, source_ties=our_ties))
