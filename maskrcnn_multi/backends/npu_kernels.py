"""Ascend kernels for the maskrcnn_multi ops, mapped onto torch_npu's custom ops.

This module is the one place that knows torch_npu's op names and argument conventions (op-plugin's
`op_plugin_functions.yaml`); nms_v4 is marked "planned for deprecation" there, so when it goes, only
`nms` below changes. The functions take and return what the `maskrcnn_multi::` schemas say
(docs/ARCHITECTURE.md), and `register_kernels` registers them as the PrivateUse1 ("npu") kernels of
those schemas.

Conventions mapped here:
- `npu_nms_v4(boxes, scores, max_output_size, iou_threshold: Tensor, scores_threshold: Tensor,
  pad_to_max_output_size=False) -> (selected int32 [M], valid_outputs int32 0-d)`: TensorFlow's
  NonMaxSuppressionV4 (suppress IoU > threshold, as torchvision); we slice to `valid_outputs` and
  return int64 indices sorted by decreasing score.
- `npu_roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sample_num, roi_end_mode)`
  and `npu_roi_alignbk(grad, rois, xdiff_shape, pooled_width, pooled_height, spatial_scale,
  sample_num, roi_end_mode)` (note: width before height in the backward). rois (K, 5)
  [batch_index, x0, y0, x1, y1]; sample_num 0 = adaptive (our sampling_ratio <= 0); float32 only.
- roi_end_mode: CANN's reference implementation of the ROIAlign kernels defines 0 = torchvision
  aligned=False, 2 = torchvision aligned=True, 1 = TF "SAME" (end + 1 * spatial_scale),
  3 = MMDetection's (-0.5 shift but RoI size clamped to >= 1). So aligned=True maps to 2 (not 1).
  Older torch_npu contrib code uses 3, which differs from torchvision only for RoIs smaller than
  one feature cell; if a CANN release rejects 2, 3 is the fallback. Verify on hardware.
"""
from __future__ import annotations

import importlib
import logging
from typing import List, Sequence

import torch

logger = logging.getLogger(__name__)

# Our op name -> the torch_npu function implementing it.
NPU_OPS = {"nms": "npu_nms_v4", "roi_align": "npu_roi_align", "roi_align_backward": "npu_roi_alignbk"}
# torchvision's `aligned` flag -> CANN's roi_end_mode (see the module docstring).
ROI_END_MODE = {False: 0, True: 2}


def _torch_npu():
    return importlib.import_module("torch_npu")


def _npu_op(name: str):
    return getattr(_torch_npu(), NPU_OPS[name])


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """boxes (N, 4) x0y0x1y1, scores (N,) -> int64 (K,) indices kept, by decreasing score."""
    num_boxes = boxes.shape[0]
    if num_boxes == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    boxes32 = boxes.float()
    scores32 = scores.float()
    iou = torch.tensor(float(iou_threshold), dtype=torch.float32, device=boxes.device)
    # keep every box: TF keeps scores strictly above the threshold.
    min_score = torch.tensor(torch.finfo(torch.float32).min, dtype=torch.float32, device=boxes.device)
    selected, valid = _npu_op("nms")(boxes32, scores32, num_boxes, iou, min_score, False)
    return selected[: int(valid)].to(torch.int64)


def roi_align(
    input: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """input (N, C, H, W), rois (K, 5) -> (K, C, pooled_height, pooled_width) in input's dtype.

    Computed in float32 (the NPU kernel's only type); half inputs are cast there and back.
    """
    if rois.shape[0] == 0:
        return input.new_zeros((0, input.shape[1], pooled_height, pooled_width))
    output = _npu_op("roi_align")(
        input.float(),
        rois.float(),
        float(spatial_scale),
        int(pooled_height),
        int(pooled_width),
        _sample_num(sampling_ratio),
        ROI_END_MODE[bool(aligned)],
    )
    return output.to(input.dtype)


def roi_align_backward(
    grad: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    batch_size: int,
    channels: int,
    height: int,
    width: int,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """grad (K, C, ph, pw), rois (K, 5) -> d(loss)/d(input) (N, C, H, W) in grad's dtype."""
    input_shape = [int(batch_size), int(channels), int(height), int(width)]
    if rois.shape[0] == 0:
        return grad.new_zeros(input_shape)
    grad_input = _npu_op("roi_align_backward")(
        grad.float(),
        rois.float(),
        input_shape,
        int(pooled_width),
        int(pooled_height),
        float(spatial_scale),
        _sample_num(sampling_ratio),
        ROI_END_MODE[bool(aligned)],
    )
    return grad_input.to(grad.dtype)


def _sample_num(sampling_ratio: int) -> int:
    """Our sampling_ratio (<= 0: adaptive, torchvision's convention) -> CANN's sample_num (0: adaptive)."""
    return int(sampling_ratio) if sampling_ratio > 0 else 0


_KERNELS = {"nms": nms, "roi_align": roi_align, "roi_align_backward": roi_align_backward}


def register_kernels(namespace: str = "maskrcnn_multi", ops: Sequence[str] = tuple(_KERNELS)) -> List[str]:
    """Register our NPU functions as the PrivateUse1 kernels of `namespace::op`; return what was added.

    For the default namespace the native library (`backends.native`, which loads `_C` and so
    defines the schemas) is imported first; without it, or for an op whose schema is not defined,
    nothing is registered and the ops package uses its reference path. Registering twice is a no-op.
    """
    if namespace == "maskrcnn_multi":
        try:
            importlib.import_module("maskrcnn_multi.backends.native")
        except ImportError as error:
            logger.info("NPU kernels not registered: the native library is unavailable (%s)", error)
            return []
    added = []
    for op_name in ops:
        qualname = f"{namespace}::{op_name}"
        if not _schema_defined(namespace, op_name):
            logger.info("NPU kernel for %s not registered: no such schema", qualname)
            continue
        if torch._C._dispatch_has_kernel_for_dispatch_key(qualname, "PrivateUse1"):
            continue
        torch.library.impl(qualname, "PrivateUse1", _KERNELS[op_name])
        added.append(op_name)
    if added:
        logger.info("Registered NPU kernels for %s", ", ".join(f"{namespace}::{op}" for op in added))
    return added


def _schema_defined(namespace: str, op_name: str) -> bool:
    try:
        getattr(getattr(torch.ops, namespace), op_name)
    except (AttributeError, RuntimeError):
        return False
    return True
