"""detectron2's Cascade Mask R-CNN and GIoU model-zoo YAMLs (copied verbatim) build the networks they name."""
from pathlib import Path

import pytest

from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.modeling import CascadeROIHeads, StandardROIHeads, build_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _cfg(name: str):
    cfg = get_cfg()
    cfg.merge_from_file(CONFIGS / name)
    cfg.MODEL.DEVICE = "cpu"
    return cfg


@pytest.mark.parametrize("name, max_iter", [
    ("Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml", 90000),
    ("Misc/cascade_mask_rcnn_R_50_FPN_3x.yaml", 270000),
])
def test_cascade_mask_rcnn_yamls_build_detectron2s_parameters(name, max_iter):
    cfg = _cfg(name)
    assert cfg.MODEL.ROI_HEADS.NAME == "CascadeROIHeads" and cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN == 2000
    assert cfg.SOLVER.MAX_ITER == max_iter and cfg.MODEL.WEIGHTS == "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
    model = build_model(cfg)
    assert isinstance(model.roi_heads, CascadeROIHeads)
    shapes = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    for stage in range(3):
        prefix = f"roi_heads.box_head.{stage}"
        assert shapes[f"{prefix}.fc1.weight"] == (1024, 256 * 7 * 7) and shapes[f"{prefix}.fc2.weight"] == (1024, 1024)
        assert shapes[f"roi_heads.box_predictor.{stage}.cls_score.weight"] == (81, 1024)
        assert shapes[f"roi_heads.box_predictor.{stage}.bbox_pred.weight"] == (4, 1024)
        assert model.roi_heads.box_predictor[stage].box2box_transform.weights == \
            tuple(cfg.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS[stage])
    assert "roi_heads.box_head.3.fc1.weight" not in shapes and "roi_heads.box_head.fc1.weight" not in shapes
    assert shapes["roi_heads.mask_head.predictor.weight"] == (80, 256, 1, 1)
    assert shapes["backbone.bottom_up.res5.2.conv3.weight"] == (2048, 512, 1, 1)
    assert [m.thresholds[1] for m in model.roi_heads.proposal_matchers] == [0.5, 0.6, 0.7]


def test_giou_yaml_builds_mask_rcnn_with_the_giou_box_loss():
    cfg = _cfg("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_giou.yaml")
    model = build_model(cfg)
    assert type(model.roi_heads) is StandardROIHeads
    predictor = model.roi_heads.box_predictor
    assert predictor.box_reg_loss_type == "giou" and predictor.loss_weight["loss_box_reg"] == 10.0
    assert model.proposal_generator.box_reg_loss_type == "smooth_l1"
    shapes = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    assert shapes["roi_heads.box_predictor.bbox_pred.weight"] == (320, 1024)
    assert shapes["roi_heads.box_head.fc1.weight"] == (1024, 256 * 7 * 7)
