"""Deformable convolution (DCN v1, and v2 when a mask is given) in pure PyTorch, following
torchvision's CPU kernel rule for rule. Differentiable w.r.t. every tensor input through plain autograd
(the bilinear weights carry the offsets' gradient, the gathers' backward scatters into the input).

The rules:
- output position (oy, ox) and kernel tap (i, j) of offset group g sample the input at
  y = oy * stride_h - pad_h + i * dilation_h + offset[2 * (g * K + i * kw + j)] and x likewise with
  channel 2 * (g * K + i * kw + j) + 1 (K = kh * kw): y first, then x, detectron2's and mmcv's layout;
- a sample is bilinear over its four neighbours, a neighbour outside the map contributing 0 (so a sample
  with y <= -1, y >= H, x <= -1 or x >= W is 0);
- input channel c belongs to offset group c // (C / offset_groups); the sample is multiplied by
  mask[g * K + i * kw + j] when a mask is given;
- the sampled columns (C * K per output position) go through a grouped matrix product with the weight,
  plus the bias.
"""
from typing import Optional, Tuple

import torch

Pair = Tuple[int, int]


def _sample_positions(offset: torch.Tensor, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair,
                      offset_groups: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sampling rows y and columns x, each (N, offset_groups, K, oh, ow), in offset's dtype."""
    batch, _, out_height, out_width = offset.shape
    kernel_height, kernel_width = kernel
    device, dtype = offset.device, offset.dtype
    tap_y = (torch.arange(kernel_height, device=device) * dilation[0]).repeat_interleave(kernel_width)
    tap_x = (torch.arange(kernel_width, device=device) * dilation[1]).repeat(kernel_height)
    row = torch.arange(out_height, device=device) * stride[0] - padding[0]
    column = torch.arange(out_width, device=device) * stride[1] - padding[1]
    base_y = (row[None, :, None] + tap_y[:, None, None]).to(dtype)      # (K, oh, 1)
    base_x = (column[None, None, :] + tap_x[:, None, None]).to(dtype)   # (K, 1, ow)
    pairs = offset.view(batch, offset_groups, kernel_height * kernel_width, 2, out_height, out_width)
    return base_y + pairs[:, :, :, 0], base_x + pairs[:, :, :, 1]


def _bilinear_columns(input: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of input (N, C, H, W) at (y, x) (N, G, K, oh, ow): (N, C, K, oh * ow), the C
    channels split into G consecutive offset groups."""
    batch, channels, height, width = input.shape
    groups = y.shape[1]
    points = y.shape[2] * y.shape[3] * y.shape[4]
    # Positions far outside the map only ever meet invalid neighbours; bounding them keeps the integer
    # conversion defined (inf, huge offsets) without changing any weight or gradient.
    y = y.clamp(-2.0, height + 1.0)
    x = x.clamp(-2.0, width + 1.0)
    y_low, x_low = y.detach().floor(), x.detach().floor()
    high_y_weight, high_x_weight = y - y_low, x - x_low
    low_y_weight, low_x_weight = 1 - high_y_weight, 1 - high_x_weight
    y_low, x_low = y_low.to(torch.int64), x_low.to(torch.int64)
    planes = input.reshape(batch, groups, channels // groups, height * width)
    columns = None
    for row, row_weight in ((y_low, low_y_weight), (y_low + 1, high_y_weight)):
        for column, column_weight in ((x_low, low_x_weight), (x_low + 1, high_x_weight)):
            valid = (row >= 0) & (row < height) & (column >= 0) & (column < width)
            index = (row.clamp(0, height - 1) * width + column.clamp(0, width - 1)).view(batch, groups, 1, points)
            values = planes.gather(3, index.expand(batch, groups, planes.shape[2], points))
            weight = (row_weight * column_weight * valid.to(input.dtype)).view(batch, groups, 1, points)
            term = weight * values
            columns = term if columns is None else columns + term
    return columns.reshape(batch, channels, y.shape[2], y.shape[3] * y.shape[4])


def deform_conv2d(input: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                  stride: Pair, padding: Pair, dilation: Pair, groups: int, offset_groups: int,
                  mask: Optional[torch.Tensor]) -> torch.Tensor:
    """(N, C_out, oh, ow) from input (N, C, H, W), offset (N, 2 * offset_groups * K, oh, ow), weight
    (C_out, C / groups, kh, kw), bias (C_out,) or None, mask (N, offset_groups * K, oh, ow) or None.
    Arguments are checked by the wrapper (`ops.deform_conv2d`); every tensor has one floating dtype,
    bf16 / fp16 computed in float32 and returned in that dtype."""
    if input.dtype in (torch.float16, torch.bfloat16):
        tensors = [t.float() if t is not None else None for t in (input, offset, weight, bias, mask)]
        float_input, float_offset, float_weight, float_bias, float_mask = tensors
        return deform_conv2d(float_input, float_offset, float_weight, float_bias, stride, padding, dilation, groups,
                             offset_groups, float_mask).to(input.dtype)
    batch, channels = input.shape[:2]
    out_channels, _, kernel_height, kernel_width = weight.shape
    out_height, out_width = offset.shape[-2:]
    taps = kernel_height * kernel_width
    y, x = _sample_positions(offset, (kernel_height, kernel_width), stride, padding, dilation, offset_groups)
    columns = _bilinear_columns(input, y, x)  # (N, C, K, L)
    if mask is not None:
        group_mask = mask.reshape(batch, offset_groups, 1, taps, out_height * out_width)
        columns = group_mask * columns.view(batch, offset_groups, channels // offset_groups, taps,
                                            out_height * out_width)
        columns = columns.reshape(batch, channels, taps, out_height * out_width)
    columns = columns.reshape(batch, groups, (channels // groups) * taps, out_height * out_width)
    weight_groups = weight.reshape(groups, out_channels // groups, (channels // groups) * taps)
    output = torch.einsum("gok,ngkl->ngol", weight_groups, columns).reshape(batch, out_channels, out_height, out_width)
    if bias is not None:
        output = output + bias.view(1, out_channels, 1, 1)
    return output
