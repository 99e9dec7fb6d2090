"""RoIAlign in pure PyTorch, vectorised over rois, following torchvision's C++ kernel rule for rule.

Those rules (the kernel is the ground truth; torchvision's own Python fallback differs on rois that
leave the feature map):
- a sample at y < -1, y > H, x < -1 or x > W contributes 0; otherwise it is clamped into [0, H-1]
  x [0, W-1] and bilinearly interpolated;
- each bin averages grid_h x grid_w samples, grid = sampling_ratio if > 0 else ceil(roi_size / pooled);
- aligned=True shifts the roi by -0.5 pixel and keeps its size as is; aligned=False forces rois to be
  at least 1x1.
Differentiable w.r.t. the features through plain autograd (the gathers' backward scatters).
"""
from typing import Tuple

import torch

# Upper bound on the elements of one gathered corner tensor (rois x bins x samples x channels): rois
# are pooled in chunks under it so large inputs do not exhaust memory.
_MAX_GATHERED_ELEMENTS = 1 << 24


def _sample_axis(start: torch.Tensor, bin_size: torch.Tensor, grid: torch.Tensor, pooled: int, max_grid: int,
                 size: int) -> Tuple[torch.Tensor, ...]:
    """Sample positions along one axis for K rois: (K, pooled, max_grid) tensors of
    low index, high index, weight of the high index, and whether the sample counts."""
    dtype = start.dtype
    bins = torch.arange(pooled, dtype=dtype, device=start.device)
    steps = torch.arange(max_grid, dtype=dtype, device=start.device) + 0.5
    grid_k = grid.to(dtype)[:, None, None]
    # Same operation order as the kernel: start + p * bin + ((i + .5) * bin) / grid.
    position = (start[:, None, None] + bins[None, :, None] * bin_size[:, None, None]
                + steps[None, None, :] * bin_size[:, None, None] / grid_k)
    counts = (torch.arange(max_grid, device=start.device)[None, None, :] < grid[:, None, None])
    inside = counts & (position >= -1.0) & (position <= size)
    position = position.clamp(min=0)
    low = position.floor().to(torch.int64)
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    position = torch.where(at_edge, low.to(dtype), position)
    high_weight = position - low.to(dtype)
    return low, high, high_weight, inside


def _pool_rois(features_flat: torch.Tensor, batch_offset: torch.Tensor, y_axis, x_axis, count: torch.Tensor,
               width: int) -> torch.Tensor:
    """Pooled features (K, C, pooled_h, pooled_w) of K rois from features_flat (N*H*W, C)."""
    y_low, y_high, ly, y_inside = (t[:, :, :, None, None] for t in y_axis)   # (K, ph, gh, 1, 1)
    x_low, x_high, lx, x_inside = (t[:, None, None, :, :] for t in x_axis)   # (K, 1, 1, pw, gw)
    inside = (y_inside & x_inside).to(ly.dtype)
    hy, hx = 1.0 - ly, 1.0 - lx
    base = batch_offset[:, None, None, None, None]
    corners = (
        (y_low * width + x_low, hy * hx),
        (y_low * width + x_high, hy * lx),
        (y_high * width + x_low, ly * hx),
        (y_high * width + x_high, ly * lx),
    )
    pooled = None
    for offsets, weights in corners:
        index = base + offsets
        values = features_flat.index_select(0, index.reshape(-1)).reshape(*index.shape, features_flat.shape[1])
        term = values * (weights * inside)[..., None]
        pooled = term if pooled is None else pooled + term
    # (K, ph, gh, pw, gw, C) -> average over the samples of each bin -> (K, C, ph, pw)
    pooled = pooled.sum(dim=(2, 4)) / count[:, None, None, None]
    return pooled.permute(0, 3, 1, 2)


def roi_align(features: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int,
              pooled_width: int, sampling_ratio: int, aligned: bool) -> torch.Tensor:
    """Pool features (N, C, H, W) over rois (K, 5) [batch_index, x0, y0, x1, y1] into
    (K, C, pooled_height, pooled_width), as the native kernels do: features in any layout and floating
    dtype (bf16 / fp16 computed in float32, rois read in that type too), the result in the features'
    dtype, channels_last when the features' channels are innermost, contiguous otherwise."""
    dtype = torch.float32 if features.dtype in (torch.float16, torch.bfloat16) else features.dtype
    channels_last = features.shape[1] > 1 and features.stride(1) == 1
    pooled = _roi_align(features.to(dtype), rois.to(dtype), spatial_scale, pooled_height, pooled_width,
                        sampling_ratio, aligned)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return pooled.to(features.dtype).contiguous(memory_format=memory_format)


def _roi_align(features: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int,
               pooled_width: int, sampling_ratio: int, aligned: bool) -> torch.Tensor:
    """roi_align with features and rois of one floating dtype; the result is (K, C, ph, pw) of it."""
    _, channels, height, width = features.shape
    dtype = features.dtype
    num_rois = rois.shape[0]
    offset = 0.5 if aligned else 0.0
    scale = torch.tensor(spatial_scale, dtype=dtype, device=rois.device)
    start_w = rois[:, 1] * scale - offset
    start_h = rois[:, 2] * scale - offset
    roi_width = rois[:, 3] * scale - offset - start_w
    roi_height = rois[:, 4] * scale - offset - start_h
    if not aligned:
        roi_width = roi_width.clamp(min=1.0)
        roi_height = roi_height.clamp(min=1.0)
    bin_h = roi_height / pooled_height
    bin_w = roi_width / pooled_width
    if sampling_ratio > 0:
        grid_h = torch.full((num_rois,), sampling_ratio, dtype=torch.int64, device=rois.device)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_height / pooled_height).to(torch.int64)
        grid_w = torch.ceil(roi_width / pooled_width).to(torch.int64)
    count = (grid_h * grid_w).clamp(min=1).to(dtype)
    grid_h, grid_w = grid_h.clamp(min=0), grid_w.clamp(min=0)

    features_flat = features.permute(0, 2, 3, 1).reshape(-1, channels)
    batch_offset = rois[:, 0].to(torch.int64) * (height * width)
    max_h = int(grid_h.max()) if num_rois else 0
    max_w = int(grid_w.max()) if num_rois else 0
    per_roi = max(1, pooled_height * pooled_width * max_h * max_w * channels)
    chunk = max(1, _MAX_GATHERED_ELEMENTS // per_roi)
    pooled_chunks = []
    for begin in range(0, max(num_rois, 1), chunk):
        rows = slice(begin, begin + chunk)
        y_axis = _sample_axis(start_h[rows], bin_h[rows], grid_h[rows], pooled_height, max_h, height)
        x_axis = _sample_axis(start_w[rows], bin_w[rows], grid_w[rows], pooled_width, max_w, width)
        pooled_chunks.append(_pool_rois(features_flat, batch_offset[rows], y_axis, x_axis, count[rows], width))
    return torch.cat(pooled_chunks)
