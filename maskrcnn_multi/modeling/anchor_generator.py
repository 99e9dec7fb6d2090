"""Anchors over the feature maps of a backbone (detectron2's ``DefaultAnchorGenerator``)."""
import math
from typing import Dict, List, Sequence

import torch
from torch import nn

from maskrcnn_multi.config.configurable import configurable
from maskrcnn_multi.modeling.registry import Registry
from maskrcnn_multi.config.errors import UserError
from maskrcnn_multi.structures import Boxes

__all__ = ["DefaultAnchorGenerator", "generate_cell_anchors", "build_anchor_generator", "ANCHOR_GENERATORS",
           "ANCHOR_GENERATOR_REGISTRY"]


class BufferList(nn.Module):
    """Tensors that follow ``.to()`` but stay out of the state dict (buffers named "0", "1", ...)."""

    def __init__(self, buffers: List[torch.Tensor]):
        super().__init__()
        for index, buffer in enumerate(buffers):
            self.register_buffer(str(index), buffer, persistent=False)

    def __len__(self) -> int:
        return len(self._buffers)

    def __iter__(self):
        return iter(self._buffers.values())


def generate_cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> torch.Tensor:
    """Anchors centred on (0, 0): for each size, for each aspect ratio (h / w), area ``size**2``.

    Returns Tensor[len(sizes) * len(aspect_ratios), 4] float32 x0y0x1y1 (not rounded, as detectron2).
    """
    anchors = []
    for size in sizes:
        area = size ** 2.0
        for aspect_ratio in aspect_ratios:
            width = math.sqrt(area / aspect_ratio)
            height = aspect_ratio * width
            anchors.append([-width / 2.0, -height / 2.0, width / 2.0, height / 2.0])
    return torch.tensor(anchors, dtype=torch.float32)


def _broadcast_params(params, num_features: int, name: str) -> List[List[float]]:
    """One list of ``name`` per feature map: a flat list or a single inner list is shared by all."""
    if not isinstance(params, Sequence) or len(params) == 0:
        raise UserError(f"ANCHOR_GENERATOR.{name.upper()} must be a non-empty list, got {params!r}")
    if not isinstance(params[0], Sequence):
        return [list(params)] * num_features
    if len(params) == 1:
        return [list(params[0])] * num_features
    if len(params) != num_features:
        raise UserError(f"ANCHOR_GENERATOR.{name.upper()} has {len(params)} lists for {num_features} feature maps")
    return [list(p) for p in params]


class DefaultAnchorGenerator(nn.Module):
    """Anchors of several sizes and aspect ratios at every position of every feature map.

    Args:
        sizes: per feature map, the anchor sizes (sqrt of area) in input pixels.
        aspect_ratios: per feature map, the ratios height / width.
        strides: the stride of each feature map.
        offset: where the anchor centre lies within a cell, in [0, 1) (0: the cell's top-left corner).
    """

    box_dim: int = 4

    @configurable
    def __init__(self, sizes, aspect_ratios, strides: Sequence[int], offset: float = 0.5):
        super().__init__()
        if not 0.0 <= offset < 1.0:
            raise UserError(f"ANCHOR_GENERATOR.OFFSET must be in [0, 1), got {offset}")
        self.strides = list(strides)
        self.num_features = len(self.strides)
        sizes = _broadcast_params(sizes, self.num_features, "sizes")
        aspect_ratios = _broadcast_params(aspect_ratios, self.num_features, "aspect_ratios")
        self.cell_anchors = BufferList([generate_cell_anchors(s, a) for s, a in zip(sizes, aspect_ratios)])
        self.offset = offset

    @classmethod
    def from_config(cls, cfg, input_shape) -> Dict:
        return {
            "sizes": cfg.MODEL.ANCHOR_GENERATOR.SIZES,
            "aspect_ratios": cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS,
            "strides": [shape.stride for shape in input_shape],
            "offset": cfg.MODEL.ANCHOR_GENERATOR.OFFSET,
        }

    @property
    def num_cell_anchors(self) -> List[int]:
        return self.num_anchors

    @property
    def num_anchors(self) -> List[int]:
        """Anchors per spatial position of each feature map."""
        return [len(cell_anchors) for cell_anchors in self.cell_anchors]

    def _grid_anchors(self, grid_sizes: List[Sequence[int]]) -> List[torch.Tensor]:
        anchors = []
        for (grid_height, grid_width), stride, base_anchors in zip(grid_sizes, self.strides, self.cell_anchors):
            options = {"dtype": torch.float32, "device": base_anchors.device}
            shifts_x = torch.arange(self.offset * stride, grid_width * stride, step=stride, **options)
            shifts_y = torch.arange(self.offset * stride, grid_height * stride, step=stride, **options)
            shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
            shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
            anchors.append((shifts.view(-1, 1, 4) + base_anchors.view(1, -1, 4)).reshape(-1, 4))
        return anchors

    def forward(self, features: List[torch.Tensor]) -> List[Boxes]:
        """Anchors of each feature map Tensor[N, C, Hi, Wi]: a list of Boxes with Hi * Wi * A boxes each,
        ordered (y, x, anchor)."""
        if len(features) != self.num_features:
            raise ValueError(f"anchor generator built for {self.num_features} feature maps, got {len(features)}")
        grid_sizes = [feature.shape[-2:] for feature in features]
        return [Boxes(anchors) for anchors in self._grid_anchors(grid_sizes)]


ANCHOR_GENERATORS = Registry("MODEL.ANCHOR_GENERATOR.NAME", DefaultAnchorGenerator)
ANCHOR_GENERATOR_REGISTRY = ANCHOR_GENERATORS  # detectron2's name for the table


def build_anchor_generator(cfg, input_shape) -> nn.Module:
    """The anchor generator named by MODEL.ANCHOR_GENERATOR.NAME, for the feature maps' ShapeSpecs."""
    return ANCHOR_GENERATORS.get(cfg.MODEL.ANCHOR_GENERATOR.NAME)(cfg, input_shape)
