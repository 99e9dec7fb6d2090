"""Deformable convolution: torchvision.ops.deform_conv2d's signature and results (DCN v1; v2, modulated,
when a mask is given), differentiable w.r.t. input, offset, mask, weight and bias on every device."""
from typing import Optional, Tuple, Union

import torch

from maskrcnn_multi.backends import native

from . import reference
from ._checks import check_same_device, check_tensor, shape_of, use_native

__all__ = ["deform_conv2d"]

IntPair = Union[int, Tuple[int, int]]

_OP = "deform_conv2d"


def _pair(name: str, value: IntPair, minimum: int) -> Tuple[int, int]:
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(pair) != 2 or not all(isinstance(side, int) and not isinstance(side, bool) and side >= minimum
                                 for side in pair):
        raise ValueError(f"{_OP}: {name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return pair


def _inferred(name: str, given: Optional[int], total: int, per_unit: int, meaning: str) -> int:
    """`given` checked against total / per_unit, or that quotient when not given."""
    if per_unit <= 0 or total % per_unit != 0:
        raise ValueError(f"{_OP}: {meaning}")
    quotient = total // per_unit
    if given is None:
        return quotient
    if isinstance(given, bool) or not isinstance(given, int) or given != quotient:
        raise ValueError(f"{_OP}: {name}={given!r} does not match the shapes, which give {quotient} ({meaning})")
    return given


def _check_4d(name: str, tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    check_tensor(_OP, name, tensor)
    if tensor.dim() != 4 or not tensor.dtype.is_floating_point:
        raise ValueError(f"{_OP}: {name} must be a floating 4-d tensor, got {shape_of(tensor)} {tensor.dtype}")
    check_same_device(_OP, name, tensor, device)
    return tensor


def deform_conv2d(input: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                  bias: Optional[torch.Tensor] = None, stride: IntPair = 1, padding: IntPair = 0,
                  dilation: IntPair = 1, mask: Optional[torch.Tensor] = None, *, groups: Optional[int] = None,
                  offset_groups: Optional[int] = None) -> torch.Tensor:
    """Deformable 2-d convolution, positionally as torchvision.ops.deform_conv2d.

    Args:
        input: (N, C, H, W) floating.
        offset: (N, 2 * offset_groups * kh * kw, oh, ow); for offset group g and tap k = i * kw + j,
            channel 2 * (g * kh * kw + k) is the y offset and the next one the x offset.
        weight: (C_out, C / groups, kh, kw).
        bias: (C_out,) or None.
        stride, padding, dilation: ints or (h, w) pairs, as torch.nn.functional.conv2d.
        mask: (N, offset_groups * kh * kw, oh, ow) modulation (DCN v2), or None (DCN v1).
        groups, offset_groups: keyword-only; inferred from weight's and offset's shapes when None (as
            torchvision), checked against them when given. Input channels split into `offset_groups`
            consecutive groups, each sampled at its own offsets.
    Returns:
        (N, C_out, oh, ow) in input's dtype (offset, mask, weight and bias are cast to it, as autocast
        would for a convolution); bf16 / fp16 are computed in float32. channels_last when input's
        channels are innermost, contiguous otherwise.
    """
    _check_4d("input", input, input.device if isinstance(input, torch.Tensor) else None)
    device = input.device
    _check_4d("offset", offset, device)
    _check_4d("weight", weight, device)
    stride, padding, dilation = _pair("stride", stride, 1), _pair("padding", padding, 0), _pair("dilation", dilation, 1)
    batch, channels, height, width = input.shape
    out_channels, _, kernel_height, kernel_width = weight.shape
    taps = kernel_height * kernel_width
    groups = _inferred("groups", groups, channels, weight.shape[1],
                       f"input has {channels} channels, weight {shape_of(weight)} takes {weight.shape[1]} per group")
    if out_channels % groups != 0:
        raise ValueError(f"{_OP}: weight's {out_channels} output channels are not divisible by groups={groups}")
    out_height = (height + 2 * padding[0] - dilation[0] * (kernel_height - 1) - 1) // stride[0] + 1
    out_width = (width + 2 * padding[1] - dilation[1] * (kernel_width - 1) - 1) // stride[1] + 1
    if out_height <= 0 or out_width <= 0:
        raise ValueError(f"{_OP}: input {shape_of(input)} is smaller than weight {shape_of(weight)}'s dilated kernel")
    offset_groups = _inferred("offset_groups", offset_groups, offset.shape[1], 2 * taps,
                              f"offset {shape_of(offset)} must have 2 * offset_groups * {taps} channels")
    if offset_groups == 0 or channels % offset_groups != 0:
        raise ValueError(f"{_OP}: input's {channels} channels are not divisible by offset_groups={offset_groups}")
    expected_offset = (batch, 2 * offset_groups * taps, out_height, out_width)
    if shape_of(offset) != expected_offset:
        raise ValueError(f"{_OP}: offset must be {expected_offset} for this input and weight, got {shape_of(offset)}")
    if mask is not None:
        _check_4d("mask", mask, device)
        expected_mask = (batch, offset_groups * taps, out_height, out_width)
        if shape_of(mask) != expected_mask:
            raise ValueError(f"{_OP}: mask must be {expected_mask} (offset_groups * kh * kw channels), "
                             f"got {shape_of(mask)}")
        mask = mask.to(input.dtype)
    if bias is not None:
        check_tensor(_OP, "bias", bias)
        if shape_of(bias) != (out_channels,) or not bias.dtype.is_floating_point:
            raise ValueError(f"{_OP}: bias must be a floating ({out_channels},) tensor, got {shape_of(bias)} "
                             f"{bias.dtype}")
        check_same_device(_OP, "bias", bias, device)
        bias = bias.to(input.dtype)
    offset, weight = offset.to(input.dtype), weight.to(input.dtype)

    tensors = (input, offset, weight) + tuple(t for t in (mask, bias) if t is not None)
    needs_grad = torch.is_grad_enabled() and any(tensor.requires_grad for tensor in tensors)
    native_ok = use_native(_OP, input) and (not needs_grad or native.has_kernel("deform_conv2d_backward",
                                                                                 device.type))
    if native_ok:
        output = torch.ops.maskrcnn_multi.deform_conv2d(input, weight, offset, mask, bias, *stride, *padding,
                                                        *dilation, groups, offset_groups)
    else:
        output = reference.deform_conv2d(input, offset, weight, bias, stride, padding, dilation, groups,
                                         offset_groups, mask)
    # The kernels sample from a contiguous copy; the result takes the input's layout back so a
    # channels_last network has no reorder after this layer.
    if channels > 1 and input.stride(1) == 1:
        output = output.contiguous(memory_format=torch.channels_last)
    return output
