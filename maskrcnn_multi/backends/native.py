"""The compiled extension `maskrcnn_multi._C` and what it offers on each device.

`_C` declares every native op (`torch.ops.maskrcnn_multi.*`, schemas in docs/ARCHITECTURE.md) and
registers CPU kernels, plus CUDA ones when it was built with CUDA; the NPU backend adds PrivateUse1
kernels on the same schemas from Python. `maskrcnn_multi.ops` asks `has_kernel(op, device_type)` and
falls back to its pure-PyTorch reference when the answer is no.

Importing this module loads `_C` once. Without it (not built, or built for another torch) one warning
says so and every op runs its reference implementation.
"""
import functools
import importlib
import logging
from types import ModuleType
from typing import Optional

import torch

__all__ = ["NAMESPACE", "extension", "has_kernel"]

NAMESPACE = "maskrcnn_multi"

logger = logging.getLogger(__name__)

# device.type -> dispatch key, where the key is not simply the upper-cased type.
_DISPATCH_KEYS = {"meta": "Meta", "privateuseone": "PrivateUse1"}


@functools.lru_cache(maxsize=None)
def extension() -> Optional[ModuleType]:
    """The loaded `maskrcnn_multi._C`, or None (warned about once) when it cannot be imported."""
    try:
        module = importlib.import_module("maskrcnn_multi._C")
    except ImportError as error:
        logger.warning(
            "maskrcnn_multi._C is not available (%s); the pure-PyTorch reference ops are used. "
            "Build it with `pip install --no-build-isolation -e .`.", error)
        return None
    _register_roi_align_autograd()
    _register_deform_conv2d_autograd()
    _register_deform_conv2d_fake()
    return module


def _dispatch_key(device_type: str) -> str:
    if device_type == torch._C._get_privateuse1_backend_name():
        return "PrivateUse1"  # "npu" once torch_npu has renamed the PrivateUse1 backend
    if device_type == "npu":
        return "PrivateUse1"
    return _DISPATCH_KEYS.get(device_type, device_type.upper())


def has_kernel(op_name: str, device_type: str) -> bool:
    """Whether `maskrcnn_multi::<op_name>` has a kernel registered for `device_type` ("cpu", "cuda", "npu").

    Asked of the dispatcher on every call (not cached), so kernels registered later, such as the NPU
    backend's, are seen. False when the op is not defined at all (no `_C`).
    """
    extension()
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{op_name}", _dispatch_key(device_type))
    except RuntimeError:  # the operator does not exist
        return False


def _roi_align_setup_context(ctx, inputs, output) -> None:
    features, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.features_shape = tuple(features.shape)
    # The backward kernels lay the gradient out as the pooled gradient they are given (channels_last
    # when its channels are innermost); remembering the features' layout lets the backward hand them a
    # pooled gradient that makes the features' gradient come back in the features' own layout.
    ctx.channels_last = _channels_innermost(features)
    ctx.pooling = (spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)


def _channels_innermost(tensor: torch.Tensor) -> bool:
    """The kernels' layout rule for (N, C, H, W) tensors: channels_last when channels are innermost."""
    return tensor.dim() == 4 and tensor.shape[1] > 1 and tensor.stride(1) == 1


def _roi_align_backward(ctx, grad_pooled):
    (rois,) = ctx.saved_tensors
    spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = ctx.pooling
    batch_size, channels, height, width = ctx.features_shape
    # The pooled gradient is far smaller than the features' gradient, so it is the one converted when
    # the layouts differ (e.g. the box head's flatten gives a contiguous gradient of channels_last
    # features); any other layout goes to the kernel as it is.
    if ctx.channels_last != _channels_innermost(grad_pooled):
        grad_pooled = grad_pooled.contiguous(
            memory_format=torch.channels_last if ctx.channels_last else torch.contiguous_format)
    grad_features = torch.ops.maskrcnn_multi.roi_align_backward(
        grad_pooled, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height,
        width, sampling_ratio, aligned)
    # Gradients flow to the features only: rois are coordinates, the rest are settings.
    return grad_features, None, None, None, None, None, None


def _register_roi_align_autograd() -> None:
    """Make roi_align differentiable on every device: the formula calls the roi_align_backward op,
    which dispatches on the gradient's device like any other op."""
    torch.library.register_autograd(
        f"{NAMESPACE}::roi_align", _roi_align_backward, setup_context=_roi_align_setup_context)


def _deform_conv2d_setup_context(ctx, inputs, output) -> None:
    input, weight, offset, mask, bias = inputs[:5]
    ctx.save_for_backward(input, weight, offset, mask, bias)
    ctx.settings = tuple(inputs[5:])


def _deform_conv2d_backward(ctx, grad_output):
    input, weight, offset, mask, bias = ctx.saved_tensors
    grad_input, grad_weight, grad_offset, grad_mask, grad_bias = torch.ops.maskrcnn_multi.deform_conv2d_backward(
        grad_output, input, weight, offset, mask, bias, *ctx.settings)
    # An absent mask or bias has no gradient (the kernel returns an empty tensor for it).
    return ((grad_input, grad_weight, grad_offset, grad_mask if mask is not None else None,
             grad_bias if bias is not None else None) + (None,) * len(ctx.settings))


def _register_deform_conv2d_autograd() -> None:
    """deform_conv2d's gradients w.r.t. input, weight, offset, mask and bias through the
    deform_conv2d_backward op (a first derivative only), on whichever device its kernels run."""
    torch.library.register_autograd(
        f"{NAMESPACE}::deform_conv2d", _deform_conv2d_backward, setup_context=_deform_conv2d_setup_context)


def _deform_conv2d_fake(input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
                        groups, offset_groups):
    """The output's shape and dtype without computing it (what torch.compile traces with)."""
    out_height = (input.shape[2] + 2 * pad_h - dilation_h * (weight.shape[2] - 1) - 1) // stride_h + 1
    out_width = (input.shape[3] + 2 * pad_w - dilation_w * (weight.shape[3] - 1) - 1) // stride_w + 1
    return input.new_empty((input.shape[0], weight.shape[0], out_height, out_width))


def _deform_conv2d_backward_fake(grad, input, weight, offset, mask, bias, *settings):
    empty = input.new_empty((0,))
    return (torch.empty_like(input), torch.empty_like(weight), torch.empty_like(offset),
            torch.empty_like(mask) if mask is not None else empty,
            torch.empty_like(bias) if bias is not None else empty)


def _register_deform_conv2d_fake() -> None:
    """Shape functions, so a backbone with deformable blocks can be compiled (TEST.COMPILE)."""
    torch.library.register_fake(f"{NAMESPACE}::deform_conv2d", _deform_conv2d_fake)
    torch.library.register_fake(f"{NAMESPACE}::deform_conv2d_backward", _deform_conv2d_backward_fake)


extension()
