"""What "same output as detectron2" means in the parity tests, and the op-path fixture they share.

The matching rule (../shared/reference/README.md): every detectron2 detection with score >= floor has
a twin in ours of the same class with box IoU >= 0.99 and |score difference| <= 0.01, and every one of
ours with score >= floor has a twin in detectron2's; twins' masks have IoU >= 0.97. One addition:
boxes whose every coordinate differs by at most BOX_COORD_TOL pixels are the same box even when their
IoU is lower: random weights give a few sub-pixel boxes (0.01 px wide in faster_rcnn_DC5), whose IoU
measures float32 rounding (1e-4 px), not the computation. The cascade test may leave out of the mask
IoU the pixels whose probability ties the 0.5 threshold within rounding (``our_ties``). Proposals
(ProposalNetwork) are compared the same way with their objectness logits as scores and one class.
"""
import sys
from typing import List, NamedTuple, Optional

import numpy as np
import pycocotools.mask as mask_util
import pytest

BOX_IOU, SCORE_TOL, MASK_IOU = 0.99, 0.01, 0.97
BOX_COORD_TOL = 0.01


class Detections(NamedTuple):
    boxes: np.ndarray  # [N, 4] x0y0x1y1
    scores: np.ndarray  # [N]
    classes: np.ndarray  # [N]
    masks: Optional[np.ndarray]  # [N, H, W] bool, or None without a mask branch


def native_kernels_available() -> bool:
    try:
        from maskrcnn_multi.backends import native
    except ImportError:
        return False
    return all(native.has_kernel(op, "cpu") for op in ("nms", "roi_align"))


def _patch_has_kernel(monkeypatch) -> None:
    """Make every ``has_kernel`` the ops can see answer False (module attribute and imported names)."""

    def no_kernel(*args, **kwargs):
        return False

    for name, module in list(sys.modules.items()):
        if (name == "maskrcnn_multi.backends.native" or name.startswith("maskrcnn_multi.ops")) and \
                hasattr(module, "has_kernel"):
            monkeypatch.setattr(module, "has_kernel", no_kernel)


@pytest.fixture(params=["native", "reference"])
def op_path(request, monkeypatch):
    """Run the test with the compiled CPU kernels, or with every op forced onto its PyTorch reference."""
    if request.param == "native":
        if not native_kernels_available():
            pytest.skip("native CPU kernels not built (maskrcnn_multi._C missing): python setup.py build_ext --inplace")
        return "native"
    from maskrcnn_multi import ops
    force_reference = getattr(ops, "force_reference", None)
    if force_reference is not None:
        context = force_reference()
        context.__enter__()
        request.addfinalizer(lambda: context.__exit__(None, None, None))
    else:
        _patch_has_kernel(monkeypatch)
    return "reference"


RUNNERS = ("model", "inference-graph")


def loaded_model(cfg, runner: str):
    """cfg's model in eval mode with cfg.MODEL.WEIGHTS loaded: as built (``runner`` "model") or as the
    fused inference graph every entry point runs ("inference-graph": FrozenBN folded, channels_last)."""
    import torch

    from maskrcnn_multi.checkpoint import DetectionCheckpointer
    from maskrcnn_multi.modeling import build_model
    from maskrcnn_multi.modeling.inference_graph import build_inference_graph

    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    if runner == "inference-graph":
        return build_inference_graph(model, memory_format=torch.channels_last)
    assert runner == "model", runner
    return model


def ours_as_detections(instances) -> Detections:
    """Our Instances (``pred_boxes``, ``scores``, ``pred_classes`` [, ``pred_masks``])."""
    masks = instances.pred_masks.numpy().astype(bool) if instances.has("pred_masks") else None
    return Detections(instances.pred_boxes.tensor.numpy(), instances.scores.numpy(),
                      instances.pred_classes.numpy(), masks)


def ours_proposals_as_detections(proposals) -> Detections:
    """Our proposals (``proposal_boxes``, ``objectness_logits``): the logits as scores, one class."""
    logits = proposals.objectness_logits.numpy()
    return Detections(proposals.proposal_boxes.tensor.numpy(), logits, np.zeros(len(logits), np.int64), None)


