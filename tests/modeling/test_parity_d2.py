"""Same outputs as detectron2 from detectron2's weights, on both CPU op paths (native kernels, PyTorch reference).

Ground truth: ../shared/reference/d2_r18_shapes (see its README for the matching rule used here).
"""
import glob
import json
import os

import cv2
import numpy as np
import pytest
import torch
from d2_matching import RUNNERS, compare, loaded_model, op_path, ours_as_detections, theirs_as_detections  # noqa: F401 (op_path: a fixture)

from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.engine import DefaultPredictor

pytestmark = pytest.mark.slow

SCORE_FLOOR = 0.1


@pytest.fixture(scope="module")
def d2_dir(reference_dir):
    return reference_dir / "d2_r18_shapes"


def _cfg(d2_dir):
    cfg = get_cfg()
    cfg.merge_from_file(str(d2_dir / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = str(d2_dir / "model_final.pkl")
    return cfg


def _compare(ours_instances, record, name):
    return compare(ours_as_detections(ours_instances), theirs_as_detections(record), name, SCORE_FLOOR)


@pytest.mark.parametrize("runner", RUNNERS)
def test_model_matches_detectron2(op_path, d2_dir, runner):
    """The model as built, and the fused inference graph every entry point runs (exact mode:
    FrozenBN folded, oneDNN convolutions with fused epilogues, channels_last)."""
    cfg = _cfg(d2_dir)
    model = loaded_model(cfg, runner)
    inputs = torch.load(d2_dir / "inputs.pt", weights_only=True)
    expected = json.loads((d2_dir / "outputs_model.json").read_text())
    problems, compared = [], 0
    for name, image in inputs.items():
        height, width = expected[name]["image_size"]
        with torch.no_grad():
            instances = model([{"image": image, "height": height, "width": width}])[0]["instances"]
        assert instances.image_size == (height, width)
        problems += _compare(instances, expected[name], name)
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
        problems += _compare(instances, expected[name], name)
    assert not problems, f"{op_path} path: {len(problems)} mismatches:\n" + "\n".join(problems[:20])
