"""npu_kernels: argument order, layouts, mode mapping and dtype handling, against the fake torch_npu
(whose ops reproduce torchvision's results in ../shared/reference, so the mapping is checked end to end)."""
import pytest
import torch

from maskrcnn_multi.backends import npu_kernels


def _last_call(fake, name):
    return [call for call in fake.calls if call[0] == name][-1]


def test_nms_wiring(fake_torch_npu):
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    keep = npu_kernels.nms(boxes, scores, 0.5)
    assert keep.dtype == torch.int64 and keep.tolist() == [3, 2]  # sliced to valid_outputs, not padded
    _, args, _ = _last_call(fake_torch_npu, "npu_nms_v4")
    assert args[0].dtype == torch.float32 and args[2] == 4
    assert args[3].dim() == 0 and float(args[3]) == 0.5 and args[5] is False


def test_nms_half_input_and_empty(fake_torch_npu):
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11]], dtype=torch.float16)
    assert npu_kernels.nms(boxes, torch.tensor([0.1, 0.2], dtype=torch.float16), 0.3).tolist() == [1]
    empty = npu_kernels.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.dtype == torch.int64 and empty.numel() == 0


def test_nms_matches_torchvision_reference(fake_torch_npu, reference_dir):
    cases = torch.load(reference_dir / "ops" / "nms.pt", weights_only=True)
    for name in ("case0", "case1", "case2", "case5", "degenerate", "empty"):
        case = cases[name]
        keep = npu_kernels.nms(case["boxes"], case["scores"], float(case["iou_threshold"]))
        assert torch.equal(keep, case["keep"]), name


@pytest.mark.parametrize("aligned, sampling_ratio, mode, sample_num", [(True, 0, 2, 0), (False, -1, 0, 0), (True, 2, 2, 2)])
def test_roi_align_wiring(fake_torch_npu, aligned, sampling_ratio, mode, sample_num):
    features = torch.randn(2, 3, 8, 8, dtype=torch.float16)
    rois = torch.tensor([[1, 0.0, 0.0, 8.0, 6.0], [0, 2.0, 2.0, 5.0, 7.0]], dtype=torch.float16)
    output = npu_kernels.roi_align(features, rois, 0.5, 3, 4, sampling_ratio, aligned)
    assert output.shape == (2, 3, 3, 4) and output.dtype == torch.float16
    _, args, _ = _last_call(fake_torch_npu, "npu_roi_align")
    assert args[0].dtype == torch.float32 and args[1].dtype == torch.float32 and args[1].shape == (2, 5)
    assert args[2:] == (0.5, 3, 4, sample_num, mode)


def test_roi_align_backward_wiring(fake_torch_npu):
    grad = torch.randn(2, 3, 3, 4, dtype=torch.float16)
    rois = torch.tensor([[1, 0.0, 0.0, 8.0, 6.0], [0, 2.0, 2.0, 5.0, 7.0]])
    grad_input = npu_kernels.roi_align_backward(grad, rois, 0.5, 3, 4, 2, 3, 8, 8, 0, True)
    assert grad_input.shape == (2, 3, 8, 8) and grad_input.dtype == torch.float16
    _, args, _ = _last_call(fake_torch_npu, "npu_roi_alignbk")
    assert args[0].dtype == torch.float32 and args[2] == [2, 3, 8, 8]
    assert args[3:] == (4, 3, 0.5, 0, 2)  # pooled_width before pooled_height


def test_empty_rois_skip_the_device_op(fake_torch_npu):
    features = torch.randn(1, 2, 4, 4)
    assert npu_kernels.roi_align(features, torch.zeros(0, 5), 1.0, 2, 2, 0, True).shape == (0, 2, 2, 2)
    assert not any(name == "npu_roi_align" for name, _, _ in fake_torch_npu.calls)


def test_roi_align_matches_torchvision_reference(fake_torch_npu, reference_dir):
    cases = torch.load(reference_dir / "ops" / "roi_align.pt", weights_only=True)
    for name, case in cases.items():
        if not isinstance(case, dict):
            continue
        (pooled_h, pooled_w), input_shape = case["output_size"].tolist(), case["input"].shape
        args = (float(case["spatial_scale"]), pooled_h, pooled_w)
        options = (int(case["sampling_ratio"]), bool(case["aligned"]))
        output = npu_kernels.roi_align(case["input"].float(), case["rois"].float(), *args, *options)
        torch.testing.assert_close(output.double(), case["output"], atol=1e-5, rtol=1e-5, msg=name)
        grad_input = npu_kernels.roi_align_backward(
            case["grad_output"].float(), case["rois"].float(), *args, *input_shape, *options)
        torch.testing.assert_close(grad_input.double(), case["grad_input"], atol=1e-5, rtol=1e-5, msg=name)


def test_register_kernels_on_privateuse1(fake_torch_npu):
    namespace = "mm_npu_test"
    library = torch.library.Library(namespace, "DEF")
    library.define("nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor")
    library.define("roi_align(Tensor input, Tensor rois, float spatial_scale, int pooled_height, "
                   "int pooled_width, int sampling_ratio, bool aligned) -> Tensor")
    assert npu_kernels.register_kernels(namespace) == ["nms", "roi_align"]  # roi_align_backward: no schema
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"{namespace}::nms", "PrivateUse1")
    assert npu_kernels.register_kernels(namespace) == []  # idempotent
    assert not torch._C._dispatch_has_kernel_for_dispatch_key(f"{namespace}::nms", "CPU")
