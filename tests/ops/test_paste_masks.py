"""paste_masks_in_image: detectron2's semantics, native kernels against the grid_sample reference."""
import pytest
import torch

from maskrcnn_multi.ops import paste_masks_in_image
from maskrcnn_multi.ops import reference


def _random_detections(count: int, mask_size: int = 28):
    generator = torch.Generator().manual_seed(3)
    masks = torch.rand(count, mask_size, mask_size, generator=generator)
    corner = torch.rand(count, 2, generator=generator) * 300 - 30
    size = torch.rand(count, 2, generator=generator) * 150 + 0.5
    return masks, torch.cat([corner, corner + size], dim=1)


def test_native_paste_equals_grid_sample_reference(implementation):
    implementation.native_or_skip("paste_masks")
    if implementation.path == "reference":
        pytest.skip("compares the native kernel with the reference")
    masks, boxes = _random_detections(12)
    expected = reference.paste_masks(masks, boxes, 200, 260)
    pasted = torch.ops.maskrcnn_multi.paste_masks(masks.to(implementation.device), boxes.to(implementation.device),
                                                  200, 260).cpu()
    # Same arithmetic as ATen's CPU grid sampler (fused multiply-adds where ATen's are): bit for bit.
    if implementation.device == "cpu":
        assert torch.equal(pasted, expected)
    else:
        assert torch.allclose(pasted, expected, rtol=0, atol=1e-6)
    bool_masks = paste_masks_in_image(masks.to(implementation.device), boxes.to(implementation.device), (200, 260))
    assert torch.equal(bool_masks.cpu(), expected >= 0.5)


def test_hand_computed_two_by_two_mask(implementation):
    implementation.native_or_skip("paste_masks")
    # Right column on: bilinear with zero padding gives the column profile (0, .25, .75, .75) and
    # the row profile (.75, 1, 1, .75) for pixel centres 0.5 .. 3.5 of a box [0, 4].
    masks = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]], device=implementation.device)
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0]], device=implementation.device)
    columns = torch.tensor([0.0, 0.25, 0.75, 0.75])
    rows = torch.tensor([0.75, 1.0, 1.0, 0.75])
    expected = rows[:, None] * columns[None, :]
    paste = torch.ops.maskrcnn_multi.paste_masks if implementation.path == "native" else reference.paste_masks
    assert torch.allclose(paste(masks, boxes, 4, 4)[0].cpu(), expected)
    bool_masks = paste_masks_in_image(masks, boxes, (4, 4))
    assert bool_masks.dtype == torch.bool and bool_masks.shape == (1, 4, 4)
    assert torch.equal(bool_masks[0].cpu(), expected >= 0.5)


def test_nothing_is_pasted_outside_the_grown_box(implementation):
    implementation.native_or_skip("paste_masks_in_image")
    masks = torch.ones(1, 4, 4, device=implementation.device)
    boxes = torch.tensor([[10.2, 10.2, 11.8, 11.8]], device=implementation.device)
    # threshold 0: every pasted pixel is on, so the result is detectron2's region [9, 13) x [9, 13).
    region = paste_masks_in_image(masks, boxes, (20, 20), threshold=0.0)[0].cpu()
    expected = torch.zeros(20, 20, dtype=torch.bool)
    expected[9:13, 9:13] = True
    assert torch.equal(region, expected)


def test_negative_threshold_returns_uint8_values(implementation):
    implementation.native_or_skip("paste_masks_in_image")
    masks = torch.full((1, 2, 2), 0.5, device=implementation.device)
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0]], device=implementation.device)
    values = paste_masks_in_image(masks, boxes, (2, 2), threshold=-1)
    assert values.dtype == torch.uint8 and values.max() <= 127


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.uint8])
def test_low_precision_and_integer_masks_are_accepted(implementation, dtype):
    implementation.native_or_skip("paste_masks_in_image")
    masks, boxes = _random_detections(4)
    expected = paste_masks_in_image(masks.to(dtype).float(), boxes, (120, 160))
    pasted = paste_masks_in_image(masks.to(implementation.device, dtype), boxes.to(implementation.device), (120, 160))
    assert torch.equal(pasted.cpu(), expected)


def test_no_detections_give_empty_masks(implementation):
    implementation.native_or_skip("paste_masks_in_image")
    pasted = paste_masks_in_image(torch.zeros(0, 28, 28, device=implementation.device),
                                  torch.zeros(0, 4, device=implementation.device), (30, 40))
    assert pasted.shape == (0, 30, 40) and pasted.dtype == torch.bool


def test_paste_rejects_bad_input_naming_the_argument():
    with pytest.raises(ValueError, match=r"paste_masks_in_image: masks must be \(N, M, M\), got \(2, 28, 14\)"):
        paste_masks_in_image(torch.zeros(2, 28, 14), torch.zeros(2, 4), (10, 10))
    with pytest.raises(ValueError, match=r"paste_masks_in_image: boxes must be \(2, 4\), one per mask, got \(3, 4\)"):
        paste_masks_in_image(torch.zeros(2, 28, 28), torch.zeros(3, 4), (10, 10))
    with pytest.raises(ValueError, match=r"image_shape\[1\] must be >= 0, got -1"):
        paste_masks_in_image(torch.zeros(2, 28, 28), torch.zeros(2, 4), (10, -1))


def _hard_detections(count: int = 40, mask_size: int = 28):
    """Masks with exact 0 / 1 cells (values land on thresholds), boxes off the image and sub-pixel ones."""
    masks, boxes = _random_detections(count, mask_size)
    masks[::3] = (masks[::3] > 0.5).float()
    boxes[::7, 2:] = boxes[::7, :2] + 0.05
    boxes[1::9] -= 200
    return masks, boxes


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.0, 1.0, 1.5, -1.0, -0.25])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_thresholded_kernel_writes_what_the_reference_thresholds(implementation, threshold, dtype):
    # The kernel thresholds as it pastes, inside each pasting region only; the twin pastes floats over
    # the union of regions, thresholds and masks the region. Same bits either way.
    implementation.native_or_skip("paste_masks_in_image")
    masks, boxes = _hard_detections()
    masks, boxes = masks.to(dtype), boxes.to(dtype)
    expected = reference.paste_masks_in_image(masks, boxes, 190, 230, threshold)
    pasted = paste_masks_in_image(masks.to(implementation.device), boxes.to(implementation.device), (190, 230),
                                  threshold=threshold).cpu()
    assert pasted.dtype == (torch.bool if threshold >= 0 else torch.uint8)
    assert torch.equal(pasted, expected)
    if threshold > 1:
        assert not pasted.any()  # bilinear values never exceed the mask's maximum, 1


def test_strided_and_half_precision_masks_paste_like_contiguous_float32(implementation):
    # What the mask head gives under autocast: bf16 probabilities, possibly a strided view. Both are
    # computed in float32, so the masks equal those of the float32 contiguous values (tolerance 0).
    implementation.native_or_skip("paste_masks_in_image")
    masks, boxes = _hard_detections()
    masks = masks.to(torch.bfloat16).float()  # values a bf16 tensor holds exactly
    expected = paste_masks_in_image(masks, boxes, (190, 230))
    strided = masks.transpose(1, 2).contiguous().transpose(1, 2)
    assert not strided.is_contiguous()
    device = implementation.device
    assert torch.equal(paste_masks_in_image(strided.to(device), boxes.to(device), (190, 230)).cpu(), expected)
    pasted = paste_masks_in_image(masks.to(device, torch.bfloat16), boxes.to(device), (190, 230)).cpu()
    assert torch.equal(pasted, expected)
