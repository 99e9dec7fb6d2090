"""A batch of images of different sizes padded into one tensor (detectron2's ``ImageList``)."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F


class ImageList:
    """``tensor``: ``Tensor[N, C, H, W]`` padded at the bottom/right; ``image_sizes``: each image's
    ``(h, w)`` before padding. ``len`` is N; ``image_list[i]`` is image i without its padding."""

    def __init__(self, tensor: torch.Tensor, image_sizes: List[Tuple[int, int]]):
        self.tensor = tensor
        self.image_sizes = image_sizes

    def __len__(self) -> int:
        return len(self.image_sizes)

    def __getitem__(self, idx: int) -> torch.Tensor:
        """``Tensor[C, h, w]``: image ``idx`` with the padding cut off."""
        size = self.image_sizes[idx]
        return self.tensor[idx, ..., : size[0], : size[1]]

    def to(self, *args, **kwargs) -> "ImageList":
        return ImageList(self.tensor.to(*args, **kwargs), self.image_sizes)

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    @staticmethod
    def from_tensors(
        tensors: Sequence[torch.Tensor],
        size_divisibility: int = 0,
        pad_value: float = 0.0,
        padding_constraints: Optional[Dict[str, int]] = None,
    ) -> "ImageList":
        """Pad ``tensors`` (each ``Tensor[..., H_i, W_i]``, equal leading dims) to a common size.

        The common size is the per-dimension max, raised to a multiple of ``size_divisibility`` when it
        is > 1. ``padding_constraints`` may hold ``square_size`` (pad to that square; > 0) and
        ``size_divisibility`` (overrides the argument), as detectron2's backbones report.
        Returns ``ImageList`` with ``tensor`` of shape ``(N, ..., H, W)``.
        """
        if not isinstance(tensors, (tuple, list)) or len(tensors) == 0:
            raise ValueError(f"ImageList.from_tensors expects a non-empty list of tensors, got {type(tensors).__name__}")
        for index, tensor in enumerate(tensors):
            if not isinstance(tensor, torch.Tensor):
                raise TypeError(f"ImageList.from_tensors: item {index} is a {type(tensor).__name__}, not a Tensor")
            if tensor.shape[:-2] != tensors[0].shape[:-2]:
                raise ValueError(
                    f"ImageList.from_tensors: item {index} has shape {tuple(tensor.shape)}, "
                    f"leading dims differ from item 0's {tuple(tensors[0].shape)}"
                )

        image_sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in tensors]
        max_size = [max(size[0] for size in image_sizes), max(size[1] for size in image_sizes)]

        if padding_constraints is not None:
            square_size = padding_constraints.get("square_size", 0)
            if square_size > 0:
                max_size = [square_size, square_size]
            if "size_divisibility" in padding_constraints:
                size_divisibility = padding_constraints["size_divisibility"]
        if size_divisibility > 1:
            stride = size_divisibility
            max_size = [(dim + stride - 1) // stride * stride for dim in max_size]

        if len(tensors) == 1:
            image_size = image_sizes[0]
            padding = [0, max_size[-1] - image_size[1], 0, max_size[-2] - image_size[0]]
            batched = F.pad(tensors[0], padding, value=pad_value).unsqueeze_(0)
        else:
            batch_shape = [len(tensors)] + list(tensors[0].shape[:-2]) + list(max_size)
            batched = tensors[0].new_full(batch_shape, pad_value)
            for i, image in enumerate(tensors):
                batched[i, ..., : image.shape[-2], : image.shape[-1]].copy_(image)
        return ImageList(batched.contiguous(), image_sizes)