def _decode_masks(record) -> Optional[np.ndarray]:
    if "masks_rle" not in record:
        return None
    height, width = record["image_size"]
    if not record["masks_rle"]:
        return np.zeros((0, height, width), bool)
    return np.stack([mask_util.decode({"size": [height, width], "counts": rle["counts"].encode("ascii")
                                       if isinstance(rle["counts"], str) else rle["counts"]}).astype(bool)
                     for rle in record["masks_rle"]])


def theirs_as_detections(record) -> Detections:
    """One image's record of outputs_model.json / outputs_predictor.json (detections or proposals)."""
    if "objectness_logits" in record:
        logits = np.asarray(record["objectness_logits"], dtype=np.float64)
        return Detections(np.asarray(record["boxes"], dtype=np.float64).reshape(-1, 4), logits,
                          np.zeros(len(logits), np.int64), None)
    return Detections(np.asarray(record["boxes"], dtype=np.float64).reshape(-1, 4), np.asarray(record["scores"]),
                      np.asarray(record["classes"]), _decode_masks(record))


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box [4] with boxes [N, 4]."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def unmatched(source: Detections, target: Detections, label: str, score_floor: float,
              source_ties: Optional[np.ndarray] = None, target_ties: Optional[np.ndarray] = None) -> List[str]:
    """Descriptions of detections in ``source`` (score >= floor) with no twin in ``target``.
    ``*_ties``: optional BoolArray[N, H, W] of pixels left out of the mask IoU (see ``compare``)."""
    problems = []
    for i in np.nonzero(source.scores >= score_floor)[0]:
        candidates = np.nonzero((target.classes == source.classes[i]) &
                                (np.abs(target.scores - source.scores[i]) <= SCORE_TOL))[0]
        ious = box_iou(source.boxes[i], target.boxes[candidates]) if len(candidates) else np.zeros(0)
        if len(ious):
            coord_diff = np.abs(target.boxes[candidates] - source.boxes[i]).max(axis=1)
            ious = np.where(coord_diff <= BOX_COORD_TOL, np.maximum(ious, 1.0), ious)
        if len(ious) == 0 or ious.max() < BOX_IOU:
            problems.append(f"{label} #{i} class {source.classes[i]} score {source.scores[i]:.4f} box "
                            f"{source.boxes[i].round(4).tolist()}: no twin (best box IoU "
                            f"{ious.max() if len(ious) else 0:.4f})")
            continue
        if source.masks is None or target.masks is None:
            continue
        twin = candidates[int(ious.argmax())]
        counted = np.ones_like(source.masks[i])
        if source_ties is not None:
            counted &= ~source_ties[i]
        if target_ties is not None:
            counted &= ~target_ties[twin]
        union = (np.logical_or(source.masks[i], target.masks[twin]) & counted).sum()
        mask_iou = (np.logical_and(source.masks[i], target.masks[twin]) & counted).sum() / union if union else 1.0
        if mask_iou < MASK_IOU:
            problems.append(f"{label} #{i} class {source.classes[i]} score {source.scores[i]:.4f}: "
                            f"mask IoU {mask_iou:.4f}")
    return problems


def compare(ours: Detections, theirs: Detections, name: str, score_floor: float,
            our_ties: Optional[np.ndarray] = None) -> List[str]:
    """Both directions of the matching rule; the list of problems (empty: the outputs match).
    ``our_ties``: pixels where our mask probability ties the 0.5 threshold (within rounding), left
    out of the mask IoU; None compares every pixel."""
    if (ours.masks is None) != (theirs.masks is None):
        return [f"{name}: masks in {'ours' if theirs.masks is None else 'detectron2'} only"]
    return (unmatched(theirs, ours, f"{name} detectron2", score_floor, target_ties=our_ties)
            + unmatched(ours, theirs, f"{name} ours", score_floor, source_ties=our_ties))
