"""detectron2's own C4, DilatedC5, RPN-only, class-agnostic and GN YAMLs (copied verbatim into configs/)
load, and build the model detectron2 builds from them: its parameter names and shapes (a detectron2
model-zoo checkpoint for these configs loads with no missing or unexpected key)."""
from pathlib import Path

import pytest
import torch
from torch import nn

from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.modeling import build_model
from maskrcnn_multi.modeling.meta_arch import GeneralizedRCNN, ProposalNetwork
from maskrcnn_multi.structures import Boxes, Instances

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

C4_DETECTION = ["COCO-Detection/faster_rcnn_R_50_C4_1x.yaml", "COCO-Detection/faster_rcnn_R_50_C4_3x.yaml",
                "COCO-Detection/faster_rcnn_R_101_C4_3x.yaml"]
C4_MASK = ["COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x.yaml", "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_3x.yaml",
           "COCO-InstanceSegmentation/mask_rcnn_R_101_C4_3x.yaml"]
DC5_DETECTION = ["COCO-Detection/faster_rcnn_R_50_DC5_1x.yaml", "COCO-Detection/faster_rcnn_R_50_DC5_3x.yaml",
                 "COCO-Detection/faster_rcnn_R_101_DC5_3x.yaml"]
DC5_MASK = ["COCO-InstanceSegmentation/mask_rcnn_R_50_DC5_1x.yaml",
            "COCO-InstanceSegmentation/mask_rcnn_R_50_DC5_3x.yaml",
            "COCO-InstanceSegmentation/mask_rcnn_R_101_DC5_3x.yaml"]
RPN_ONLY = ["COCO-Detection/rpn_R_50_C4_1x.yaml", "COCO-Detection/rpn_R_50_FPN_1x.yaml"]
GN = ["Misc/mask_rcnn_R_50_FPN_3x_gn.yaml", "Misc/scratch_mask_rcnn_R_50_FPN_3x_gn.yaml",
      "Misc/scratch_mask_rcnn_R_50_FPN_9x_gn.yaml"]
CLS_AGNOSTIC = ["Misc/mask_rcnn_R_50_FPN_1x_cls_agnostic.yaml"]
ALL = C4_DETECTION + C4_MASK + DC5_DETECTION + DC5_MASK + RPN_ONLY + GN + CLS_AGNOSTIC


def _cfg(name: str):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / name))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def _shapes(model: nn.Module):
    return {name: tuple(value.shape) for name, value in model.state_dict().items()}


@pytest.mark.parametrize("name", ALL)
def test_yaml_loads_with_its_bases(name):
    cfg = _cfg(name)
    depth = 101 if "R_101" in name else 50
    assert cfg.MODEL.RESNETS.DEPTH == depth
    assert cfg.INPUT.MIN_SIZE_TRAIN == (640, 672, 704, 736, 768, 800)
    assert cfg.MODEL.MASK_ON is (name in C4_MASK + DC5_MASK + GN + CLS_AGNOSTIC)
    schedule = next(tag for tag in ("1x", "3x", "9x") if f"_{tag}" in name)
    assert cfg.SOLVER.MAX_ITER == {"1x": 90000, "3x": 270000, "9x": 202500}[schedule]
    if name in C4_DETECTION + C4_MASK or name == RPN_ONLY[0]:
        assert cfg.MODEL.ROI_HEADS.NAME == "Res5ROIHeads" and cfg.MODEL.RESNETS.OUT_FEATURES == ["res4"]
    if name in DC5_DETECTION + DC5_MASK:
        assert cfg.MODEL.RESNETS.RES5_DILATION == 2 and cfg.MODEL.ROI_HEADS.IN_FEATURES == ["res5"]
    if name in RPN_ONLY:
        assert cfg.MODEL.META_ARCHITECTURE == "ProposalNetwork" and cfg.MODEL.RPN.POST_NMS_TOPK_TEST == 2000
    if name in GN:
        assert (cfg.MODEL.RESNETS.NORM, cfg.MODEL.FPN.NORM, cfg.MODEL.ROI_BOX_HEAD.NORM,
                cfg.MODEL.ROI_MASK_HEAD.NORM) == ("GN",) * 4
        assert cfg.MODEL.BACKBONE.FREEZE_AT == (2 if name == GN[0] else 0)


