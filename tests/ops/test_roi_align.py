"""roi_align against torchvision's C++ kernel (../shared/reference/ops/roi_align.pt): forward and
gradient w.r.t. the input, in float64 and cast to float32."""
import pytest
import torch

from maskrcnn_multi.ops import RoIAlign, roi_align

from conftest import load_cases

CASES = ["case0", "case1", "case2", "case3", "case4", "case5"]


@pytest.fixture(scope="module")
def roi_cases(reference_dir):
    return load_cases(reference_dir, "roi_align.pt")


def _pool_with_grad(case, device, dtype):
    """(output, grad_input) of roi_align on `case` cast to dtype on device."""
    features = case["input"].to(device, dtype, copy=True).requires_grad_(True)
    output = roi_align(features, case["rois"].to(device, dtype), tuple(case["output_size"].tolist()),
                       spatial_scale=float(case["spatial_scale"]), sampling_ratio=int(case["sampling_ratio"]),
                       aligned=bool(case["aligned"]))
    output.backward(case["grad_output"].to(device, dtype))
    return output.detach().cpu().double(), features.grad.cpu().double()


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-5), (torch.float32, 1e-4)], ids=["fp64", "fp32"])
@pytest.mark.parametrize("case_name", CASES)
def test_roi_align_matches_torchvision_forward_and_backward(roi_cases, implementation, case_name, dtype, tolerance):
    implementation.native_or_skip("roi_align")
    case = roi_cases[case_name]
    output, grad_input = _pool_with_grad(case, implementation.device, dtype)
    assert output.shape == case["output"].shape
    assert (output - case["output"]).abs().max() <= tolerance
    assert (grad_input - case["grad_input"]).abs().max() <= tolerance


def test_list_of_boxes_equals_batch_indexed_rois(roi_cases, implementation):
    implementation.native_or_skip("roi_align")
    case = roi_cases["case0"]
    features, rois = case["input"].to(implementation.device), case["rois"].to(implementation.device)
    per_image = [rois[rois[:, 0] == index, 1:] for index in range(features.shape[0])]
    order = torch.cat([torch.where(rois[:, 0] == index)[0] for index in range(features.shape[0])])
    from_list = roi_align(features, per_image, 7, 0.25, 0, True)
    from_rois = roi_align(features, rois[order], (7, 7), 0.25, 0, True)
    assert torch.equal(from_list, from_rois)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_roi_align_half_precision_is_close_to_float32(roi_cases, implementation, dtype):
    implementation.native_or_skip("roi_align")
    case = roi_cases["case4"]
    features = case["input"].to(implementation.device, torch.float32)
    rois = case["rois"].to(implementation.device, torch.float32)
    half_features = features.to(dtype).requires_grad_(True)
    pooled = roi_align(half_features, rois, 7, float(case["spatial_scale"]), 0, True)
    pooled.float().sum().backward()
    assert pooled.dtype == dtype and half_features.grad.dtype == dtype
    expected = roi_align(features, rois, 7, float(case["spatial_scale"]), 0, True)
    assert torch.allclose(pooled.float(), expected, atol=5e-2, rtol=5e-2)


def test_roi_align_without_rois_gives_empty_output(implementation):
    implementation.native_or_skip("roi_align")
    features = torch.randn(2, 3, 8, 8, device=implementation.device, requires_grad=True)
    pooled = roi_align(features, torch.zeros(0, 5, device=implementation.device), (4, 5), 1.0, 2, False)
    assert pooled.shape == (0, 3, 4, 5)
    pooled.sum().backward()
    assert torch.count_nonzero(features.grad) == 0


def test_roialign_module_matches_function(roi_cases, implementation):
    implementation.native_or_skip("roi_align")
    case = roi_cases["case2"]
    features, rois = case["input"].to(implementation.device), case["rois"].to(implementation.device)
    module = RoIAlign((14, 14), spatial_scale=0.125, sampling_ratio=0, aligned=True)
    assert "output_size=(14, 14)" in repr(module)
    assert torch.equal(module(features, rois), roi_align(features, rois, 14, 0.125, 0, True))


def test_roi_align_rejects_bad_input_naming_the_argument():
    features = torch.zeros(1, 2, 8, 8)
    with pytest.raises(ValueError, match=r"roi_align: boxes must be a Tensor\[K, 5\].*got a tensor of shape \(3, 4\)"):
        roi_align(features, torch.zeros(3, 4), 7)
    with pytest.raises(ValueError, match=r"roi_align: boxes\[0\] must be \(N, 4\), got \(3, 5\)"):
        roi_align(features, [torch.zeros(3, 5)], 7)
    with pytest.raises(ValueError, match=r"roi_align: input must be a floating \(N, C, H, W\) tensor, got \(2, 8, 8\)"):
        roi_align(features[0], torch.zeros(3, 5), 7)
    with pytest.raises(ValueError, match=r"roi_align: output_size must be a positive int or a pair of them, got 0"):
        roi_align(features, torch.zeros(3, 5), 0)
    with pytest.raises(TypeError, match=r"roi_align: sampling_ratio must be an int, got 1.5"):
        roi_align(features, torch.zeros(3, 5), 7, sampling_ratio=1.5)


def test_native_roi_align_rejects_out_of_range_batch_index(implementation):
    implementation.native_or_skip("roi_align")
    if implementation.path != "native" or implementation.device != "cpu":
        pytest.skip("the CPU kernel checks batch indices; others would need a device sync")
    with pytest.raises(RuntimeError, match=r"rois\[0, 0\] = 3 is not a batch index in \[0, 1\)"):
        roi_align(torch.zeros(1, 2, 8, 8), torch.tensor([[3.0, 0, 0, 4, 4]]), 2)
