"""get_cfg(): detectron2's defaults plus the Ascend ModelZoo keys, and the shipped YAMLs."""
from pathlib import Path

import pytest

from maskrcnn_multi.config import amp_settings, get_cfg

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_get_cfg_returns_a_fresh_copy():
    cfg = get_cfg()
    cfg.MODEL.RPN.NMS_THRESH = 0.1
    assert get_cfg().MODEL.RPN.NMS_THRESH == 0.7


def test_detectron2_default_values():
    cfg = get_cfg()
    assert cfg.VERSION == 2
    assert cfg.MODEL.DEVICE == "cuda"
    assert cfg.MODEL.PIXEL_MEAN == [103.530, 116.280, 123.675]
    assert cfg.MODEL.RESNETS.NORM == "FrozenBN" and cfg.MODEL.RESNETS.STRIDE_IN_1X1 is True
    assert cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN == 12000 and cfg.MODEL.RPN.POST_NMS_TOPK_TEST == 1000
    assert cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE == 512 and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 80
    assert cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS == (10.0, 10.0, 5.0, 5.0)
    assert cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE == "ROIAlignV2"
    assert cfg.INPUT.MIN_SIZE_TRAIN == (800,) and cfg.INPUT.MAX_SIZE_TEST == 1333
    assert cfg.SOLVER.BASE_LR == 0.001 and cfg.SOLVER.WARMUP_FACTOR == 1.0 / 1000
    assert cfg.SOLVER.AMP.ENABLED is False and cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE == "value"
    assert cfg.SOLVER.REFERENCE_WORLD_SIZE == 0 and cfg.SOLVER.WEIGHT_DECAY_NORM == 0.0
    assert cfg.TEST.DETECTIONS_PER_IMAGE == 100 and cfg.TEST.EXPECTED_RESULTS == []
    assert cfg.SEED == -1 and cfg.OUTPUT_DIR == "./output"


def test_ascend_modelzoo_keys():
    cfg = get_cfg()
    assert (cfg.AMP, cfg.OPT_LEVEL, cfg.LOSS_SCALE_VALUE, cfg.AMP_DTYPE) == (0, "O0", "dynamic", "")
    assert cfg.INPUT.FIX_SHAPE == () and cfg.INPUT.FIX_MAX_GT == 20 and cfg.DEBUG_MODE == 0


def test_modelzoo_command_line_loads():
    cfg = get_cfg()
    cfg.merge_from_file(CONFIGS / "COCO-InstanceSegmentation" / "mask_rcnn_R_101_FPN_3x.yaml")
    cfg.merge_from_list([
        "AMP", "1", "OPT_LEVEL", "O2", "LOSS_SCALE_VALUE", "64", "MODEL.DEVICE", "npu:3",
        "SOLVER.IMS_PER_BATCH", "8", "SOLVER.MAX_ITER", "400", "SEED", "1234",
        "MODEL.RPN.NMS_THRESH", "0.8", "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", "2",
        "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO", "2", "DATALOADER.NUM_WORKERS", "4",
        "SOLVER.BASE_LR", "0.0025",
    ])
    assert cfg.MODEL.DEVICE == "npu:3" and cfg.SOLVER.BASE_LR == 0.0025
    assert amp_settings(cfg) == ("O2", "", 64.0)


def test_amp_settings_combines_both_switches():
    cfg = get_cfg()
    assert not amp_settings(cfg).enabled
    cfg.SOLVER.AMP.ENABLED = True
    assert amp_settings(cfg) == ("O1", "", "dynamic")
    cfg.merge_from_list(["AMP", "1", "OPT_LEVEL", "O0"])
    assert not amp_settings(cfg).enabled


@pytest.mark.parametrize("name, mask_on, depth, max_iter", [
    ("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml", False, 50, 90000),
    ("COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml", False, 50, 270000),
    ("COCO-Detection/faster_rcnn_R_101_FPN_1x.yaml", False, 101, 90000),
    ("COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml", False, 101, 270000),
    ("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml", True, 50, 90000),
    ("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml", True, 50, 270000),
    ("COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_1x.yaml", True, 101, 90000),
    ("COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml", True, 101, 270000),
])
def test_model_zoo_yamls(name, mask_on, depth, max_iter):
    cfg = get_cfg()
    cfg.merge_from_file(CONFIGS / name)
    assert cfg.MODEL.MASK_ON is mask_on and cfg.MODEL.RESNETS.DEPTH == depth
    assert cfg.SOLVER.MAX_ITER == max_iter and cfg.SOLVER.BASE_LR == 0.02
    assert cfg.MODEL.WEIGHTS == f"detectron2://ImageNetPretrained/MSRA/R-{depth}.pkl"
    # from Base-RCNN-FPN.yaml
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES == [[32], [64], [128], [256], [512]]
    assert cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN == 1000 and cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION == 7
    assert cfg.INPUT.MIN_SIZE_TRAIN == (640, 672, 704, 736, 768, 800)
    assert cfg.DATASETS.TRAIN == ("coco_2017_train",)


def test_reference_detectron2_config_loads(reference_dir):
    cfg = get_cfg()
    cfg.merge_from_file(reference_dir / "d2_r18_shapes" / "config.yaml")
    assert cfg.MODEL.RESNETS.DEPTH == 18 and cfg.MODEL.FPN.OUT_CHANNELS == 64
    assert cfg.INPUT.MIN_SIZE_TRAIN == (256, 288)
    assert cfg.SOLVER.CLIP_GRADIENTS.ENABLED is True and cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE == 5.0
