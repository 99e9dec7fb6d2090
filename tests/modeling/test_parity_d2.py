"""Same outputs as detectron2 from detectron2's weights, on both CPU op paths (native kernels, PyTorch reference).

Ground truth: ../shared/reference/d2_r18_shapes (see its README for the matching rule used here).
"""
import glob
import json
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from maskrcnn_multi.checkpoint import DetectionCheckpointer
from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.engine import DefaultPredictor
from maskrcnn_multi.modeling import build_model

pytestmark = pytest.mark.slow

SCORE_FLOOR, BOX_IOU, SCORE_TOL, MASK_IOU = 0.1, 0.99, 0.01, 0.97


def _native_kernels_available() -> bool:
    try:
        from maskrcnn_multi.backends import native
    except ImportError:
        return False
    return all(native.has_kernel(op, "cpu") for op in ("nms", "roi_align"))


@pytest.fixture(params=["native", "reference"])
def op_path(request, monkeypatch):
    """Run the test with the compiled CPU kernels, or with every op forced onto its PyTorch reference."""
    if request.param == "native":
        if not _native_kernels_available():
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


def _patch_has_kernel(monkeypatch) -> None:
    """Make every ``has_kernel`` the ops can see answer False (module attribute and imported names)."""
    import sys

    def no_kernel(*args, **kwargs):
        return False

    for name, module in list(sys.modules.items()):
        if (name == "maskrcnn_multi.backends.native" or name.startswith("maskrcnn_multi.ops")) and \
                hasattr(module, "has_kernel"):
            monkeypatch.setattr(module, "has_kernel", no_kernel)


@pytest.fixture(scope="module")
def d2_dir(reference_dir):
    return reference_dir / "d2_r18_shapes"


def _cfg(d2_dir):
    cfg = get_cfg()
    cfg.merge_from_file(str(d2_dir / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = str(d2_dir / "model_final.pkl")
    return cfg


def _ours_as_lists(instances):
    masks = instances.pred_masks.numpy().astype(bool)
    return (instances.pred_boxes.tensor.numpy(), instances.scores.numpy(), instances.pred_classes.numpy(), masks)


def _theirs_as_lists(record):
    height, width = record["image_size"]
    masks = np.stack([mask_util.decode({"size": [height, width], "counts": rle["counts"].encode("ascii")
                                        if isinstance(rle["counts"], str) else rle["counts"]}).astype(bool)
                      for rle in record["masks_rle"]]) if record["masks_rle"] else np.zeros((0, height, width), bool)
    return (np.asarray(record["boxes"], dtype=np.float64).reshape(-1, 4), np.asarray(record["scores"]),
            np.asarray(record["classes"]), masks)


def _box_iou(box, boxes):
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def _unmatched(source, target, label):
    """Descriptions of detections in ``source`` (score >= floor) with no twin in ``target``."""
    problems = []
    boxes, scores, classes, masks = source
    t_boxes, t_scores, t_classes, t_masks = target
    for i in np.nonzero(scores >= SCORE_FLOOR)[0]:
        candidates = np.nonzero((t_classes == classes[i]) & (np.abs(t_scores - scores[i]) <= SCORE_TOL))[0]
        ious = _box_iou(boxes[i], t_boxes[candidates]) if len(candidates) else np.zeros(0)
        if len(ious) == 0 or ious.max() < BOX_IOU:
            problems.append(f"{label} #{i} class {classes[i]} score {scores[i]:.4f} box {boxes[i].round(2).tolist()}: "
                            f"no twin (best box IoU {ious.max() if len(ious) else 0:.4f})")
            continue
        twin = candidates[int(ious.argmax())]
        union = np.logical_or(masks[i], t_masks[twin]).sum()
        mask_iou = np.logical_and(masks[i], t_masks[twin]).sum() / union if union else 1.0
        if mask_iou < MASK_IOU:
            problems.append(f"{label} #{i} class {classes[i]} score {scores[i]:.4f}: mask IoU {mask_iou:.4f}")
    return problems


def _compare(ours, theirs, name):
    problems = _unmatched(theirs, ours, f"{name} detectron2") + _unmatched(ours, theirs, f"{name} ours")
    return problems


@pytest.mark.parametrize("runner", ["model", "inference-graph"])
def test_model_matches_detectron2(op_path, d2_dir, runner):
    """The model as built, and the fused inference graph every entry point runs (exact mode:
    FrozenBN folded, oneDNN convolutions with fused epilogues, channels_last)."""
    cfg = _cfg(d2_dir)
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    if runner == "inference-graph":
        from maskrcnn_multi.modeling.inference_graph import build_inference_graph

        model = build_inference_graph(model, memory_format=torch.channels_last)
    inputs = torch.load(d2_dir / "inputs.pt", weights_only=True)
    expected = json.loads((d2_dir / "outputs_model.json").read_text())
    problems, compared = [], 0
    for name, image in inputs.items():
        height, width = expected[name]["image_size"]
        with torch.no_grad():
            instances = model([{"image": image, "height": height, "width": width}])[0]["instances"]
        assert instances.image_size == (height, width)
        problems += _compare(_ours_as_lists(instances), _theirs_as_lists(expected[name]), name)
        compared += int((np.asarray(expected[name]["scores"]) >= SCORE_FLOOR).sum())
    assert compared > 0
    assert not problems, f"{op_path} path, {runner}: {len(problems)} mismatches:\n" + "\n".join(problems[:20])


def test_predictor_matches_detectron2(op_path, d2_dir):
    predictor = DefaultPredictor(_cfg(d2_dir))
    expected = json.loads((d2_dir / "outputs_predictor.json").read_text())
    paths = sorted(glob.glob(str(d2_dir / "images" / "*.jpg")))
    assert paths, f"no images in {d2_dir / 'images'}"
    problems = []
    for path in paths:
        name = os.path.basename(path)
        instances = predictor(cv2.imread(path, cv2.IMREAD_COLOR))["instances"]
        problems += _compare(_ours_as_lists(instances), _theirs_as_lists(expected[name]), name)
    assert not problems, f"{op_path} path: {len(problems)} mismatches:\n" + "\n".join(problems[:20])
