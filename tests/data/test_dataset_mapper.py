"""DatasetMapper: resized image, Instances fields, crowd/degenerate filtering, FIX_SHAPE, bad images."""
import copy
import os
import re

import numpy as np
import pytest
import torch

from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.data import BadImageError, DatasetError, DatasetMapper, ResizeShortestEdge, load_coco_json
from maskrcnn_multi.structures import BitMasks, BoxMode, PolygonMasks


def _first_dict(shapes_root):
    return load_coco_json(os.path.join(shapes_root, "annotations", "instances_train.json"),
                          os.path.join(shapes_root, "train"))[0]


def _cfg(**overrides):
    cfg = get_cfg()
    cfg.MODEL.MASK_ON = True
    cfg.INPUT.MIN_SIZE_TRAIN = (128,)
    cfg.INPUT.MAX_SIZE_TRAIN = 1000
    cfg.INPUT.MIN_SIZE_TEST = 128
    cfg.INPUT.RANDOM_FLIP = "none"
    for key, value in overrides.items():
        section, name = key.split("__")
        setattr(getattr(cfg, section), name, value)
    return cfg


def test_training_output_has_resized_image_and_instances(shapes_root):
    dataset_dict = _first_dict(shapes_root)
    original = copy.deepcopy(dataset_dict)
    mapped = DatasetMapper.from_config(_cfg(), is_train=True)(dataset_dict)
    assert dataset_dict == original  # the caller's dict is untouched
    height, width = dataset_dict["height"], dataset_dict["width"]
    new_h, new_w = ResizeShortestEdge.get_output_shape(height, width, 128, 1000)
    assert mapped["image"].shape == (3, new_h, new_w) and mapped["image"].dtype == torch.uint8
    instances = mapped["instances"]
    assert instances.image_size == (new_h, new_w)
    assert len(instances) == len(dataset_dict["annotations"])
    assert instances.gt_classes.dtype == torch.int64
    assert isinstance(instances.gt_masks, PolygonMasks)
    scale = new_w / width
    x, y, w, h = dataset_dict["annotations"][0]["bbox"]
    expected = torch.tensor([x * scale, y * new_h / height, (x + w) * scale, (y + h) * new_h / height])
    assert torch.allclose(instances.gt_boxes.tensor[0], expected.float(), atol=1e-3)


def test_bitmask_format_and_crowd_dropped(shapes_root):
    dataset_dict = _first_dict(shapes_root)
    dataset_dict["annotations"].append(dict(dataset_dict["annotations"][0], iscrowd=1))
    mapped = DatasetMapper.from_config(_cfg(INPUT__MASK_FORMAT="bitmask"), is_train=True)(dataset_dict)
    masks = mapped["instances"].gt_masks
    assert isinstance(masks, BitMasks) and masks.tensor.dtype == torch.bool
    assert tuple(masks.tensor.shape) == (len(dataset_dict["annotations"]) - 1, *mapped["image"].shape[1:])
    assert bool(masks.tensor.flatten(1).any(dim=1).all())


