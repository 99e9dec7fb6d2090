"""DefaultPredictor: BGR uint8 in, detections in original-image coordinates out."""
import cv2
import numpy as np
import pytest
import torch

from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.engine import DefaultPredictor
from maskrcnn_multi.structures import pairwise_iou


@pytest.fixture(scope="module")
def d2_cfg(reference_dir):
    d2_dir = reference_dir / "d2_r18_shapes"
    cfg = get_cfg()
    cfg.merge_from_file(str(d2_dir / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = str(d2_dir / "model_final.pkl")
    return cfg


@pytest.fixture(scope="module")
def image(reference_dir):
    return cv2.imread(str(reference_dir / "d2_r18_shapes" / "images" / "val_00001.jpg"), cv2.IMREAD_COLOR)


def test_predicts_in_original_coordinates(d2_cfg, image):
    predictor = DefaultPredictor(d2_cfg)
    assert not predictor.model.training
    instances = predictor(image)["instances"]
    height, width = image.shape[:2]
    assert instances.image_size == (height, width)
    assert len(instances) > 0 and float(instances.scores.max()) > 0.5
    assert instances.pred_masks.shape == (len(instances), height, width)
    assert float(instances.pred_boxes.tensor[:, 2].max()) <= width


def test_resizes_and_converts_to_input_format(d2_cfg, image):
    cfg = d2_cfg.clone()
    cfg.INPUT.FORMAT = "RGB"
    predictor = DefaultPredictor(cfg)
    seen = {}

    def spy(batched_inputs):
        seen.update(batched_inputs[0])
        return [{"instances": None}]

    predictor.model = spy
    predictor(image)
    height, width = image.shape[:2]
    assert (seen["height"], seen["width"]) == (height, width)
    short, long = sorted(seen["image"].shape[1:])
    assert seen["image"].dtype == torch.float32 and seen["image"].shape[0] == 3
    assert short == cfg.INPUT.MIN_SIZE_TEST or long == cfg.INPUT.MAX_SIZE_TEST
    # channel 0 is red: compare with the red plane resized the same way (PIL bilinear, as the predictor)
    resized = predictor.aug.get_transform(image).apply_image(image)
    np.testing.assert_array_equal(seen["image"][0].numpy(), resized[:, :, 2].astype(np.float32))


def test_rejects_a_non_image(d2_cfg):
    predictor = DefaultPredictor(d2_cfg)
    with pytest.raises(ValueError, match="HxWx3"):
        predictor(np.zeros((10, 10), dtype=np.uint8))


def test_a_list_of_images_is_one_batch_with_the_single_image_outputs(d2_cfg, reference_dir):
    """One forward pass for the list; each image's detections in its own coordinates. An image whose
    padded size is the batch's gives exactly its single-image detections; a smaller one is padded
    further and its detections near its right / bottom border move (README: batched inference)."""
    predictor = DefaultPredictor(d2_cfg)
    first = cv2.imread(str(reference_dir / "d2_r18_shapes" / "images" / "val_00001.jpg"), cv2.IMREAD_COLOR)
    second = cv2.imread(str(reference_dir / "d2_r18_shapes" / "images" / "val_00002.jpg"), cv2.IMREAD_COLOR)
    images = [first, np.ascontiguousarray(second[:200, :240]), first]
    seen = []
    model = predictor.inference_model
    predictor.model = lambda inputs: seen.append(len(inputs)) or model(inputs)
    batched = predictor(images)
    assert seen == [3] and len(batched) == 3 and predictor.batch([]) == []
    singles = [predictor(image)["instances"] for image in images]
    for image, output, single in zip(images, batched, singles):
        assert output["instances"].image_size == image.shape[:2]
    for index in (0, 2):  # the batch's padded size is theirs: the same numbers
        torch.testing.assert_close(batched[index]["instances"].pred_boxes.tensor, singles[index].pred_boxes.tensor)
        torch.testing.assert_close(batched[index]["instances"].scores, singles[index].scores)
    smaller, single = batched[1]["instances"], singles[1]
    confident, single_confident = smaller[smaller.scores > 0.5], single[single.scores > 0.5]
    assert len(confident) == len(single_confident) > 0
    assert float(pairwise_iou(confident.pred_boxes, single_confident.pred_boxes).max(dim=0).values.min()) > 0.8


def test_a_bad_image_in_a_batch_is_named_by_its_index(d2_cfg, image):
    predictor = DefaultPredictor(d2_cfg)
    with pytest.raises(ValueError, match=r"HxWx3 .* \(image 1 of the batch\)"):
        predictor.batch([image, np.zeros((4, 4), dtype=np.uint8)])
