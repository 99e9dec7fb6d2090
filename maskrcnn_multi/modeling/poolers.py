"""Multi-level RoI pooling over an FPN (detectron2's ``ROIPooler``)."""
import math
from typing import List, Sequence, Tuple, Union

import torch
from torch import nn

from maskrcnn_multi.config.errors import UserError
from maskrcnn_multi.ops import roi_align
from maskrcnn_multi.structures import Boxes

__all__ = ["ROIAlign", "ROIPooler", "assign_boxes_to_levels", "convert_boxes_to_pooler_format"]


class ROIAlign(nn.Module):
    """RoIAlign on one feature map; ``aligned=True`` shifts boxes by -0.5 pixel (detectron2's ROIAlignV2)."""

    def __init__(self, output_size: Tuple[int, int], spatial_scale: float, sampling_ratio: int, aligned: bool = True):
        super().__init__()
        self.output_size = tuple(output_size)
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """features: Tensor[N, C, H, W]; rois: Tensor[K, 5] (batch index, x0, y0, x1, y1) -> Tensor[K, C, oh, ow]."""
        # rois stay as they are: ops.roi_align pools half precision in float32, and bf16/fp16 box
        # coordinates would snap to 4 px / 0.5 px steps near 800
        return roi_align(features, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")


def assign_boxes_to_levels(
    box_lists: List[Boxes], min_level: int, max_level: int, canonical_box_size: int, canonical_level: int
) -> torch.Tensor:
    """FPN's level rule: ``floor(canonical_level + log2(sqrt(area) / canonical_box_size))``, clamped.

    Returns LongTensor[total boxes]: level index relative to ``min_level`` (0 = the finest map pooled).
    """
    box_sizes = torch.sqrt(torch.cat([boxes.area() for boxes in box_lists]))
    # 1e-8 keeps log2 finite for empty boxes
    levels = torch.floor(canonical_level + torch.log2(box_sizes / canonical_box_size + 1e-8))
    levels = torch.clamp(levels, min=min_level, max=max_level)
    return levels.to(torch.int64) - min_level


def convert_boxes_to_pooler_format(box_lists: List[Boxes]) -> torch.Tensor:
    """Per-image Boxes -> Tensor[K, 5] of (image index, x0, y0, x1, y1)."""
    boxes = torch.cat([b.tensor for b in box_lists], dim=0)
    sizes = torch.tensor([len(b) for b in box_lists], device=boxes.device)
    image_indices = torch.repeat_interleave(torch.arange(len(box_lists), dtype=boxes.dtype, device=boxes.device), sizes)
    return torch.cat([image_indices[:, None], boxes], dim=1)


_POOLER_TYPES = {"ROIAlign": False, "ROIAlignV2": True}


class ROIPooler(nn.Module):
    """Pool each box from the feature map its size calls for.

    Args:
        output_size: side (or (h, w)) of the pooled features.
        scales: 1 / stride of each feature map, finest first; each a power of 1/2.
        sampling_ratio: RoIAlign's samples per bin side (0: adaptive).
        pooler_type: "ROIAlign" (legacy, aligned=False) or "ROIAlignV2" (aligned=True).
        canonical_box_size, canonical_level: a box of this side goes to this level (224 -> P4).
    """

    def __init__(
        self,
        output_size: Union[int, Tuple[int, int]],
        scales: Sequence[float],
        sampling_ratio: int,
        pooler_type: str,
        canonical_box_size: int = 224,
        canonical_level: int = 4,
    ):
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        if len(output_size) != 2:
            raise ValueError(f"ROIPooler: output_size must be an int or a pair, got {output_size}")
        self.output_size = tuple(int(side) for side in output_size)
        if pooler_type not in _POOLER_TYPES:
            raise UserError(f"unknown pooler type '{pooler_type}' (choose from: {', '.join(_POOLER_TYPES)})")
        self.level_poolers = nn.ModuleList(
            ROIAlign(self.output_size, spatial_scale=scale, sampling_ratio=sampling_ratio,
                     aligned=_POOLER_TYPES[pooler_type])
            for scale in scales
        )
        min_level = -math.log2(scales[0])
        max_level = -math.log2(scales[-1])
        if not (math.isclose(min_level, round(min_level)) and math.isclose(max_level, round(max_level))):
            raise ValueError(f"ROIPooler: scales must be powers of 1/2, got {list(scales)}")
        self.min_level, self.max_level = int(round(min_level)), int(round(max_level))
        if len(scales) != self.max_level - self.min_level + 1:
            raise ValueError(f"ROIPooler: scales {list(scales)} must cover consecutive pyramid levels")
        if canonical_box_size <= 0:
            raise ValueError(f"ROIPooler: canonical_box_size must be positive, got {canonical_box_size}")
        self.canonical_level = canonical_level
        self.canonical_box_size = canonical_box_size

    def forward(self, features: List[torch.Tensor], box_lists: List[Boxes]) -> torch.Tensor:
        """Pool.

        Args:
            features: one Tensor[N, C, Hl, Wl] per level, finest first.
            box_lists: N Boxes, in input-image coordinates.
        Returns Tensor[total boxes, C, oh, ow], boxes in the order of the image list.
        """
        num_levels = len(self.level_poolers)
        if len(features) != num_levels:
            raise ValueError(f"ROIPooler built for {num_levels} feature maps, got {len(features)}")
        if len(box_lists) != features[0].size(0):
            raise ValueError(f"ROIPooler: {len(box_lists)} box lists for a batch of {features[0].size(0)} images")
        if len(box_lists) == 0:
            return features[0].new_zeros((0, features[0].shape[1]) + self.output_size)

        pooler_boxes = convert_boxes_to_pooler_format(box_lists)
        if num_levels == 1:
            return self.level_poolers[0](features[0], pooler_boxes)

        levels = assign_boxes_to_levels(box_lists, self.min_level, self.max_level,
                                        self.canonical_box_size, self.canonical_level)
        channels = features[0].shape[1]
        # the features' layout (channels_last on the fast path), so no copy back to NCHW
        channels_last = features[0].is_contiguous(memory_format=torch.channels_last) and not features[0].is_contiguous()
        # every box belongs to exactly one level (assign_boxes_to_levels clamps), so every row is written
        output = torch.empty((pooler_boxes.size(0), channels) + self.output_size, dtype=features[0].dtype,
                             device=features[0].device,
                             memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        for level, pooler in enumerate(self.level_poolers):
            indices = torch.nonzero(levels == level, as_tuple=True)[0]
            output.index_put_((indices,), pooler(features[level], pooler_boxes[indices]))
        return output
