"""RoIAlign (torchvision.ops.roi_align's signature and its C++ kernel's results), differentiable
w.r.t. the features on every device."""
from typing import List, Sequence, Tuple, Union

import torch
from torch import nn

from maskrcnn_multi.backends import native

from . import reference
from ._checks import check_boxes, check_int, check_number, check_same_device, check_tensor, compute_dtype, use_native

__all__ = ["roi_align", "RoIAlign"]

BoxesArg = Union[torch.Tensor, Sequence[torch.Tensor]]

_BOXES_FORMAT = "a Tensor[K, 5] (batch index, x0, y0, x1, y1) or a list of Tensor[Ki, 4] (one per image)"


def _output_size(output_size) -> Tuple[int, int]:
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in size):
        raise ValueError(f"roi_align: output_size must be a positive int or a pair of them, got {output_size!r}")
    return size


def _rois(boxes: BoxesArg, features: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(K, 5) rois of `dtype` from either accepted boxes format, validated."""
    if isinstance(boxes, torch.Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(f"roi_align: boxes must be {_BOXES_FORMAT}, got a tensor of shape {tuple(boxes.shape)}")
        check_same_device("roi_align", "boxes", boxes, features.device)
        return boxes.to(dtype)
    if not isinstance(boxes, (list, tuple)):
        raise TypeError(f"roi_align: boxes must be {_BOXES_FORMAT}, got {type(boxes).__name__}")
    if len(boxes) > features.shape[0]:
        raise ValueError(f"roi_align: {len(boxes)} box tensors for a batch of {features.shape[0]} images")
    per_image: List[torch.Tensor] = []
    for image_index, image_boxes in enumerate(boxes):
        check_boxes("roi_align", f"boxes[{image_index}]", image_boxes)
        check_same_device("roi_align", f"boxes[{image_index}]", image_boxes, features.device)
        batch_index = torch.full_like(image_boxes[:, :1], image_index, dtype=dtype)
        per_image.append(torch.cat([batch_index, image_boxes.to(dtype)], dim=1))
    if not per_image:
        return features.new_zeros((0, 5), dtype=dtype)
    return torch.cat(per_image, dim=0)


def roi_align(input: torch.Tensor, boxes: BoxesArg, output_size: Union[int, Tuple[int, int]],
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> torch.Tensor:
    """Bilinearly pool each box of `input` into a fixed-size grid (Mask R-CNN's RoIAlign).

    Args:
        input: (N, C, H, W) floating features in any layout; bf16 / fp16 are pooled with float32
            accumulation.
        boxes: (K, 5) [batch_index, x0, y0, x1, y1] or a list of N tensors (Ki, 4), in image coordinates.
        output_size: (pooled_height, pooled_width) or an int for both.
        spatial_scale: maps box coordinates onto `input` (1 / stride).
        sampling_ratio: samples per bin side; <= 0 means adaptive, ceil(roi_size / output_size).
        aligned: shift boxes by -0.5 pixel so pixel centres line up (detectron2's ROIAlignV2).
    Returns:
        (K, C, pooled_height, pooled_width) in input's dtype, channels_last when input's channels are
        its innermost dimension (a channels_last map gives a channels_last result, which the mask
        head's convolutions take as is; the box head's flatten makes its one copy), contiguous
        otherwise. Differentiable w.r.t. `input`; the gradient has input's dtype and layout.
    """
    check_tensor("roi_align", "input", input)
    if input.dim() != 4 or not input.dtype.is_floating_point:
        raise ValueError(f"roi_align: input must be a floating (N, C, H, W) tensor, got {tuple(input.shape)} "
                         f"{input.dtype}")
    pooled_height, pooled_width = _output_size(output_size)
    spatial_scale = check_number("roi_align", "spatial_scale", spatial_scale)
    sampling_ratio = check_int("roi_align", "sampling_ratio", sampling_ratio)
    aligned = bool(aligned)
    # The features go to the kernel as they are (any layout; bf16/fp16 are read directly and
    # accumulated in float32). Rois are coordinates, not parameters: no gradient flows to them (as
    # torchvision's kernel), and they stay in float32 for half features, where bf16 would snap
    # coordinates near 800 to 4 px steps.
    rois = _rois(boxes, input, compute_dtype(input.dtype)).detach()

    needs_grad = torch.is_grad_enabled() and input.requires_grad
    native_ok = use_native("roi_align", input) and (
        not needs_grad or native.has_kernel("roi_align_backward", input.device.type))
    arguments = (spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)
    if native_ok:
        return torch.ops.maskrcnn_multi.roi_align(input, rois, *arguments)
    return reference.roi_align(input, rois, *arguments)


class RoIAlign(nn.Module):
    """`roi_align` as a module with fixed settings; forward(input, rois) as roi_align(input, boxes)."""

    def __init__(self, output_size: Union[int, Tuple[int, int]], spatial_scale: float, sampling_ratio: int,
                 aligned: bool = False):
        super().__init__()
        self.output_size = _output_size(output_size)
        self.spatial_scale = check_number("RoIAlign", "spatial_scale", spatial_scale)
        self.sampling_ratio = check_int("RoIAlign", "sampling_ratio", sampling_ratio)
        self.aligned = bool(aligned)

    def forward(self, input: torch.Tensor, rois: BoxesArg) -> torch.Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")
