"""Geometric transforms with detectron2's semantics (ResizeShortestEdge, RandomFlip, ...).

A *transform generator* (``ResizeShortestEdge``, ``RandomFlip``) looks at an image and returns a
deterministic *transform* (``ResizeTransform``, ``HFlipTransform``, ``NoOpTransform``) that can then
be applied identically to the image, its boxes, polygons and segmentation maps.

Randomness comes from numpy's global generator, exactly as detectron2 draws it, so that a seeded run
resizes and flips the same images the same way; each loader worker is seeded separately.
"""
import sys
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "Transform",
    "NoOpTransform",
    "ResizeTransform",
    "HFlipTransform",
    "TransformList",
    "TransformGen",
    "ResizeShortestEdge",
    "RandomFlip",
    "apply_transform_gens",
]

_PIL_TO_TORCH_MODE = {Image.NEAREST: "nearest", Image.BILINEAR: "bilinear", Image.BICUBIC: "bicubic"}


class Transform:
    """A deterministic transform of an image and the coordinates drawn on it.

    Subclasses implement ``apply_image`` and ``apply_coords``; boxes, polygons and segmentation maps
    are derived from those two.
    """

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """img: HxW or HxWxC array (uint8 or float). Returns the transformed array."""
        raise NotImplementedError

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """coords: float array (N, 2) of (x, y) in absolute pixels. Returns the transformed (N, 2)."""
        raise NotImplementedError

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """segmentation: HxW integer/bool map. Transformed like the image (nearest where resampled)."""
        return self.apply_image(segmentation)

    def apply_box(self, box: np.ndarray) -> np.ndarray:
        """box: (N, 4) XYXY_ABS. Returns the (N, 4) axis-aligned box enclosing the transformed corners."""
        corner_idxs = np.array([(0, 1), (2, 1), (0, 3), (2, 3)]).flatten()
        corners = np.asarray(box).reshape(-1, 4)[:, corner_idxs].reshape(-1, 2)
        corners = self.apply_coords(corners).reshape((-1, 4, 2))
        return np.concatenate((corners.min(axis=1), corners.max(axis=1)), axis=1)

    def apply_polygons(self, polygons: List[np.ndarray]) -> List[np.ndarray]:
        """polygons: list of (Ni, 2) arrays of (x, y). Returns the transformed list."""
        return [self.apply_coords(np.asarray(polygon, dtype=np.float64)) for polygon in polygons]

    def inverse(self) -> "Transform":
        """The transform that maps this one's output coordinates back (test-time augmentation)."""
        raise NotImplementedError(f"{type(self).__name__} has no inverse")

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({fields})"


class NoOpTransform(Transform):
    """The identity."""

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return img

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def inverse(self) -> Transform:
        return self


class ResizeTransform(Transform):
    """Resize an (h, w) image to (new_h, new_w), as detectron2's ResizeTransform.

    uint8 images go through PIL ``Image.resize`` (bilinear by default); other dtypes through
    ``F.interpolate`` with ``align_corners=False``, so the pixels equal detectron2's.
    """

    def __init__(self, h: int, w: int, new_h: int, new_w: int, interp: int = Image.BILINEAR):
        self.h, self.w, self.new_h, self.new_w, self.interp = h, w, new_h, new_w, interp

    def apply_image(self, img: np.ndarray, interp: int = None) -> np.ndarray:
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(
                f"ResizeTransform built for an image of {(self.h, self.w)} got one of {img.shape[:2]}"
            )
        interp = self.interp if interp is None else interp
        if img.dtype == np.uint8:
            return self._resize_with_pil(img, interp)
        return self._resize_with_torch(img, interp)

    def _resize_with_pil(self, img: np.ndarray, interp: int) -> np.ndarray:
        single_channel = img.ndim > 2 and img.shape[2] == 1
        pil_image = Image.fromarray(img[:, :, 0] if single_channel else img)
        resized = np.asarray(pil_image.resize((self.new_w, self.new_h), interp))
        return resized[:, :, None] if single_channel else resized

    def _resize_with_torch(self, img: np.ndarray, interp: int) -> np.ndarray:
        if any(stride < 0 for stride in img.strides):
            img = np.ascontiguousarray(img)
        tensor = torch.from_numpy(img)
        shape = list(tensor.shape)
        shape_4d = shape[:2] + [1] * (4 - len(shape)) + shape[2:]
        tensor = tensor.view(shape_4d).permute(2, 3, 0, 1)  # HW(C) -> NCHW
        mode = _PIL_TO_TORCH_MODE[interp]
        align_corners = None if mode == "nearest" else False
        tensor = F.interpolate(tensor, (self.new_h, self.new_w), mode=mode, align_corners=align_corners)
        shape[:2] = (self.new_h, self.new_w)
        return tensor.permute(2, 3, 0, 1).reshape(shape).numpy()

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.array(coords, dtype=np.float64, copy=True)
        coords[:, 0] = coords[:, 0] * (self.new_w * 1.0 / self.w)
        coords[:, 1] = coords[:, 1] * (self.new_h * 1.0 / self.h)
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation, interp=Image.NEAREST)

    def inverse(self) -> Transform:
        return ResizeTransform(self.new_h, self.new_w, self.h, self.w, self.interp)


