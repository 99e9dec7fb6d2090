"""A stand-in for torch_npu: records every call and computes on the CPU in float64.

Only what the NPU backend uses exists. The ops follow the contracts of the real ones:
- npu_nms_v4: TensorFlow NonMaxSuppressionV4 (scores strictly above `scores_threshold`, suppress
  IoU > `iou_threshold`, zero-area boxes suppress nothing); selected indices int32 padded with 0 to
  `max_output_size` (so a caller that forgets to slice by `valid_outputs` is caught), valid int32 0-d.
- npu_roi_align / npu_roi_alignbk: float32 only; roi_end_mode as CANN's reference implementation
  defines it (0 / 2 = torchvision aligned False / True, 1 = TF SAME, 3 = MMDetection). Computed
  independently of maskrcnn_multi.ops (a layer to the right of backends): each RoI's bilinear
  sampling is separable into a row matrix and a column matrix, so forward and backward are matmuls.
"""
import contextlib
import math
import types

import torch


def make_fake_torch_npu(available: bool = True, device_count: int = 2) -> types.ModuleType:
    """A fresh fake `torch_npu` module; `module.calls` lists (name, args, kwargs) in call order."""
    module = types.ModuleType("torch_npu")
    module.calls = []

    def recorder(name, result=None):
        def call(*args, **kwargs):
            module.calls.append((name, args, kwargs))
            return result(*args, **kwargs) if callable(result) else result
        return call

    npu = types.ModuleType("torch_npu.npu")
    npu.is_available = recorder("npu.is_available", available)
    npu.device_count = recorder("npu.device_count", device_count)
    npu.set_device = recorder("npu.set_device")
    npu.synchronize = recorder("npu.synchronize")
    npu.memory_allocated = recorder("npu.memory_allocated", 3 * 2**20)
    npu.max_memory_allocated = recorder("npu.max_memory_allocated", 5 * 2**20)
    npu.memory_reserved = recorder("npu.memory_reserved", 8 * 2**20)
    npu.reset_peak_memory_stats = recorder("npu.reset_peak_memory_stats")
    npu.manual_seed = recorder("npu.manual_seed")
    npu.manual_seed_all = recorder("npu.manual_seed_all")
    npu.matmul = types.SimpleNamespace(allow_hf32=False)  # torch_npu's defaults
    npu.conv = types.SimpleNamespace(allow_hf32=True)
    npu.amp = types.SimpleNamespace(autocast=recorder("npu.amp.autocast", lambda **kw: contextlib.nullcontext()))
    module.npu = npu

    module.npu_nms_v4 = recorder("npu_nms_v4", _nms_v4)
    module.npu_roi_align = recorder("npu_roi_align", _roi_align)
    module.npu_roi_alignbk = recorder("npu_roi_alignbk", _roi_align_backward)
    _rename_privateuse1()
    return module


def _rename_privateuse1():
    """What torch_npu does, so torch.device("npu:0") parses (no tensor can live there); and, as it
    does, a `torch.npu` device module, without which torch.accelerator (e.g. in torch.optim.AdamW)
    fails for the rest of the process. This one says no device is there."""
    try:
        torch.utils.rename_privateuse1_backend("npu")
    except RuntimeError:
        pass  # already renamed in this process
    if getattr(torch, "npu", None) is None:
        placeholder = types.ModuleType("torch.npu")
        placeholder.is_available = lambda: False
        placeholder.device_count = lambda: 0
        placeholder._is_in_bad_fork = lambda: False  # torch.manual_seed asks these of a device module
        placeholder.manual_seed_all = lambda seed: None
        torch._register_device_module("npu", placeholder)


