"""Axis-aligned boxes (detectron2's ``Boxes``, ``BoxMode``, ``pairwise_iou``)."""
from __future__ import annotations

from enum import IntEnum
from typing import Iterator, List, Tuple, Union

import numpy as np
import torch

_RawBoxType = Union[List[float], Tuple[float, ...], torch.Tensor, np.ndarray]


class BoxMode(IntEnum):
    """How a box's 4 numbers are laid out; the values equal detectron2's so dataset dicts interoperate."""

    XYXY_ABS = 0
    XYWH_ABS = 1
    XYXY_REL = 2
    XYWH_REL = 3
    XYWHA_ABS = 4

    @staticmethod
    def convert(box: _RawBoxType, from_mode: "BoxMode", to_mode: "BoxMode") -> _RawBoxType:
        """Convert one box (4 numbers) or an ``(N, 4)`` array/tensor between XYXY_ABS and XYWH_ABS.

        Returns the same container type as ``box`` (list, tuple, ndarray or Tensor).
        """
        from_mode, to_mode = BoxMode(from_mode), BoxMode(to_mode)
        if from_mode == to_mode:
            return box
        supported = (BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
        for mode in (from_mode, to_mode):
            if mode not in supported:
                raise NotImplementedError(f"BoxMode.convert: {mode.name} is not supported (choose from: XYXY_ABS, XYWH_ABS)")

        original_type = type(box)
        is_numpy = isinstance(box, np.ndarray)
        single_box = isinstance(box, (list, tuple))
        if single_box:
            if len(box) != 4:
                raise ValueError(f"BoxMode.convert: a single box needs 4 numbers, got {len(box)}: {box}")
            arr = torch.tensor(box)[None, :]
        elif is_numpy:
            arr = torch.from_numpy(np.asarray(box)).clone()
        else:
            arr = box.clone()

        if from_mode == BoxMode.XYWH_ABS:
            arr[:, 2] += arr[:, 0]
            arr[:, 3] += arr[:, 1]
        else:
            arr[:, 2] -= arr[:, 0]
            arr[:, 3] -= arr[:, 1]

        if single_box:
            return original_type(arr.flatten().tolist())
        if is_numpy:
            return arr.numpy()
        return arr


class Boxes:
    """A list of N boxes stored as a float32 ``Tensor[N, 4]`` of ``(x0, y0, x1, y1)``."""

    def __init__(self, tensor: Union[torch.Tensor, np.ndarray, list]):
        if not isinstance(tensor, torch.Tensor):
            tensor = torch.as_tensor(tensor, dtype=torch.float32)
        else:
            tensor = tensor.to(torch.float32)
        if tensor.numel() == 0:
            # reshape instead of view: an empty tensor may not be contiguous
            tensor = tensor.reshape((-1, 4)).to(dtype=torch.float32)
        if tensor.dim() != 2 or tensor.size(-1) != 4:
            raise ValueError(f"Boxes expects a Tensor[N, 4], got shape {tuple(tensor.shape)}")
        self.tensor = tensor

    def clone(self) -> "Boxes":
        return Boxes(self.tensor.clone())

    def to(self, *args, **kwargs) -> "Boxes":
        return Boxes(self.tensor.to(*args, **kwargs))

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    def area(self) -> torch.Tensor:
        """``Tensor[N]``: ``(x1 - x0) * (y1 - y0)`` (no +1, may be negative for inverted boxes)."""
        box = self.tensor
        return (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])

    def clip(self, box_size: Tuple[int, int]) -> None:
        """Clip in place to ``[0, width] x [0, height]`` where ``box_size = (height, width)``."""
        if not torch.isfinite(self.tensor).all():
            raise ValueError("Boxes.clip: the boxes tensor contains infinite or NaN values")
        h, w = box_size
        x1 = self.tensor[:, 0].clamp(min=0, max=w)
        y1 = self.tensor[:, 1].clamp(min=0, max=h)
        x2 = self.tensor[:, 2].clamp(min=0, max=w)
        y2 = self.tensor[:, 3].clamp(min=0, max=h)
        self.tensor = torch.stack((x1, y1, x2, y2), dim=-1)

    def nonempty(self, threshold: float = 0.0) -> torch.Tensor:
        """``BoolTensor[N]``: True where both width and height exceed ``threshold``."""
        box = self.tensor
        widths = box[:, 2] - box[:, 0]
        heights = box[:, 3] - box[:, 1]
        return (widths > threshold) & (heights > threshold)

    def __getitem__(self, item) -> "Boxes":
        """Index with an int, a slice, a BoolTensor[N] or an index tensor; always returns ``Boxes``."""
        if isinstance(item, int):
            return Boxes(self.tensor[item].view(1, -1))
        selected = self.tensor[item]
        if selected.dim() != 2:
            raise IndexError(f"indexing Boxes with {item} gave a tensor of shape {tuple(selected.shape)}, not (K, 4)")
        return Boxes(selected)

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __repr__(self) -> str:
        return "Boxes(" + str(self.tensor) + ")"

    def inside_box(self, box_size: Tuple[int, int], boundary_threshold: int = 0) -> torch.Tensor:
        """``BoolTensor[N]``: boxes inside ``(height, width)`` allowing ``boundary_threshold`` pixels outside."""
        height, width = box_size
        return (
            (self.tensor[..., 0] >= -boundary_threshold)
            & (self.tensor[..., 1] >= -boundary_threshold)
            & (self.tensor[..., 2] < width + boundary_threshold)
            & (self.tensor[..., 3] < height + boundary_threshold)
        )

    def get_centers(self) -> torch.Tensor:
        """``Tensor[N, 2]`` of ``(x, y)`` centers."""
        return (self.tensor[:, :2] + self.tensor[:, 2:]) / 2

    def scale(self, scale_x: float, scale_y: float) -> None:
        """Scale x coordinates by ``scale_x`` and y coordinates by ``scale_y``, in place."""
        self.tensor[:, 0::2] *= scale_x
        self.tensor[:, 1::2] *= scale_y

    @classmethod
    def cat(cls, boxes_list: List["Boxes"]) -> "Boxes":
        """Concatenate a list of ``Boxes``; an empty list gives empty Boxes."""
        if not isinstance(boxes_list, (list, tuple)):
            raise TypeError(f"Boxes.cat expects a list of Boxes, got {type(boxes_list).__name__}")
        if len(boxes_list) == 0:
            return cls(torch.empty(0, 4))
        for item in boxes_list:
            if not isinstance(item, Boxes):
                raise TypeError(f"Boxes.cat expects Boxes items, got {type(item).__name__}")
        return cls(torch.cat([b.tensor for b in boxes_list], dim=0))

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Yield each box as a ``Tensor[4]``."""
        yield from self.tensor


def pairwise_intersection(boxes1: Boxes, boxes2: Boxes) -> torch.Tensor:
    """``Tensor[N, M]``: intersection area of every pair (0 for disjoint pairs)."""
    boxes1, boxes2 = boxes1.tensor, boxes2.tensor
    width_height = torch.min(boxes1[:, None, 2:], boxes2[:, 2:]) - torch.max(boxes1[:, None, :2], boxes2[:, :2])
    width_height.clamp_(min=0)
    return width_height.prod(dim=2)


def pairwise_iou(boxes1: Boxes, boxes2: Boxes) -> torch.Tensor:
    """``Tensor[N, M]`` IoU of every pair, exactly detectron2's: areas without +1, 0 where the boxes don't overlap.

    Implemented here rather than with ``ops.box_iou``: torchvision's box_iou gives NaN where a zero-area box
    meets itself (0 / 0); detectron2 gives 0, and matchers rely on that.
    """
    area1 = boxes1.area()
    area2 = boxes2.area()
    inter = pairwise_intersection(boxes1, boxes2)
    return torch.where(
        inter > 0,
        inter / (area1[:, None] + area2 - inter),
        torch.zeros(1, dtype=inter.dtype, device=inter.device),
    )


def pairwise_ioa(boxes1: Boxes, boxes2: Boxes) -> torch.Tensor:
    """``Tensor[N, M]`` intersection over the area of ``boxes2`` (0 where the boxes don't overlap)."""
    area2 = boxes2.area()
    inter = pairwise_intersection(boxes1, boxes2)
    return torch.where(inter > 0, inter / area2, torch.zeros(1, dtype=inter.dtype, device=inter.device))
