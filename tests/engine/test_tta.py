"""TEST.AUG: detectron2's GeneralizedRCNNWithTTA (multi-scale + flip, boxes merged by NMS, masks averaged)."""
import glob

import cv2
import numpy as np
import pytest
import torch

from maskrcnn_multi.backends import get_backend
from maskrcnn_multi.checkpoint import DetectionCheckpointer
from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.data.transforms import ResizeShortestEdge
from maskrcnn_multi.engine.inference import for_inference
from maskrcnn_multi.engine.tta import DatasetMapperTTA, GeneralizedRCNNWithTTA
from maskrcnn_multi.modeling import build_model


def test_each_version_maps_the_original_image_to_itself_and_back():
    image = torch.zeros(3, 30, 40, dtype=torch.uint8)  # the loader resized a 60x80 original to 30x40
    versions = DatasetMapperTTA((20, 45), 1000, flip=True)({"image": image, "height": 60, "width": 80})
    assert [tuple(v["image"].shape[1:]) for v in versions] == [(20, 27), (20, 27), (45, 60), (45, 60)]
    original_box = np.array([[8.0, 6.0, 40.0, 30.0]])
    for version in versions:
        transform = version["transforms"]
        np.testing.assert_allclose(transform.inverse().apply_box(transform.apply_box(original_box)), original_box)
    scale = 45 / 60
    np.testing.assert_allclose(versions[2]["transforms"].apply_box(original_box), original_box * scale)
    np.testing.assert_allclose(versions[3]["transforms"].apply_box(original_box),
                               [[60 - 40 * scale, 6 * scale, 60 - 8 * scale, 30 * scale]])


@pytest.fixture(scope="module")
def d2_r18(reference_dir):
    d2_dir = reference_dir / "d2_r18_shapes"
    cfg = get_cfg()
    cfg.merge_from_file(str(d2_dir / "config.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(d2_dir / "model_final.pkl"))
    images = []
    for path in sorted(glob.glob(str(d2_dir / "images" / "*.jpg")))[:2]:
        original = cv2.imread(path)
        resize = ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST).get_transform(original)
        resized = resize.apply_image(original)
        images.append({"image": torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))),
                       "height": original.shape[0], "width": original.shape[1]})
    return cfg, for_inference(model, cfg, get_backend("cpu")), images


def test_one_scale_without_flip_gives_the_models_own_detections(d2_r18):
    cfg, model, images = d2_r18
    cfg = cfg.clone()
    cfg.merge_from_list(["TEST.AUG.MIN_SIZES", f"({cfg.INPUT.MIN_SIZE_TEST},)", "TEST.AUG.FLIP", "False"])
    tta = GeneralizedRCNNWithTTA(cfg, model)
    for plain, augmented in zip(model(images), tta(images)):
        plain, augmented = plain["instances"], augmented["instances"]
        assert len(augmented) == len(plain) > 0
        torch.testing.assert_close(augmented.scores, plain.scores)
        torch.testing.assert_close(augmented.pred_boxes.tensor, plain.pred_boxes.tensor, atol=1e-3, rtol=0)
        assert torch.equal(augmented.pred_classes, plain.pred_classes)
        agreement = (augmented.pred_masks == plain.pred_masks).float().mean()
        assert agreement > 0.999


def test_several_scales_and_flips_merge_into_one_set_of_detections(d2_r18):
    cfg, model, images = d2_r18
    cfg = cfg.clone()
    cfg.merge_from_list(["TEST.AUG.MIN_SIZES", "(256, 320, 384)", "TEST.AUG.FLIP", "True"])
    outputs = GeneralizedRCNNWithTTA(cfg, model)(images)
    for inputs, output in zip(images, outputs):
        instances = output["instances"]
        assert 0 < len(instances) <= cfg.TEST.DETECTIONS_PER_IMAGE
        assert instances.image_size == (inputs["height"], inputs["width"])
        assert tuple(instances.pred_masks.shape[1:]) == (inputs["height"], inputs["width"])
        boxes = instances.pred_boxes.tensor
        assert (boxes[:, 2] <= inputs["width"]).all() and (boxes[:, 3] <= inputs["height"]).all()
