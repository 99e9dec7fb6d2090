"""Boxes, BoxMode and pairwise_iou behave as detectron2's."""
import numpy as np
import pytest
import torch

from maskrcnn_multi.structures import Boxes, BoxMode, pairwise_ioa, pairwise_iou


def test_pairwise_iou_known_values():
    boxes1 = Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]]))
    boxes2 = Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 5.0, 5.0], [20.0, 20.0, 30.0, 30.0]]))
    expected = torch.tensor([[1.0, 0.25, 0.0], [25.0 / 175.0, 0.0, 0.0]])
    torch.testing.assert_close(pairwise_iou(boxes1, boxes2), expected)


def test_pairwise_iou_zero_area_boxes_give_zero_not_nan():
    boxes = Boxes(torch.tensor([[3.0, 3.0, 3.0, 3.0], [0.0, 0.0, 4.0, 4.0]]))
    iou = pairwise_iou(boxes, boxes)
    assert not torch.isnan(iou).any()
    assert iou[0, 0] == 0 and iou[0, 1] == 0 and iou[1, 1] == 1


def test_pairwise_iou_empty_inputs():
    assert pairwise_iou(Boxes(torch.zeros(0, 4)), Boxes(torch.rand(3, 4))).shape == (0, 3)


def test_pairwise_ioa_divides_by_second_area():
    boxes1 = Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0]]))
    boxes2 = Boxes(torch.tensor([[5.0, 5.0, 15.0, 15.0], [0.0, 0.0, 2.0, 2.0]]))
    torch.testing.assert_close(pairwise_ioa(boxes1, boxes2), torch.tensor([[0.25, 1.0]]))


def test_boxes_area_clip_nonempty_centers_scale():
    boxes = Boxes(torch.tensor([[-5.0, 2.0, 30.0, 8.0], [4.0, 4.0, 4.0, 9.0]]))
    torch.testing.assert_close(boxes.area(), torch.tensor([210.0, 0.0]))
    assert boxes.nonempty().tolist() == [True, False]
    torch.testing.assert_close(boxes.get_centers(), torch.tensor([[12.5, 5.0], [4.0, 6.5]]))
    boxes.clip((6, 20))  # (height, width)
    torch.testing.assert_close(boxes.tensor, torch.tensor([[0.0, 2.0, 20.0, 6.0], [4.0, 4.0, 4.0, 6.0]]))
    boxes.scale(2.0, 0.5)
    torch.testing.assert_close(boxes.tensor[0], torch.tensor([0.0, 1.0, 40.0, 3.0]))


def test_boxes_indexing_cat_iter_and_dtype():
    boxes = Boxes(torch.arange(12, dtype=torch.float64).view(3, 4))
    assert boxes.tensor.dtype == torch.float32
    assert len(boxes[1]) == 1 and boxes[1].tensor.shape == (1, 4)
    assert len(boxes[torch.tensor([True, False, True])]) == 2
    assert len(boxes[1:]) == 2
    assert len(Boxes.cat([boxes, boxes[:1]])) == 4
    assert len(Boxes.cat([])) == 0
    assert [tuple(b.shape) for b in boxes] == [(4,)] * 3
    assert Boxes([]).tensor.shape == (0, 4)
    with pytest.raises(ValueError, match="Tensor\\[N, 4\\]"):
        Boxes(torch.zeros(3, 5))


def test_inside_box():
    boxes = Boxes(torch.tensor([[0.0, 0.0, 9.0, 9.0], [-2.0, 0.0, 5.0, 5.0], [0.0, 0.0, 10.0, 5.0]]))
    assert boxes.inside_box((10, 10)).tolist() == [True, False, False]
    assert boxes.inside_box((10, 10), boundary_threshold=2).tolist() == [True, True, True]


def test_box_mode_convert_roundtrip_all_containers():
    xywh = [10.0, 20.0, 5.0, 6.0]
    xyxy = BoxMode.convert(xywh, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
    assert xyxy == [10.0, 20.0, 15.0, 26.0] and isinstance(xyxy, list)
    assert BoxMode.convert(tuple(xyxy), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS) == tuple(xywh)
    array = np.array([xywh], dtype=np.float32)
    np.testing.assert_allclose(BoxMode.convert(array, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS), [[10, 20, 15, 26]])
    assert array[0, 2] == 5.0  # input untouched
    tensor = torch.tensor([xyxy])
    torch.testing.assert_close(BoxMode.convert(tensor, 0, 1), torch.tensor([xywh]))
    with pytest.raises(NotImplementedError, match="XYXY_REL"):
        BoxMode.convert(xywh, BoxMode.XYXY_REL, BoxMode.XYXY_ABS)