def _expected_c4(depth: int, mask_on: bool):
    last_res4 = {50: 5, 101: 22}[depth]
    expected = {
        f"backbone.res4.{last_res4}.conv3.weight": (1024, 256, 1, 1),
        "proposal_generator.rpn_head.conv.weight": (1024, 1024, 3, 3),
        "proposal_generator.rpn_head.objectness_logits.weight": (15, 1024, 1, 1),
        "roi_heads.res5.0.shortcut.weight": (2048, 1024, 1, 1),
        "roi_heads.res5.0.conv1.weight": (512, 1024, 1, 1),
        "roi_heads.res5.0.conv1.norm.running_var": (512,),
        "roi_heads.res5.2.conv3.weight": (2048, 512, 1, 1),
        "roi_heads.box_predictor.cls_score.weight": (81, 2048),
        "roi_heads.box_predictor.bbox_pred.weight": (320, 2048),
    }
    if mask_on:
        expected.update({"roi_heads.mask_head.deconv.weight": (2048, 256, 2, 2),
                         "roi_heads.mask_head.predictor.weight": (80, 256, 1, 1)})
    return expected


def _expected_dc5(mask_on: bool):
    expected = {
        "backbone.res5.2.conv3.weight": (2048, 512, 1, 1),
        "proposal_generator.rpn_head.conv.weight": (2048, 2048, 3, 3),
        "roi_heads.box_head.fc1.weight": (1024, 2048 * 7 * 7),
        "roi_heads.box_head.fc2.weight": (1024, 1024),
        "roi_heads.box_predictor.bbox_pred.weight": (320, 1024),
    }
    if mask_on:
        expected.update({"roi_heads.mask_head.mask_fcn1.weight": (256, 2048, 3, 3),
                         "roi_heads.mask_head.mask_fcn4.weight": (256, 256, 3, 3),
                         "roi_heads.mask_head.predictor.weight": (80, 256, 1, 1)})
    return expected


def _check_names(model: nn.Module, expected):
    shapes = _shapes(model)
    assert {name: shapes.get(name) for name in expected} == expected


@pytest.mark.slow
@pytest.mark.parametrize("name", C4_DETECTION + C4_MASK)
def test_c4_builds_detectron2s_model(name):
    cfg = _cfg(name)
    model = build_model(cfg)
    assert isinstance(model, GeneralizedRCNN)
    _check_names(model, _expected_c4(cfg.MODEL.RESNETS.DEPTH, cfg.MODEL.MASK_ON))
    shapes = _shapes(model)
    assert not [key for key in shapes if key.startswith("backbone.res5")], "res5 belongs to the RoI heads in C4"
    assert not [key for key in shapes if "mask_fcn" in key or "box_head" in key]
    # res5 in the head strides in its first 1x1 conv (STRIDE_IN_1X1 True), as the MSRA weights expect
    assert model.roi_heads.res5[0].conv1.stride == (2, 2) and model.roi_heads.pooler.output_size == (14, 14)


