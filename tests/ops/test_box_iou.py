"""box_iou against torchvision's results (../shared/reference/ops/nms.pt, key `iou`)."""
import pytest
import torch

from maskrcnn_multi.ops import box_iou

from conftest import load_cases


@pytest.fixture(scope="module")
def nms_cases(reference_dir):
    return load_cases(reference_dir, "nms.pt")


@pytest.mark.parametrize("case_name", ["case0", "case1", "case3", "degenerate", "empty"])
def test_box_iou_equals_torchvision_nan_included(nms_cases, implementation, case_name):
    implementation.native_or_skip("box_iou")
    case = nms_cases[case_name]
    boxes = case["boxes"][:50].to(implementation.device)
    iou = box_iou(boxes, boxes).cpu()
    expected = case["iou"]
    assert iou.dtype == expected.dtype and iou.shape == expected.shape
    assert torch.equal(torch.isnan(iou), torch.isnan(expected))
    assert torch.equal(iou.nan_to_num(-1.0), expected.nan_to_num(-1.0))


def test_box_iou_of_different_sets_is_n_by_m(implementation):
    implementation.native_or_skip("box_iou")
    boxes1 = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]], device=implementation.device)
    boxes2 = torch.tensor([[0.0, 0.0, 2.0, 2.0], [2.0, 2.0, 4.0, 4.0], [1.0, 0.0, 2.0, 2.0]],
                          device=implementation.device)
    expected = torch.tensor([[1.0, 0.0, 0.5], [1 / 7, 1 / 7, 1 / 5]])
    assert torch.allclose(box_iou(boxes1, boxes2).cpu(), expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_box_iou_half_precision_returns_input_dtype_close_to_float32(nms_cases, implementation, dtype):
    implementation.native_or_skip("box_iou")
    boxes = nms_cases["case1"]["boxes"][:50].to(implementation.device, dtype)
    iou = box_iou(boxes, boxes)
    assert iou.dtype == dtype
    # Computed in float32, so only the final rounding to `dtype` separates it from float32.
    assert torch.allclose(iou.float(), box_iou(boxes.float(), boxes.float()), atol=1e-2, equal_nan=True)


def test_box_iou_is_differentiable():
    boxes1 = torch.tensor([[0.0, 0.0, 2.0, 2.0]], requires_grad=True)
    boxes2 = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    box_iou(boxes1, boxes2).sum().backward()
    assert boxes1.grad is not None and torch.isfinite(boxes1.grad).all()


def test_box_iou_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"box_iou: boxes2 must be \(N, 4\), got \(4,\)"):
        box_iou(torch.zeros(2, 4), torch.zeros(4))
