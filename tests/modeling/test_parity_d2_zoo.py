"""detectron2's other R-CNN architectures (C4, DC5, RPN-only, class-agnostic, GN) give detectron2's outputs
from detectron2's weights, on both CPU op paths, at the model level and through DefaultPredictor.

Ground truth: ../shared/reference/d2_zoo/<case> (random-init thin models; README: the matching rule,
here with score floor 0.0, so all 100 detections (2000 proposals) per image count). Each case's
``config.yaml`` is detectron2's full dump and is loaded unchanged.
"""
import glob
import json
import os

import cv2
import pytest
import torch
from d2_matching import (RUNNERS, compare, loaded_model, op_path, ours_as_detections, ours_proposals_as_detections,  # noqa: F401
                         theirs_as_detections)

from maskrcnn_multi.checkpoint import read_checkpoint
from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.engine import DefaultPredictor
from maskrcnn_multi.modeling import build_model

pytestmark = pytest.mark.slow

SCORE_FLOOR = 0.0
CASES = ["mask_rcnn_C4", "faster_rcnn_DC5", "mask_rcnn_DC5", "mask_rcnn_FPN_cls_agnostic", "mask_rcnn_FPN_gn",
         "rpn_C4"]


@pytest.fixture(params=CASES)
def case_dir(request, reference_dir):
    path = reference_dir / "d2_zoo" / request.param
    if not path.is_dir():
        pytest.skip(f"reference case {path} not found")
    return path


def _cfg(case_dir):
    cfg = get_cfg()
    cfg.merge_from_file(str(case_dir / "config.yaml"))
    cfg.MODEL.WEIGHTS = str(case_dir / "model_final.pkl")
    return cfg


def _as_detections(output):
    """``{"instances": ...}`` (R-CNN) or ``{"proposals": ...}`` (ProposalNetwork) -> Detections."""
    if "proposals" in output:
        return ours_proposals_as_detections(output["proposals"])
    return ours_as_detections(output["instances"])


def test_checkpoint_names_and_shapes_equal_the_model(case_dir):
    """Every detectron2 weight has a parameter of our model with its name and shape, and vice versa."""
    model = build_model(_cfg(case_dir))
    theirs = {name: tuple(value.shape) for name, value in read_checkpoint(str(case_dir / "model_final.pkl"))["model"].items()}
    ours = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    assert sorted(set(theirs) - set(ours)) == [], "checkpoint keys the model lacks"
    assert sorted(set(ours) - set(theirs)) == [], "model keys the checkpoint lacks"
    assert {name: shape for name, shape in ours.items() if theirs[name] != shape} == {}


@pytest.mark.parametrize("runner", RUNNERS)
def test_model_matches_detectron2(op_path, case_dir, runner):
    """The model as built, and the fused inference graph (FrozenBN folded, GN left as it is, channels_last)."""
    cfg = _cfg(case_dir)
    model = loaded_model(cfg, runner)
    inputs = torch.load(case_dir / "inputs.pt", weights_only=True)
    expected = json.loads((case_dir / "outputs_model.json").read_text())
    assert sorted(inputs) == sorted(expected)
    problems = []
    for name, image in inputs.items():
        height, width = expected[name]["image_size"]
        with torch.no_grad():
            output = model([{"image": image, "height": height, "width": width}])[0]
        ours = _as_detections(output)
        theirs = theirs_as_detections(expected[name])
        assert len(ours.scores) == len(theirs.scores), f"{name}: {len(ours.scores)} outputs, detectron2 {len(theirs.scores)}"
        problems += compare(ours, theirs, name, SCORE_FLOOR)
    assert not problems, f"{case_dir.name}, {op_path} path, {runner}: {len(problems)} mismatches:\n" + "\n".join(problems[:20])


def test_predictor_matches_detectron2(op_path, case_dir):
    """DefaultPredictor with the config's defaults (the fused graph every entry point runs)."""
    predictor = DefaultPredictor(_cfg(case_dir))
    expected = json.loads((case_dir / "outputs_predictor.json").read_text())
    paths = sorted(glob.glob(str(case_dir / "images" / "*.jpg")))
    assert paths, f"no images in {case_dir / 'images'}"
    problems = []
    for path in paths:
        name = os.path.basename(path)
        output = predictor(cv2.imread(path, cv2.IMREAD_COLOR))
        problems += compare(_as_detections(output), theirs_as_detections(expected[name]), name, SCORE_FLOOR)
    assert not problems, f"{case_dir.name}, {op_path} path: {len(problems)} mismatches:\n" + "\n".join(problems[:20])
