"""detectron2's Cityscapes, LVIS and ResNeXt YAMLs (copied verbatim into configs/) load and build."""
from pathlib import Path

import pytest

from maskrcnn_multi.config import get_cfg

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("path,classes,dataset,detections,sampler", [
    ("Cityscapes/mask_rcnn_R_50_FPN.yaml", 8, "cityscapes_fine_instance_seg_train", 100, "TrainingSampler"),
    ("LVISv0.5-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml", 1230, "lvis_v0.5_train", 300, "RepeatFactorTrainingSampler"),
    ("LVISv0.5-InstanceSegmentation/mask_rcnn_X_101_32x8d_FPN_1x.yaml", 1230, "lvis_v0.5_train", 300, "RepeatFactorTrainingSampler"),
    ("LVISv1-InstanceSegmentation/mask_rcnn_R_101_FPN_1x.yaml", 1203, "lvis_v1_train", 300, "RepeatFactorTrainingSampler"),
    ("LVISv1-InstanceSegmentation/mask_rcnn_X_101_32x8d_FPN_1x.yaml", 1203, "lvis_v1_train", 300, "RepeatFactorTrainingSampler"),
])
def test_dataset_configs_keep_detectron2s_values(path, classes, dataset, detections, sampler):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / path))
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == classes and cfg.DATASETS.TRAIN == (dataset,)
    assert cfg.TEST.DETECTIONS_PER_IMAGE == detections and cfg.DATALOADER.SAMPLER_TRAIN == sampler


@pytest.mark.slow
@pytest.mark.parametrize("path,mask_on", [("COCO-Detection/faster_rcnn_X_101_32x8d_FPN_3x.yaml", False),
                                          ("COCO-InstanceSegmentation/mask_rcnn_X_101_32x8d_FPN_3x.yaml", True)])
def test_resnext_101_32x8d_builds_with_detectron2s_parameter_shapes(path, mask_on):
    from maskrcnn_multi.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / path))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])
    shapes = {name: tuple(p.shape) for name, p in build_model(cfg).state_dict().items()}
    assert shapes["backbone.bottom_up.res2.0.conv2.weight"] == (256, 8, 3, 3)  # 32 groups of 8 channels
    assert shapes["backbone.bottom_up.res5.2.conv3.weight"] == (2048, 2048, 1, 1)
    assert any(name.startswith("backbone.bottom_up.res4.22.") for name in shapes)  # 23 blocks: R-101
    assert ("roi_heads.mask_head.predictor.weight" in shapes) == mask_on


@pytest.mark.slow
def test_cascade_x152_with_deformable_stages_builds():
    from maskrcnn_multi.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "Misc/cascade_mask_rcnn_X_152_32x8d_FPN_IN5k_gn_dconv.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])
    names = set(build_model(cfg).state_dict())
    assert "backbone.bottom_up.res3.0.conv2_offset.weight" in names  # deformable res3..res5
    assert "backbone.bottom_up.res2.0.conv2_offset.weight" not in names
    assert any(name.startswith("backbone.bottom_up.res4.35.") for name in names)  # 36 blocks: X-152
    assert {"roi_heads.box_predictor.2.bbox_pred.weight", "roi_heads.mask_head.mask_fcn8.norm.weight"} <= names
