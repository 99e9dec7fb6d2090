"""configs/Synthetic: the README's first command is a real R18-FPN Mask R-CNN on the shapes set whose
schedule is consistent (its measured time and AP are in the config's comments)."""
from pathlib import Path

import pytest

from maskrcnn_multi.config import get_cfg

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "Synthetic"


def _load(name):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / name))
    return cfg


@pytest.mark.parametrize("name", ["mask_rcnn_R_18_FPN_shapes.yaml", "faster_rcnn_R_18_FPN_shapes.yaml"])
def test_a_from_scratch_r18_fpn_on_the_shapes_splits(name):
    cfg = _load(name)
    assert cfg.MODEL.MASK_ON == name.startswith("mask")
    assert (cfg.MODEL.RESNETS.DEPTH, cfg.MODEL.ROI_HEADS.NUM_CLASSES, cfg.MODEL.WEIGHTS) == (18, 3, "")
    assert cfg.MODEL.BACKBONE.NAME == "build_resnet_fpn_backbone" and cfg.MODEL.DEVICE == "cpu"
    assert cfg.DATASETS.TRAIN == ("shapes_train",) and cfg.DATASETS.TEST == ("shapes_val",)


def test_schedule_is_consistent():
    solver = _load("mask_rcnn_R_18_FPN_shapes.yaml").SOLVER
    assert 0 < solver.WARMUP_ITERS < min(solver.STEPS) and max(solver.STEPS) < solver.MAX_ITER
    # one evaluation, at the end: a periodic one would cost minutes of a short CPU run
    assert _load("mask_rcnn_R_18_FPN_shapes.yaml").TEST.EVAL_PERIOD == 0
