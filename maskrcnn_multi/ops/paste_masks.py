"""Paste per-box mask predictions into full images (detectron2's paste_masks_in_image)."""
from typing import Tuple

import torch

from . import reference
from ._checks import check_boxes, check_int, check_number, check_same_device, check_tensor, compute_dtype, use_native

__all__ = ["paste_masks_in_image"]

# Float pixels pasted per kernel call: masks are pasted in chunks so the intermediate float images
# stay around 128 MiB even for 100 detections on an 800x1216 image.
_MAX_PASTED_PIXELS = 1 << 25


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
        by about a pixel (detectron2's CPU behaviour); outside that region pixels are False / 0.
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

    out_dtype = torch.bool if threshold >= 0 else torch.uint8
    images = torch.zeros((masks.shape[0], height, width), dtype=out_dtype, device=masks.device)
    if images.numel() == 0:
        return images
    dtype = compute_dtype(masks.dtype)
    masks = masks.detach().to(dtype)
    boxes = boxes.detach().to(dtype)
    paste = torch.ops.maskrcnn_multi.paste_masks if use_native("paste_masks", masks) else reference.paste_masks
    masks_per_chunk = max(1, _MAX_PASTED_PIXELS // (height * width))
    for begin in range(0, masks.shape[0], masks_per_chunk):
        chunk = slice(begin, begin + masks_per_chunk)
        pasted = paste(masks[chunk], boxes[chunk], height, width)
        if threshold < 0:
            images[chunk] = (pasted * 255).to(torch.uint8)
            continue
        images[chunk] = pasted >= threshold
        if threshold <= 0:
            # 0 >= threshold would switch on pixels detectron2 never pastes: keep them False.
            images[chunk] &= reference.region_masks(boxes[chunk], height, width)
    return images
