"""paste_masks_in_image: detectron2's semantics, native kernel against the grid_sample reference."""
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
    # Same arithmetic as ATen's CPU grid sampler, fused multiply-adds included.
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
    implementation.native_or_skip("paste_masks")
    masks = torch.ones(1, 4, 4, device=implementation.device)
    boxes = torch.tensor([[10.2, 10.2, 11.8, 11.8]], device=implementation.device)
    # threshold 0: every pasted pixel is on, so the result is detectron2's region [9, 13) x [9, 13).
    region = paste_masks_in_image(masks, boxes, (20, 20), threshold=0.0)[0].cpu()
    expected = torch.zeros(20, 20, dtype=torch.bool)
    expected[9:13, 9:13] = True
    assert torch.equal(region, expected)


def test_negative_threshold_returns_uint8_values(implementation):
    implementation.native_or_skip("paste_masks")
    masks = torch.full((1, 2, 2), 0.5, device=implementation.device)
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0]], device=implementation.device)
    values = paste_masks_in_image(masks, boxes, (2, 2), threshold=-1)
    assert values.dtype == torch.uint8 and values.max() <= 127


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.uint8])
def test_low_precision_and_integer_masks_are_accepted(implementation, dtype):
    implementation.native_or_skip("paste_masks")
    masks, boxes = _random_detections(4)
    expected = paste_masks_in_image(masks.to(dtype).float(), boxes, (120, 160))
    pasted = paste_masks_in_image(masks.to(implementation.device, dtype), boxes.to(implementation.device), (120, 160))
    assert torch.equal(pasted.cpu(), expected)


def test_no_detections_give_empty_masks(implementation):
    implementation.native_or_skip("paste_masks")
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