class HFlipTransform(Transform):
    """Mirror an image of the given width left-right."""

    def __init__(self, width: int):
        self.width = width

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        # HxW or HxWxC: width is axis 1; NxHxWxC: axis -2
        return np.flip(img, axis=1 if img.ndim <= 3 else -2)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.array(coords, dtype=np.float64, copy=True)
        coords[:, 0] = self.width - coords[:, 0]
        return coords

    def inverse(self) -> Transform:
        return self


class TransformList(Transform):
    """Several transforms applied in order."""

    def __init__(self, transforms: Sequence[Transform]):
        flattened: List[Transform] = []
        for transform in transforms:
            if isinstance(transform, TransformList):
                flattened.extend(transform.transforms)
            elif not isinstance(transform, NoOpTransform):
                flattened.append(transform)
        self.transforms = flattened

    def _apply(self, method: str, value):
        for transform in self.transforms:
            value = getattr(transform, method)(value)
        return value

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self._apply("apply_image", img)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return self._apply("apply_coords", coords)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self._apply("apply_segmentation", segmentation)

    def apply_box(self, box: np.ndarray) -> np.ndarray:
        return self._apply("apply_box", box)

    def apply_polygons(self, polygons: List[np.ndarray]) -> List[np.ndarray]:
        return self._apply("apply_polygons", polygons)

    def inverse(self) -> "TransformList":
        return TransformList([transform.inverse() for transform in reversed(self.transforms)])

    def __len__(self) -> int:
        return len(self.transforms)

    def __iter__(self):
        return iter(self.transforms)

    def __getitem__(self, index: int) -> Transform:
        return self.transforms[index]


class TransformGen:
    """Looks at an image and returns the Transform to apply to it (detectron2's Augmentation)."""

    def get_transform(self, image: np.ndarray) -> Transform:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({fields})"


class ResizeShortestEdge(TransformGen):
    """Resize so the short edge is a sampled length, unless the long edge would pass ``max_size``.

    ``short_edge_length``: an int, or a tuple: with ``sample_style="range"`` a (min, max) pair sampled
    uniformly (inclusive), with ``"choice"`` a set of lengths one of which is picked. A length of 0
    means no resize.
    """

    def __init__(
        self,
        short_edge_length: Union[int, Sequence[int]],
        max_size: int = sys.maxsize,
        sample_style: str = "range",
        interp: int = Image.BILINEAR,
    ):
        if sample_style not in ("range", "choice"):
            raise ValueError(f"sample_style must be 'range' or 'choice', got {sample_style!r}")
        if isinstance(short_edge_length, int):
            short_edge_length = (short_edge_length, short_edge_length)
        short_edge_length = tuple(int(length) for length in short_edge_length)
        if sample_style == "range" and len(short_edge_length) != 2:
            raise ValueError(
                f"sample_style 'range' needs (min, max) short_edge_length, got {short_edge_length}"
            )
        self.short_edge_length = short_edge_length
        self.max_size = max_size
        self.sample_style = sample_style
        self.interp = interp

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        if self.sample_style == "range":
            size = np.random.randint(self.short_edge_length[0], self.short_edge_length[1] + 1)
        else:
            size = np.random.choice(self.short_edge_length)
        if size == 0:
            return NoOpTransform()
        new_h, new_w = self.get_output_shape(h, w, size, self.max_size)
        return ResizeTransform(h, w, new_h, new_w, self.interp)

    @staticmethod
    def get_output_shape(old_h: int, old_w: int, short_edge_length: int, max_size: int) -> Tuple[int, int]:
        """(new_h, new_w) for an (old_h, old_w) image: detectron2's rounding, int(x + 0.5)."""
        size = short_edge_length * 1.0
        scale = size / min(old_h, old_w)
        if old_h < old_w:
            new_h, new_w = size, scale * old_w
        else:
            new_h, new_w = scale * old_h, size
        if max(new_h, new_w) > max_size:
            scale = max_size * 1.0 / max(new_h, new_w)
            new_h, new_w = new_h * scale, new_w * scale
        return int(new_h + 0.5), int(new_w + 0.5)


class RandomFlip(TransformGen):
    """Flip horizontally (or vertically, not supported here) with probability ``prob``."""

    def __init__(self, prob: float = 0.5, horizontal: bool = True, vertical: bool = False):
        if not horizontal or vertical:
            raise ValueError("RandomFlip supports horizontal flips only (horizontal=True, vertical=False)")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomFlip prob must be in [0, 1], got {prob}")
        self.prob = prob

    def get_transform(self, image: np.ndarray) -> Transform:
        if np.random.uniform(0.0, 1.0) < self.prob:
            return HFlipTransform(image.shape[1])
        return NoOpTransform()


def apply_transform_gens(transform_gens: Sequence[TransformGen], image: np.ndarray):
    """Apply generators in order to ``image`` (HxW(xC) array).

    Returns (transformed image, TransformList of the transforms applied) so annotations can follow.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"apply_transform_gens expects a numpy image, got {type(image).__name__}")
    transforms = []
    for generator in transform_gens:
        transform = generator.get_transform(image)
        if not isinstance(transform, Transform):
            raise TypeError(f"{generator!r}.get_transform returned {type(transform).__name__}, not a Transform")
        image = transform.apply_image(image)
        transforms.append(transform)
    return image, TransformList(transforms)
