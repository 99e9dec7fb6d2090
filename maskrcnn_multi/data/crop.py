"""INPUT.CROP: detectron2's RandomCrop (crop types relative, relative_range, absolute,
absolute_range) and the CropTransform it returns, which crops images, boxes and polygons.

Polygons are clipped to the crop window (Sutherland-Hodgman against its four sides: exact for the
convex window, so the clipped region, and the mask rasterized from it, is the part of the object
inside the crop); a polygon left with under three points is dropped, and an instance left with no
polygon is then removed by the mapper as empty.
"""
from typing import List, Sequence, Tuple

import numpy as np

from maskrcnn_multi.config.errors import UserError

from .transforms import Transform, TransformGen

__all__ = ["CropTransform", "RandomCrop", "CROP_TYPES", "clip_polygon"]

CROP_TYPES = ("relative_range", "relative", "absolute", "absolute_range")


def clip_polygon(polygon: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """(N, 2) polygon clipped to the box [x0, x1] x [y0, y1]; (M, 2), possibly with M < 3."""
    points = np.asarray(polygon, dtype=np.float64)
    # each side: (coordinate axis, bound, keep the side where coordinate >= bound (True) or <=)
    for axis, bound, keep_above in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):
        if len(points) == 0:
            break
        inside = points[:, axis] >= bound if keep_above else points[:, axis] <= bound
        clipped = []
        for index in range(len(points)):
            current, previous = points[index], points[index - 1]
            if inside[index] != inside[index - 1]:  # the edge crosses the side: keep the crossing
                t = (bound - previous[axis]) / (current[axis] - previous[axis])
                clipped.append(previous + t * (current - previous))
            if inside[index]:
                clipped.append(current)
        points = np.array(clipped, dtype=np.float64).reshape(-1, 2)
    return points


class CropTransform(Transform):
    """Keep the window of ``w`` x ``h`` pixels whose top-left corner is (``x0``, ``y0``)."""

    def __init__(self, x0: int, y0: int, w: int, h: int):
        self.x0, self.y0, self.w, self.h = int(x0), int(y0), int(w), int(h)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return img[self.y0:self.y0 + self.h, self.x0:self.x0 + self.w]

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return np.asarray(coords, dtype=np.float64) - np.array([self.x0, self.y0], dtype=np.float64)

    def apply_polygons(self, polygons: List[np.ndarray]) -> List[np.ndarray]:
        window = (self.x0, self.y0, self.x0 + self.w, self.y0 + self.h)
        clipped = (clip_polygon(polygon, *window) for polygon in polygons)
        return [self.apply_coords(polygon) for polygon in clipped if len(polygon) >= 3]


class RandomCrop(TransformGen):
    """A random window of a size given by ``crop_type`` (detectron2's rules):

    - ``relative``: (h * crop_size[0], w * crop_size[1]), fractions in (0, 1];
    - ``relative_range``: each fraction drawn uniformly in [crop_size[i], 1];
    - ``absolute``: crop_size pixels (at most the image);
    - ``absolute_range``: each side drawn in [crop_size[0], crop_size[1]] pixels (at most the image).
    """

    def __init__(self, crop_type: str, crop_size: Sequence[float]):
        if crop_type not in CROP_TYPES:
            raise UserError(f"unknown INPUT.CROP.TYPE {crop_type!r} (choose from: {', '.join(CROP_TYPES)})")
        crop_size = tuple(crop_size)
        if len(crop_size) != 2 or min(crop_size) <= 0:
            raise UserError(f"INPUT.CROP.SIZE must be two positive numbers, got {crop_size!r}")
        if crop_type in ("relative", "relative_range") and max(crop_size) > 1:
            raise UserError(f"INPUT.CROP.SIZE {crop_size!r} must be fractions in (0, 1] for crop type {crop_type!r}")
        if crop_type == "absolute_range" and crop_size[0] > crop_size[1]:
            raise UserError(f"INPUT.CROP.SIZE {crop_size!r} must be (min, max) for crop type 'absolute_range'")
        self.crop_type = crop_type
        self.crop_size = crop_size

    def get_crop_size(self, image_size: Tuple[int, int]) -> Tuple[int, int]:
        """(crop height, crop width) for an image of (h, w)."""
        h, w = image_size
        if self.crop_type == "relative":
            ch, cw = self.crop_size
            return int(h * ch + 0.5), int(w * cw + 0.5)
        if self.crop_type == "relative_range":
            crop_size = np.asarray(self.crop_size, dtype=np.float32)
            ch, cw = crop_size + np.random.rand(2) * (1 - crop_size)
            return int(h * ch + 0.5), int(w * cw + 0.5)
        if self.crop_type == "absolute":
            return min(int(self.crop_size[0]), h), min(int(self.crop_size[1]), w)
        low, high = int(self.crop_size[0]), int(self.crop_size[1])
        return np.random.randint(min(h, low), min(h, high) + 1), np.random.randint(min(w, low), min(w, high) + 1)

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        crop_h, crop_w = self.get_crop_size((h, w))
        y0 = np.random.randint(h - crop_h + 1)
        x0 = np.random.randint(w - crop_w + 1)
        return CropTransform(x0, y0, crop_w, crop_h)
