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


# --- the fast path's inputs: channels_last and bf16 / fp16 features, read without copies ---------------

# Unit roundoff of each half type (half an ulp, relative): 8 and 11 significant bits.
_UNIT_ROUNDOFF = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}


def _pool(features, case, **overrides):
    settings = dict(output_size=tuple(case["output_size"].tolist()), spatial_scale=float(case["spatial_scale"]),
                    sampling_ratio=int(case["sampling_ratio"]), aligned=bool(case["aligned"]))
    settings.update(overrides)
    rois = case["rois"].to(features.device, torch.float64 if features.dtype == torch.float64 else torch.float32)
    return roi_align(features, rois, **settings)


def _is_channels_last(tensor):
    return tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("case_name", CASES)
def test_channels_last_features_pool_and_backpropagate_bit_for_bit_like_contiguous(roi_cases, implementation,
                                                                                    case_name, dtype):
    # Only the memory order differs, not the arithmetic, so the results must be equal (tolerance 0),
    # and each comes back in its input's layout.
    implementation.native_or_skip("roi_align")
    case = roi_cases[case_name]
    contiguous = case["input"].to(implementation.device, dtype, copy=True).requires_grad_(True)
    channels_last = contiguous.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    grad_output = case["grad_output"].to(implementation.device, dtype)
    expected = _pool(contiguous, case)
    expected.backward(grad_output)
    pooled = _pool(channels_last, case)
    pooled.backward(grad_output)  # a contiguous gradient, as the box head's flatten gives
    assert _is_channels_last(pooled) and not _is_channels_last(expected)
    assert torch.equal(pooled, expected)
    assert _is_channels_last(channels_last.grad)
    assert torch.equal(channels_last.grad, contiguous.grad)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "cl"])
@pytest.mark.parametrize("case_name", CASES)
def test_half_features_pool_in_float32_and_round_once(roi_cases, implementation, case_name, dtype, memory_format):
    implementation.native_or_skip("roi_align")
    case = roi_cases[case_name]
    exact = case["input"].to(implementation.device, torch.float32)
    half = exact.to(dtype).contiguous(memory_format=memory_format).requires_grad_(True)
    pooled = _pool(half, case)
    grad_output = case["grad_output"].to(implementation.device, torch.float32)
    pooled.backward(grad_output.to(dtype))
    assert pooled.dtype == dtype and half.grad.dtype == dtype
    assert _is_channels_last(pooled) == _is_channels_last(half) == _is_channels_last(half.grad)

    # float32 accumulation: exactly the float32 result on the same (rounded) values, rounded once.
    widened = half.detach().float().requires_grad_(True)
    widened_pooled = _pool(widened, case)
    widened_pooled.backward(grad_output.to(dtype).float())
    assert torch.equal(pooled, widened_pooled.to(dtype))
    assert torch.equal(half.grad, widened.grad.to(dtype))

    # Against float32 contiguous features: a pooled value is a convex combination of features, each
    # rounded by at most u |v|, and the result is rounded once more, so |error| <= 2 u max|features|.
    # A gradient cell sums terms g w / count, each g rounded by u, then rounds once: |error| <= 2 u times
    # the gradient of |grad_output| (the weights are non-negative). 1e-6 covers float32's own rounding.
    unit = _UNIT_ROUNDOFF[dtype]
    exact = exact.clone().requires_grad_(True)
    expected = _pool(exact, case)
    expected.backward(grad_output)
    assert (pooled.float() - expected).abs().max() <= 2 * unit * exact.abs().max() + 1e-6
    magnitude = exact.detach().clone().requires_grad_(True)
    _pool(magnitude, case).backward(grad_output.abs())
    assert ((half.grad.float() - exact.grad).abs() <= 2 * unit * magnitude.grad + 1e-6).all()


def test_strided_views_are_read_without_a_copy_and_pool_like_contiguous(roi_cases, implementation):
    implementation.native_or_skip("roi_align")
    case = roi_cases["case0"]
    features = case["input"].to(implementation.device, torch.float32)
    # Every other channel of a wider map, and a map with its height and width swapped twice.
    wide = torch.stack([features, -features], dim=2).flatten(1, 2)
    every_other_channel = wide[:, 0::2]
    transposed_twice = features.transpose(2, 3).contiguous().transpose(2, 3)
    expected = _pool(features, case)
    assert not every_other_channel.is_contiguous() and not transposed_twice.is_contiguous()
    assert torch.equal(_pool(every_other_channel, case), expected)
    assert torch.equal(_pool(transposed_twice, case), expected)


@pytest.mark.parametrize("num_rois", [1, 400], ids=["planes", "converted"])
def test_nchw_maps_pool_like_channels_last_whether_or_not_converted(implementation, num_rois):
    # An NCHW map read by few samples per cell is pooled plane by plane; one read by many is first
    # converted to channels_last by the CPU kernel. Either way the results are the channel-vector ones.
    implementation.native_or_skip("roi_align")
    generator = torch.Generator().manual_seed(7)
    features = torch.randn(2, 24, 40, 56, generator=generator).to(implementation.device).requires_grad_(True)
    corners = torch.rand(num_rois, 2, generator=generator) * torch.tensor([50.0, 34.0]) - 3
    sizes = torch.rand(num_rois, 2, generator=generator) * 20 + 1
    indices = torch.randint(0, 2, (num_rois, 1), generator=generator).float()
    rois = torch.cat([indices, corners, corners + sizes], dim=1).to(implementation.device)
    grad_output = torch.randn(num_rois, 24, 7, 7, generator=generator).to(implementation.device)
    pooled = roi_align(features, rois, 7, 1.0, 0, True)
    pooled.backward(grad_output)
    channels_last = features.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    expected = roi_align(channels_last, rois, 7, 1.0, 0, True)
    expected.backward(grad_output)
    assert torch.equal(pooled, expected)
    assert torch.equal(features.grad, channels_last.grad)
    assert features.grad.is_contiguous()
