"""Transforms: detectron2's output sizes, pixels and coordinate mapping."""
import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn_multi.data.transforms import (
    HFlipTransform,
    NoOpTransform,
    RandomFlip,
    ResizeShortestEdge,
    ResizeTransform,
    TransformList,
    apply_transform_gens,
)


@pytest.mark.parametrize(
    "old_hw, short, max_size, expected",
    [((256, 320), 320, 640, (320, 400)), ((480, 640), 800, 1333, (800, 1067)),
     ((100, 1000), 800, 1333, (133, 1333)), ((333, 500), 600, 1000, (600, 901))],
)
def test_output_shape_follows_detectron2_rounding(old_hw, short, max_size, expected):
    assert ResizeShortestEdge.get_output_shape(*old_hw, short, max_size) == expected


def test_resize_uint8_uses_pil_bilinear():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    resized = ResizeTransform(20, 30, 33, 47).apply_image(image)
    expected = np.asarray(Image.fromarray(image).resize((47, 33), Image.BILINEAR))
    assert resized.shape == (33, 47, 3) and np.array_equal(resized, expected)


def test_resize_float_uses_interpolate():
    image = np.random.default_rng(0).random((20, 30, 3)).astype(np.float32)
    resized = ResizeTransform(20, 30, 40, 60).apply_image(image)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(image).permute(2, 0, 1)[None], (40, 60), mode="bilinear", align_corners=False
    )[0].permute(1, 2, 0).numpy()
    assert resized.shape == (40, 60, 3) and np.allclose(resized, expected)


def test_resize_matches_detectron2_inputs(reference_dir):
    inputs = torch.load(reference_dir / "d2_r18_shapes" / "inputs.pt", weights_only=True)
    for file_name, reference in list(inputs.items())[:3]:
        rgb = np.asarray(Image.open(reference_dir / "d2_r18_shapes" / "images" / file_name).convert("RGB"))
        image, _ = apply_transform_gens([ResizeShortestEdge(320, 640)], rgb[:, :, ::-1])
        ours = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
        assert torch.equal(ours, reference), file_name


def test_boxes_polygons_and_segmentation_follow_the_image():
    transforms = TransformList([ResizeTransform(10, 20, 20, 40), HFlipTransform(40)])
    box = transforms.apply_box(np.array([[2.0, 1.0, 6.0, 5.0]]))
    assert np.allclose(box, [[28.0, 2.0, 36.0, 10.0]])
    (polygon,) = transforms.apply_polygons([np.array([[2.0, 1.0], [6.0, 1.0], [6.0, 5.0]])])
    assert np.allclose(polygon, [[36.0, 2.0], [28.0, 2.0], [28.0, 10.0]])
    segmentation = np.zeros((10, 20), dtype=np.uint8)
    segmentation[1:5, 2:6] = 1
    mapped = transforms.apply_segmentation(segmentation)
    assert mapped.shape == (20, 40) and set(np.unique(mapped)) == {0, 1}
    assert mapped[2:10, 28:36].all() and mapped.sum() == 64


def test_random_flip_and_noop():
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.random.seed(0)
    assert isinstance(RandomFlip(prob=1.0).get_transform(image), HFlipTransform)
    assert isinstance(RandomFlip(prob=0.0).get_transform(image), NoOpTransform)
    flipped, transforms = apply_transform_gens([RandomFlip(prob=1.0)], image)
    assert np.array_equal(flipped, image[:, ::-1]) and len(transforms) == 1


def test_range_sampling_is_inclusive_and_seeded():
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    generator = ResizeShortestEdge((50, 52), max_size=1000, sample_style="range")
    np.random.seed(3)
    heights = {generator.get_transform(image).new_h for _ in range(60)}
    assert heights == {50, 51, 52}
    with pytest.raises(ValueError, match="sample_style"):
        ResizeShortestEdge(10, sample_style="uniform")