def test_degenerate_boxes_after_transform_are_dropped(shapes_root):
    dataset_dict = _first_dict(shapes_root)
    width = dataset_dict["width"]
    outside = {"bbox": [width + 5.0, 2.0, 10.0, 10.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 0}
    dataset_dict["annotations"].append(outside)
    mapper = DatasetMapper.from_config(_cfg(MODEL__MASK_ON=False), is_train=True)
    assert len(mapper(dataset_dict)["instances"]) == len(dataset_dict["annotations"]) - 1


def test_inference_drops_annotations(shapes_root):
    mapped = DatasetMapper.from_config(_cfg(), is_train=False)(_first_dict(shapes_root))
    assert "instances" not in mapped and "annotations" not in mapped
    assert min(mapped["image"].shape[1:]) == 128


def test_fix_shape_pads_image_and_caps_instances(shapes_root):
    cfg = _cfg(INPUT__FIX_SHAPE=(180, 200), INPUT__FIX_MAX_GT=1)  # (H, W), H != W on purpose
    dataset_dict = _first_dict(shapes_root)
    dataset_dict["annotations"] = dataset_dict["annotations"] * 3
    mapped = DatasetMapper.from_config(cfg, is_train=True)(dataset_dict)
    assert mapped["image"].shape == (3, 180, 200)
    height, width = mapped["image_size"]
    assert mapped["instances"].image_size == (height, width) and len(mapped["instances"]) == 1
    padding = mapped["image"][:, height:, :]
    expected = torch.tensor([round(v) for v in cfg.MODEL.PIXEL_MEAN], dtype=torch.uint8)
    assert padding.numel() == 0 or bool((padding == expected.view(3, 1, 1)).all())
    with pytest.raises(ValueError, match=r"does not fit INPUT.FIX_SHAPE \(50, 50\)"):
        DatasetMapper.from_config(_cfg(INPUT__FIX_SHAPE=(50, 50)), is_train=True)(dataset_dict)


@pytest.mark.parametrize("content, message", [(None, "image not found: "), (b"not a jpeg", "cannot read image ")])
def test_bad_image_is_named(shapes_root, tmp_path, content, message):
    dataset_dict = _first_dict(shapes_root)
    dataset_dict["file_name"] = str(tmp_path / "broken.jpg")
    if content is not None:
        (tmp_path / "broken.jpg").write_bytes(content)
    with pytest.raises(BadImageError, match=message + ".*broken.jpg"):
        DatasetMapper.from_config(_cfg(), is_train=True)(dataset_dict)


def test_size_mismatch_is_named(shapes_root):
    dataset_dict = _first_dict(shapes_root)
    dataset_dict["height"] += 1
    with pytest.raises(BadImageError, match="but its annotation says"):
        DatasetMapper.from_config(_cfg(), is_train=True)(dataset_dict)


def test_rgb_format_reverses_channels(shapes_root):
    dataset_dict = _first_dict(shapes_root)
    bgr = DatasetMapper.from_config(_cfg(), is_train=False)(dataset_dict)["image"]
    rgb = DatasetMapper.from_config(_cfg(INPUT__FORMAT="RGB"), is_train=False)(dataset_dict)["image"]
    assert torch.equal(bgr, rgb.flip(0))
    assert np.issubdtype(bgr.numpy().dtype, np.uint8)


def test_the_mapper_reads_fix_shape_as_given_whatever_the_device(shapes_root):
    """The data layer never asks a backend: the engine resolves a device's default static shape into
    INPUT.FIX_SHAPE first (tests/engine/test_runtime.py)."""
    cfg = _cfg()
    cfg.MODEL.DEVICE = "npu:0"
    assert DatasetMapper.from_config(cfg, is_train=False).fix_shape is None
    cfg.INPUT.FIX_SHAPE = (256, 320)
    assert DatasetMapper.from_config(cfg, is_train=False).fix_shape == (256, 320)


@pytest.mark.parametrize("change, message", [
    (dict(bbox=[float("nan"), 1.0, 5.0, 5.0]), r"annotation #0 has bbox \[nan, 1.0, 5.0, 5.0\]: a coordinate is NaN"),
    (dict(bbox=["1", 1, 5, 5]), r"annotation #0 has bbox \['1', 1, 5, 5\]: expected numbers"),
    (dict(segmentation=[[1.0, 1.0, float("inf"), 1.0, 4.0, 4.0]]), r"annotation #0 has polygon .*: a coordinate is NaN"),
])
def test_records_of_other_loaders_with_bad_coordinates_name_the_file(shapes_root, change, message):
    """The COCO loader drops such annotations (counted); any other loader's reach the mapper, which
    names the image instead of failing in Boxes.clip (or rasterizing a NaN polygon forever)."""
    dataset_dict = _first_dict(shapes_root)
    dataset_dict["annotations"][0].update(change)
    with pytest.raises(DatasetError, match=re.escape(dataset_dict["file_name"]) + ": " + message):
        DatasetMapper.from_config(_cfg(), is_train=True)(dataset_dict)
