"""Mask pasting in pure PyTorch with detectron2's semantics (detectron2/layers/mask_ops.py).

A pixel centre (px + 0.5) is mapped into its box, normalised to [-1, 1] and read from the mask by
F.grid_sample (bilinear, zero padding, align_corners=False). As in detectron2's CPU path, each mask
is pasted only inside [floor(x0) - 1, ceil(x1) + 1) x [floor(y0) - 1, ceil(y1) + 1) clipped to the
image, and pixels outside stay 0. (detectron2's GPU path samples the whole image instead; the two
differ by a pixel or two around large boxes. We keep the CPU semantics on every device.)
"""
from typing import Tuple

import torch
import torch.nn.functional as F

# Upper bound on the grid points sampled at once (masks x rows x columns) to bound memory.
_MAX_GRID_POINTS = 1 << 24
# Float pixels pasted at once by paste_masks_in_image: the intermediate float images stay around
# 128 MiB even for 100 detections on an 800x1216 image.
_MAX_PASTED_PIXELS = 1 << 25


def paste_regions(boxes: torch.Tensor, height: int, width: int) -> Tuple[torch.Tensor, ...]:
    """Per-mask pasting region as int64 tensors (N,): x_begin, y_begin, x_end, y_end (end exclusive)."""
    x_begin = (boxes[:, 0].floor() - 1).clamp(min=0).to(torch.int64)
    y_begin = (boxes[:, 1].floor() - 1).clamp(min=0).to(torch.int64)
    x_end = (boxes[:, 2].ceil() + 1).clamp(max=width).to(torch.int64)
    y_end = (boxes[:, 3].ceil() + 1).clamp(max=height).to(torch.int64)
    return x_begin, y_begin, x_end, y_end


def region_masks(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bool (N, height, width): True inside each mask's pasting region."""
    x_begin, y_begin, x_end, y_end = paste_regions(boxes, height, width)
    rows = torch.arange(height, device=boxes.device)
    cols = torch.arange(width, device=boxes.device)
    inside_rows = (rows[None, :] >= y_begin[:, None]) & (rows[None, :] < y_end[:, None])
    inside_cols = (cols[None, :] >= x_begin[:, None]) & (cols[None, :] < x_end[:, None])
    return inside_rows[:, :, None] & inside_cols[:, None, :]


def _paste_chunk(masks: torch.Tensor, boxes: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Sample masks (n, M, M) at pixel rows (h,) and columns (w,) of the image -> (n, h, w)."""
    x0, y0, x1, y1 = torch.split(boxes, 1, dim=1)
    # detectron2's arithmetic, in this order, so grid_sample sees the very same grid.
    grid_y = (rows.to(masks.dtype)[None, :] + 0.5 - y0) / (y1 - y0) * 2 - 1
    grid_x = (cols.to(masks.dtype)[None, :] + 0.5 - x0) / (x1 - x0) * 2 - 1
    count, h, w = masks.shape[0], rows.numel(), cols.numel()
    grid = torch.stack([grid_x[:, None, :].expand(count, h, w), grid_y[:, :, None].expand(count, h, w)], dim=3)
    return F.grid_sample(masks[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """masks (N, M, M) float and boxes (N, 4) of the same dtype -> (N, height, width) pasted, pre-threshold."""
    num_masks = masks.shape[0]
    images = masks.new_zeros((num_masks, height, width))
    if images.numel() == 0:
        return images
    x_begin, y_begin, x_end, y_end = paste_regions(boxes, height, width)
    masks_per_chunk = max(1, _MAX_GRID_POINTS // (height * width))
    for begin in range(0, num_masks, masks_per_chunk):
        chunk = slice(begin, begin + masks_per_chunk)
        # Sample the union of the chunk's regions, then keep each mask's own region only.
        top, bottom = int(y_begin[chunk].min()), int(y_end[chunk].max())
        left, right = int(x_begin[chunk].min()), int(x_end[chunk].max())
        if top >= bottom or left >= right:
            continue
        rows = torch.arange(top, bottom, device=masks.device)
        cols = torch.arange(left, right, device=masks.device)
        pasted = _paste_chunk(masks[chunk], boxes[chunk], rows, cols)
        inside_rows = (rows[None, :] >= y_begin[chunk, None]) & (rows[None, :] < y_end[chunk, None])
        inside_cols = (cols[None, :] >= x_begin[chunk, None]) & (cols[None, :] < x_end[chunk, None])
        inside = inside_rows[:, :, None] & inside_cols[:, None, :]
        images[chunk, top:bottom, left:right] = torch.where(inside, pasted, torch.zeros_like(pasted))
    return images


def paste_masks_in_image(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int,
                         threshold: float) -> torch.Tensor:
    """detectron2's paste_masks_in_image on masks (N, M, M) and boxes (N, 4) of one floating dtype:
    (N, height, width) bool masks (pasted value >= threshold), or for threshold < 0 the uint8
    value * 255 (detectron2's visualisation mode); pixels outside each pasting region are 0."""
    out_dtype = torch.bool if threshold >= 0 else torch.uint8
    images = torch.zeros((masks.shape[0], height, width), dtype=out_dtype, device=masks.device)
    if images.numel() == 0:
        return images
    masks_per_chunk = max(1, _MAX_PASTED_PIXELS // (height * width))
    for begin in range(0, masks.shape[0], masks_per_chunk):
        chunk = slice(begin, begin + masks_per_chunk)
        pasted = paste_masks(masks[chunk], boxes[chunk], height, width)
        if threshold < 0:
            images[chunk] = (pasted * 255).to(torch.uint8)
            continue
        images[chunk] = pasted >= threshold
        if threshold <= 0:
            # 0 >= threshold would switch on pixels detectron2 never pastes: keep them False.
            images[chunk] &= region_masks(boxes[chunk], height, width)
    return images
