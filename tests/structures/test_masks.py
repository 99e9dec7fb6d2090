"""PolygonMasks, BitMasks, ROIMasks."""
import numpy as np
import pytest
import torch

from maskrcnn_multi.structures import BitMasks, Boxes, PolygonMasks, ROIMasks, polygons_to_bitmask


def _polygons():
    square = [np.array([2, 2, 6, 2, 6, 6, 2, 6], dtype=np.float64)]
    corner = [[0, 0, 4, 0, 4, 4, 0, 4]]
    triangle = [np.array([0, 0, 8, 0, 0, 8], dtype=np.float64)]
    return PolygonMasks([square, corner, triangle])


def test_polygon_crop_and_resize_matches_hand_rasterization():
    boxes = torch.tensor([[2.0, 2.0, 6.0, 6.0], [0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 8.0, 8.0]])
    masks = _polygons().crop_and_resize(boxes, 4)
    assert masks.dtype == torch.bool and masks.shape == (3, 4, 4)
    assert masks[0].all()  # the box is exactly the square
    corner = torch.zeros(4, 4, dtype=torch.bool)
    corner[:2, :2] = True  # 4x4 square in an 8x8 box: the top-left quarter
    assert torch.equal(masks[1], corner)
    # triangle x + y < 8 scaled to 4: pixel (r, c) set iff its center satisfies (c + .5) + (r + .5) < 4
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    assert torch.equal(masks[2], rows + cols + 1 < 4)


def test_polygon_crop_and_resize_accepts_boxes_and_empty():
    polygons = _polygons()
    boxes = Boxes(torch.tensor([[2.0, 2.0, 6.0, 6.0]] * 3))
    assert polygons.crop_and_resize(boxes, 7).shape == (3, 7, 7)
    assert PolygonMasks([]).crop_and_resize(torch.zeros(0, 4), 5).shape == (0, 5, 5)
    with pytest.raises(ValueError, match="2 boxes for 3 masks"):
        polygons.crop_and_resize(torch.zeros(2, 4), 5)


def test_polygon_boxes_area_indexing_cat():
    polygons = _polygons()
    torch.testing.assert_close(
        polygons.get_bounding_boxes().tensor, torch.tensor([[2.0, 2.0, 6.0, 6.0], [0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 8.0, 8.0]])
    )
    torch.testing.assert_close(polygons.area(), torch.tensor([16.0, 16.0, 32.0], dtype=torch.float64))
    assert len(polygons[1]) == 1 and len(polygons[1:]) == 2 and len(polygons[[0, 2]]) == 2
    assert len(polygons[torch.tensor([True, False, True])]) == 2
    assert len(polygons[torch.tensor([2])]) == 1
    assert len(PolygonMasks.cat([polygons, polygons])) == 6
    assert polygons.polygons[1][0].dtype == np.float64
    with pytest.raises(ValueError, match="even number"):
        PolygonMasks([[[0, 0, 1, 1]]])


def test_non_finite_polygons_are_refused_before_rasterizing():
    """pycocotools rasterizes a NaN x-coordinate over a near-infinite extent (memory grows until the
    process is killed): both entry points refuse it."""
    with pytest.raises(ValueError, match="NaN or infinite"):
        PolygonMasks([[[float("nan"), 0, 4, 0, 4, 4]]])
    with pytest.raises(ValueError, match="NaN or infinite"):
        polygons_to_bitmask([np.array([0, 0, float("inf"), 0, 4, 4])], 8, 8)


def test_bitmasks_from_polygons_boxes_nonempty():
    bitmasks = BitMasks.from_polygon_masks(_polygons(), 10, 10)
    assert bitmasks.tensor.shape == (3, 10, 10) and bitmasks.tensor.dtype == torch.bool
    assert bitmasks.tensor[1].sum() == 16 and bitmasks.tensor[1, :4, :4].all()
    # x1 is the last set column + 1: the triangle's hypotenuse pixels stop at column 6
    torch.testing.assert_close(
        bitmasks.get_bounding_boxes().tensor, torch.tensor([[2.0, 2.0, 6.0, 6.0], [0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 7.0, 7.0]])
    )
    padded = BitMasks(torch.cat([bitmasks.tensor, torch.zeros(1, 10, 10, dtype=torch.bool)]))
    assert padded.nonempty().tolist() == [True, True, True, False]
    assert len(padded[1:3]) == 2 and len(padded[0]) == 1 and len(BitMasks.cat([padded, padded])) == 8


def test_bitmasks_crop_and_resize_uses_aligned_roi_align():
    pytest.importorskip("maskrcnn_multi.ops", reason="maskrcnn_multi.ops (roi_align) not written yet")
    tensor = torch.zeros(2, 16, 16, dtype=torch.bool)
    tensor[0, 4:12, 4:12] = True
    tensor[1, :8, :] = True
    bitmasks = BitMasks(tensor)
    cropped = bitmasks.crop_and_resize(torch.tensor([[4.0, 4.0, 12.0, 12.0], [0.0, 0.0, 16.0, 16.0]]), 4)
    assert cropped.dtype == torch.bool and cropped.shape == (2, 4, 4)
    assert cropped[0].all()  # the box covers exactly the set square
    assert cropped[1, :2].all() and not cropped[1, 2:].any()  # top half set


def test_roimasks_paste_into_image():
    pytest.importorskip("maskrcnn_multi.ops", reason="maskrcnn_multi.ops (paste_masks_in_image) not written yet")
    masks = ROIMasks(torch.ones(2, 7, 7))
    pasted = masks.to_bitmasks(Boxes(torch.tensor([[2.0, 3.0, 8.0, 9.0], [0.0, 0.0, 4.0, 4.0]])), 12, 10)
    assert isinstance(pasted, BitMasks) and pasted.tensor.shape == (2, 12, 10)
    assert pasted.tensor[0, 3:9, 2:8].all() and pasted.tensor[0].sum() == 36
    assert pasted.tensor[1, :4, :4].all() and pasted.tensor[1].sum() == 16
    assert len(masks[1:]) == 1
    with pytest.raises(ValueError, match="Tensor\\[N, M, M\\]"):
        ROIMasks(torch.ones(7, 7))