@pytest.mark.slow
@pytest.mark.parametrize("name", DC5_DETECTION + DC5_MASK)
def test_dc5_builds_detectron2s_model(name):
    cfg = _cfg(name)
    model = build_model(cfg)
    _check_names(model, _expected_dc5(cfg.MODEL.MASK_ON))
    assert model.backbone.output_shape()["res5"].stride == 16
    first = model.backbone.res5[0]
    assert first.conv2.dilation == (2, 2) and first.conv2.padding == (2, 2)
    assert first.conv1.stride == (1, 1) and first.conv2.stride == (1, 1) and first.shortcut.stride == (1, 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", RPN_ONLY)
def test_rpn_only_builds_a_proposal_network(name):
    model = build_model(_cfg(name))
    assert isinstance(model, ProposalNetwork) and not hasattr(model, "roi_heads")
    shapes = _shapes(model)
    assert not [key for key in shapes if key.startswith("roi_heads")]
    channels = 1024 if "C4" in name else 256
    anchors = 15 if "C4" in name else 3
    assert shapes["proposal_generator.rpn_head.conv.weight"] == (channels, channels, 3, 3)
    assert shapes["proposal_generator.rpn_head.objectness_logits.weight"] == (anchors, channels, 1, 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", GN)
def test_gn_builds_group_norms_with_detectron2s_names(name):
    cfg = _cfg(name)
    model = build_model(cfg)
    shapes = _shapes(model)
    norms = {name: module for name, module in model.named_modules() if name.endswith(".norm")}
    assert norms and all(isinstance(norm, nn.GroupNorm) and norm.num_groups == 32 for norm in norms.values())
    assert not [key for key in shapes if key.endswith("running_mean")]
    for prefix in ("backbone.bottom_up.stem.conv1", "backbone.bottom_up.res5.2.conv3", "backbone.fpn_lateral2",
                   "backbone.fpn_output5", "roi_heads.box_head.conv4", "roi_heads.mask_head.mask_fcn4"):
        assert f"{prefix}.norm.weight" in shapes and f"{prefix}.norm.bias" in shapes, prefix
    # a conv followed by GN has no bias, as detectron2's
    assert "backbone.fpn_lateral2.bias" not in shapes and "roi_heads.box_head.conv1.bias" not in shapes
    assert shapes["roi_heads.box_head.fc1.weight"] == (1024, 256 * 7 * 7) and "roi_heads.box_head.fc2.weight" not in shapes
    # STRIDE_IN_1X1 False: the stride is in the 3x3 conv
    assert model.backbone.bottom_up.res3[0].conv2.stride == (2, 2)
    stem_trainable = model.backbone.bottom_up.stem.conv1.weight.requires_grad
    assert stem_trainable is (cfg.MODEL.BACKBONE.FREEZE_AT == 0)


@pytest.mark.slow
def test_cls_agnostic_builds_one_box_and_one_mask_per_roi():
    shapes = _shapes(build_model(_cfg(CLS_AGNOSTIC[0])))
    assert shapes["roi_heads.box_predictor.bbox_pred.weight"] == (4, 1024)
    assert shapes["roi_heads.box_predictor.cls_score.weight"] == (81, 1024)
    assert shapes["roi_heads.mask_head.predictor.weight"] == (1, 256, 1, 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", [C4_MASK[0], DC5_MASK[0], RPN_ONLY[0], GN[0]])
def test_full_width_model_runs_on_a_small_image(name):
    """Inference on one 96x128 image with few proposals: outputs have the requested size and fields."""
    cfg = _cfg(name)
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 50
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 8
    cfg.TEST.DETECTIONS_PER_IMAGE = 5
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    # random weights with FrozenBN's identity statistics: unit PIXEL_STD makes res4 overflow to inf
    cfg.MODEL.PIXEL_STD = [57.375, 57.12, 58.395]
    model = build_model(cfg).eval()
    image = torch.randint(0, 256, (3, 96, 128), generator=torch.Generator().manual_seed(0)).float()
    with torch.no_grad():
        output = model([{"image": image, "height": 48, "width": 64}])[0]
    if name in RPN_ONLY:
        proposals = output["proposals"]
        assert proposals.image_size == (48, 64) and 0 < len(proposals) <= 8
        assert proposals.proposal_boxes.tensor[:, 2].max() <= 64
        return
    instances = output["instances"]
    assert instances.image_size == (48, 64) and len(instances) <= 5
    assert instances.pred_masks.shape == (len(instances), 48, 64)
    # the mask branch on given boxes (random weights may leave no detection above)
    given = Instances((96, 128))
    given.pred_boxes = Boxes(torch.tensor([[8.0, 8.0, 60.0, 50.0], [30.0, 20.0, 120.0, 90.0]]))
    given.pred_classes = torch.tensor([3, 70])
    with torch.no_grad():
        masks = model.inference([{"image": image, "height": 48, "width": 64}], detected_instances=[given])
    assert masks[0]["instances"].pred_masks.shape == (2, 48, 64)
