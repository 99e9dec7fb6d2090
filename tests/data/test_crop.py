"""INPUT.CROP: detectron2's RandomCrop types, polygon clipping, and the mapper recomputing boxes."""
import numpy as np
import pytest
from PIL import Image

from maskrcnn_multi.config import UserError, get_cfg
from maskrcnn_multi.data import DatasetMapper
from maskrcnn_multi.data.crop import CropTransform, RandomCrop, clip_polygon
from maskrcnn_multi.structures import BoxMode


def _area(polygon):
    x, y = np.asarray(polygon).T
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def test_a_polygon_keeps_exactly_its_part_inside_the_window():
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], dtype=float)
    assert _area(clip_polygon(square, 5, 5, 20, 20)) == pytest.approx(25.0)
    assert len(clip_polygon(square, 20, 20, 30, 30)) == 0
    # an L (concave): 10x10 minus its top-right 5x5 quadrant, clipped to the right half x >= 5
    ell = np.array([[0, 0], [10, 0], [10, 5], [5, 5], [5, 10], [0, 10]], dtype=float)
    assert _area(clip_polygon(ell, 5, 0, 100, 100)) == pytest.approx(25.0)
    assert _area(clip_polygon(ell, 0, 0, 100, 100)) == pytest.approx(75.0)


@pytest.mark.parametrize("crop_type,size,check", [
    ("relative", (0.5, 0.25), lambda h, w: (h, w) == (50, 50)),
    ("relative_range", (0.5, 0.25), lambda h, w: 50 <= h <= 100 and 50 <= w <= 200),
    ("absolute", (30, 500), lambda h, w: (h, w) == (30, 200)),
    ("absolute_range", (20, 150), lambda h, w: 20 <= h <= 100 and 20 <= w <= 150),
])
def test_crop_sizes_follow_detectron2s_four_types(crop_type, size, check):
    np.random.seed(0)
    crop = RandomCrop(crop_type, size)
    for _ in range(20):
        transform = crop.get_transform(np.zeros((100, 200, 3), dtype=np.uint8))
        assert check(transform.h, transform.w), (transform.h, transform.w)
        assert 0 <= transform.x0 <= 200 - transform.w and 0 <= transform.y0 <= 100 - transform.h


@pytest.mark.parametrize("crop_type,size,match", [
    ("center", (0.5, 0.5), "unknown INPUT.CROP.TYPE 'center'"),
    ("relative", (0.5, 2.0), "fractions in"),
    ("absolute_range", (300, 100), r"\(min, max\)"),
])
def test_bad_crop_settings_are_one_line_errors(crop_type, size, match):
    with pytest.raises(UserError, match=match):
        RandomCrop(crop_type, size)


def test_crop_transform_moves_images_boxes_and_points():
    transform = CropTransform(x0=10, y0=5, w=20, h=15)
    image = np.arange(40 * 60).reshape(40, 60)
    assert (transform.apply_image(image) == image[5:20, 10:30]).all()
    np.testing.assert_allclose(transform.apply_box(np.array([[10, 5, 20, 10]])), [[0, 0, 10, 5]])


def test_the_mapper_crops_first_and_recomputes_boxes_from_the_cropped_masks(tmp_path):
    Image.fromarray(np.full((40, 60, 3), 90, dtype=np.uint8)).save(tmp_path / "im.png")
    band = [0.0, 10.0, 60.0, 10.0, 60.0, 20.0, 0.0, 20.0]  # full width: any 30-px window cuts it to 30
    record = {"file_name": str(tmp_path / "im.png"), "height": 40, "width": 60, "image_id": 1,
              "annotations": [{"bbox": [0, 10, 60, 10], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0,
                               "segmentation": [band], "iscrowd": 0}]}
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.MASK_ON", "True", "INPUT.MIN_SIZE_TRAIN", "(30,)", "INPUT.MAX_SIZE_TRAIN", "1000",
                         "INPUT.RANDOM_FLIP", "none", "INPUT.CROP.ENABLED", "True",
                         "INPUT.CROP.TYPE", "relative", "INPUT.CROP.SIZE", "[1.0, 0.5]"])
    mapper = DatasetMapper.from_config(cfg, is_train=True)
    assert isinstance(mapper.augmentations[0], RandomCrop) and mapper.recompute_boxes
    mapped = mapper(record)
    # the 40x30 crop is resized to short edge 30: unchanged
    assert tuple(mapped["image"].shape) == (3, 40, 30)
    assert mapped["instances"].gt_boxes.tensor.tolist() == [[0.0, 10.0, 30.0, 20.0]]
    assert DatasetMapper.from_config(cfg, is_train=False).augmentations[0].__class__.__name__ != "RandomCrop"