def _nms_v4(boxes, scores, max_output_size, iou_threshold, scores_threshold, pad_to_max_output_size=False):
    assert isinstance(iou_threshold, torch.Tensor) and iou_threshold.dim() == 0
    assert isinstance(scores_threshold, torch.Tensor) and scores_threshold.dim() == 0
    boxes64, scores64 = boxes.double(), scores.double()
    threshold = float(iou_threshold)
    order = [i for i in torch.argsort(scores64, descending=True, stable=True).tolist()
             if scores64[i] > float(scores_threshold)]
    x0 = torch.minimum(boxes64[:, 0], boxes64[:, 2])
    x1 = torch.maximum(boxes64[:, 0], boxes64[:, 2])
    y0 = torch.minimum(boxes64[:, 1], boxes64[:, 3])
    y1 = torch.maximum(boxes64[:, 1], boxes64[:, 3])
    areas = (x1 - x0) * (y1 - y0)
    inter = ((torch.minimum(x1[:, None], x1[None]) - torch.maximum(x0[:, None], x0[None])).clamp(min=0)
             * (torch.minimum(y1[:, None], y1[None]) - torch.maximum(y0[:, None], y0[None])).clamp(min=0))
    iou = inter / (areas[:, None] + areas[None] - inter)
    positive = areas > 0
    overlaps = ((iou > threshold) & positive[:, None] & positive[None]).tolist()
    selected = []
    for i in order:
        if len(selected) == int(max_output_size):
            break
        if not any(overlaps[i][j] for j in selected):
            selected.append(i)
    padded = selected + [0] * (int(max_output_size) - len(selected))
    return (torch.tensor(padded, dtype=torch.int32),
            torch.tensor(len(selected), dtype=torch.int32))


def _sampling_matrix(start, size, bins, grid, limit):
    """(bins, limit) float64 matrix: row p sums the bilinear weights of bin p's samples along one axis,
    each sample multiplied by validity along this axis (the other axis's factor is separate)."""
    matrix = torch.zeros(bins, limit, dtype=torch.float64)
    bin_size = size / bins
    for p in range(bins):
        for i in range(grid):
            coord = start + p * bin_size + (i + 0.5) * bin_size / grid
            if coord < -1.0 or coord > limit:
                continue
            coord = max(coord, 0.0)
            low = int(coord)
            if low >= limit - 1:
                low = high = limit - 1
                coord = float(low)
            else:
                high = low + 1
            frac = coord - low
            matrix[p, low] += 1.0 - frac
            matrix[p, high] += frac
    return matrix


def _roi_matrices(roi, spatial_scale, pooled_height, pooled_width, sample_num, roi_end_mode, height, width):
    x0, y0, x1, y1 = (float(v) * spatial_scale for v in roi[1:])
    if roi_end_mode == 1:
        x1, y1 = x1 + spatial_scale, y1 + spatial_scale
    elif roi_end_mode in (2, 3):
        x0, y0, x1, y1 = x0 - 0.5, y0 - 0.5, x1 - 0.5, y1 - 0.5
    roi_w, roi_h = x1 - x0, y1 - y0
    if roi_end_mode != 2:  # torchvision clamps only when not aligned; CANN modes 1 and 3 clamp too
        roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
    grid_h = sample_num if sample_num > 0 else math.ceil(roi_h / pooled_height)
    grid_w = sample_num if sample_num > 0 else math.ceil(roi_w / pooled_width)
    count = max(grid_h * grid_w, 1)
    rows = _sampling_matrix(y0, roi_h, pooled_height, grid_h, height)
    cols = _sampling_matrix(x0, roi_w, pooled_width, grid_w, width)
    return rows, cols, count


def _roi_align(features, rois, spatial_scale, pooled_height, pooled_width, sample_num, roi_end_mode):
    assert features.dtype == torch.float32 and rois.dtype == torch.float32, "NPU ROIAlign is float32 only"
    assert rois.dim() == 2 and rois.shape[1] == 5, "rois must be (K, 5)"
    _, channels, height, width = features.shape
    output = torch.zeros(rois.shape[0], channels, pooled_height, pooled_width, dtype=torch.float64)
    for k, roi in enumerate(rois.tolist()):
        rows, cols, count = _roi_matrices(
            roi, spatial_scale, pooled_height, pooled_width, sample_num, roi_end_mode, height, width)
        output[k] = rows @ features[int(roi[0])].double() @ cols.T / count
    return output.float()


def _roi_align_backward(grad, rois, xdiff_shape, pooled_width, pooled_height, spatial_scale,
                        sample_num, roi_end_mode=None):
    assert grad.dtype == torch.float32 and rois.dtype == torch.float32, "NPU ROIAlignGrad is float32 only"
    assert tuple(grad.shape[2:]) == (pooled_height, pooled_width), "pooled_width / pooled_height swapped"
    batch, channels, height, width = xdiff_shape
    grad_input = torch.zeros(batch, channels, height, width, dtype=torch.float64)
    for k, roi in enumerate(rois.tolist()):
        rows, cols, count = _roi_matrices(
            roi, spatial_scale, pooled_height, pooled_width, sample_num, roi_end_mode, height, width)
        grad_input[int(roi[0])] += rows.T @ grad[k].double() @ cols / count
    return grad_input.float()
