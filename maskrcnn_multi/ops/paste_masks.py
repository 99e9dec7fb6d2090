"""Paste per-box mask predictions into full images (detectron2's paste_masks_in_image)."""
from typing import Tuple

import torch

from . import reference
from ._checks import check_boxes, check_int, check_number, check_same_device, check_tensor, compute_dtype, use_native

__all__ = ["paste_masks_in_image"]


def paste_masks_in_image(masks: torch.Tensor, boxes: torch.Tensor, image_shape: Tuple[int, int],
                         threshold: float = 0.5) -> torch.Tensor:
    """Resample mask i into box i of an image of `image_shape` and threshold it.

    Args:
        masks: (N, M, M) mask probabilities (any real dtype; computed in float32 or float64).
        boxes: (N, 4) x0y0x1y1 in image coordinates.
        image_shape: (height, width) of the output images.
        threshold: pixels with value >= threshold are True. A negative threshold returns the uint8
            values * 255 instead (detectron2's visualisation mode).
    Returns:
        (N, height, width) bool (uint8 when threshold < 0). Each mask is pasted only inside its box grown
        by about a pixel (detectron2's CPU behaviour); outside that region pixels are False / 0. The
        native kernel computes that region only and writes the thresholded result directly.
    """
    check_tensor("paste_masks_in_image", "masks", masks)
    if masks.dim() != 3 or masks.shape[1] != masks.shape[2]:
        raise ValueError(f"paste_masks_in_image: masks must be (N, M, M), got {tuple(masks.shape)}")
    check_boxes("paste_masks_in_image", "boxes", boxes)
    if boxes.shape[0] != masks.shape[0]:
        raise ValueError(f"paste_masks_in_image: boxes must be ({masks.shape[0]}, 4), one per mask, "
                         f"got {tuple(boxes.shape)}")
    check_same_device("paste_masks_in_image", "boxes", boxes, masks.device)
    if len(image_shape) != 2:
        raise ValueError(f"paste_masks_in_image: image_shape must be (height, width), got {image_shape!r}")
    height = check_int("paste_masks_in_image", "image_shape[0]", int(image_shape[0]), minimum=0)
    width = check_int("paste_masks_in_image", "image_shape[1]", int(image_shape[1]), minimum=0)
    threshold = check_number("paste_masks_in_image", "threshold", threshold)

    if masks.shape[0] == 0 or height == 0 or width == 0:
        out_dtype = torch.bool if threshold >= 0 else torch.uint8
        return torch.zeros((masks.shape[0], height, width), dtype=out_dtype, device=masks.device)
    dtype = compute_dtype(masks.dtype)
    masks = masks.detach().to(dtype)
    boxes = boxes.detach().to(dtype)
    if use_native("paste_masks_in_image", masks):
        return torch.ops.maskrcnn_multi.paste_masks_in_image(masks, boxes, height, width, threshold)
    return reference.paste_masks_in_image(masks, boxes, height, width, threshold)
