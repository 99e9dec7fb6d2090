"""Drawing the synthetic shapes set: images, polygons and the COCO JSON of each split.

Same scheme as the reference set the detectron2 baseline was trained on: JPEG images with 1..4 flat
coloured shapes on a noisy linear-gradient background, polygon masks (rectangle 4 points, ellipse 32,
triangle 3), categories 1 rectangle, 2 ellipse, 3 triangle. Shapes do not overlap, so every polygon is
the exact visible mask. Output is a pure function of the seed (byte-identical JSON and images).

Layout: ``<root>/annotations/instances_{train,val}.json``, ``<root>/train/*.jpg``, ``<root>/val/*.jpg``.
"""
import json
import logging
import math
import os
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["CATEGORIES", "SPLITS", "check_generation_arguments", "generate_shapes_dataset"]

logger = logging.getLogger(__name__)

CATEGORIES = [{"id": 1, "name": "rectangle"}, {"id": 2, "name": "ellipse"}, {"id": 3, "name": "triangle"}]
SPLITS = ("train", "val")
_ELLIPSE_POINTS = 32
_MIN_COLOUR_DISTANCE = 120  # L1 distance (0..765) between a shape and the background under it
_PLACEMENT_TRIES = 30


def _shape_outline(category_id: int, size: float, rng: np.random.Generator) -> np.ndarray:
    """(K, 2) polygon of one shape centred on the origin; ``size`` is its nominal diameter."""
    angle = rng.uniform(0.0, math.pi)
    if category_id == 1:
        half_w, half_h = 0.5 * size * rng.uniform(0.55, 1.0), 0.5 * size * rng.uniform(0.55, 1.0)
        outline = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]])
    elif category_id == 2:
        theta = np.linspace(0.0, 2 * math.pi, _ELLIPSE_POINTS, endpoint=False)
        semi_major, semi_minor = 0.5 * size, 0.5 * size * rng.uniform(0.45, 1.0)
        outline = np.stack([semi_major * np.cos(theta), semi_minor * np.sin(theta)], axis=1)
    else:
        theta = np.array([0.0, 2 * math.pi / 3, 4 * math.pi / 3]) + rng.uniform(-0.35, 0.35, size=3)
        radius = 0.5 * size * rng.uniform(0.8, 1.0, size=3)
        outline = np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return outline @ rotation.T


def _background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """HxWx3 float image: a linear gradient between two random colours plus Gaussian noise."""
    start, end = rng.uniform(30, 225, size=3), rng.uniform(30, 225, size=3)
    direction = rng.uniform(0.0, 2 * math.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    projection = xs * math.cos(direction) + ys * math.sin(direction)
    ramp = (projection - projection.min()) / max(float(np.ptp(projection)), 1e-6)
    image = start + ramp[:, :, None] * (end - start)
    return image + rng.normal(0.0, 3.0, size=image.shape)


def _pick_colour(under: np.ndarray, rng: np.random.Generator) -> Tuple[int, int, int]:
    """A fill colour at least _MIN_COLOUR_DISTANCE (L1) from the background colour ``under``."""
    colour = rng.integers(0, 256, size=3)
    for _ in range(50):
        if np.abs(colour - under).sum() >= _MIN_COLOUR_DISTANCE:
            break
        colour = rng.integers(0, 256, size=3)
    return tuple(int(channel) for channel in colour)


def _boxes_touch(box: Sequence[float], others: List[Sequence[float]], margin: float = 2.0) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < o[2] + margin and o[0] < x1 + margin and y0 < o[3] + margin and o[1] < y1 + margin for o in others)


def _place_shapes(height: int, width: int, rng: np.random.Generator, max_shapes: int) -> List[Tuple[int, np.ndarray]]:
    """Non-overlapping (category_id, (K, 2) polygon) pairs inside the image."""
    placed, boxes = [], []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        category_id = int(rng.integers(1, len(CATEGORIES) + 1))
        for _ in range(_PLACEMENT_TRIES):
            size = rng.uniform(0.12, 0.5) * min(height, width)
            outline = _shape_outline(category_id, size, rng)
            low, high = outline.min(axis=0), outline.max(axis=0)
            if (high - low)[0] >= width - 2 or (high - low)[1] >= height - 2:
                continue
            centre_x = rng.uniform(1 - low[0], width - 1 - high[0])
            centre_y = rng.uniform(1 - low[1], height - 1 - high[1])
            polygon = np.round(outline + [centre_x, centre_y], 2)
            box = [*polygon.min(axis=0), *polygon.max(axis=0)]
            if not _boxes_touch(box, boxes):
                placed.append((category_id, polygon))
                boxes.append(box)
                break
    return placed


def _polygon_area(polygon: np.ndarray) -> float:
    xs, ys = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


def _render_image(height: int, width: int, rng: np.random.Generator, max_shapes: int):
    """One image (uint8 HxWx3 RGB) and its shapes as (category_id, polygon) pairs."""
    image = _background(height, width, rng)
    shapes = _place_shapes(height, width, rng, max_shapes)
    pil_image = Image.fromarray(np.clip(np.round(image), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil_image)
    for _, polygon in shapes:
        centre_x, centre_y = polygon.mean(axis=0)
        under = image[min(int(centre_y), height - 1), min(int(centre_x), width - 1)]
        draw.polygon([(float(x), float(y)) for x, y in polygon], fill=_pick_colour(under, rng))
    return pil_image, shapes


def _generate_split(root: str, split: str, num_images: int, rng: np.random.Generator,
                    image_size: Tuple[int, int], max_shapes: int) -> dict:
    """Write ``root/split/*.jpg`` and return the split's COCO dict."""
    os.makedirs(os.path.join(root, split), exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        height = int(rng.integers(image_size[0], image_size[1] + 1))
        width = int(rng.integers(image_size[0], image_size[1] + 1))
        pil_image, shapes = _render_image(height, width, rng, max_shapes)
        file_name = f"{split}_{image_id:05d}.jpg"
        pil_image.save(os.path.join(root, split, file_name), format="JPEG", quality=95)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for category_id, polygon in shapes:
            low, high = polygon.min(axis=0), polygon.max(axis=0)
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": category_id,
                "iscrowd": 0,
                "bbox": [round(float(v), 2) for v in (low[0], low[1], high[0] - low[0], high[1] - low[1])],
                "area": round(_polygon_area(polygon), 2),
                "segmentation": [[float(v) for v in polygon.reshape(-1)]],
            })
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def check_generation_arguments(num_train: int, num_val: int, seed: int, image_size: Sequence[int],
                               max_shapes: int = 4) -> None:
    """ValueError naming the argument unless the set can be generated from these."""
    if num_train < 0 or num_val < 0:
        raise ValueError(f"image counts must be >= 0, got num_train={num_train}, num_val={num_val}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if len(image_size) != 2 or not (0 < image_size[0] <= image_size[1]):
        raise ValueError(f"image_size must be (min, max) with 0 < min <= max, got {tuple(image_size)}")
    if min(image_size) < 32:
        raise ValueError(f"image_size {tuple(image_size)} is too small for shapes (min side 32)")
    if max_shapes < 1:
        raise ValueError(f"max_shapes must be >= 1, got {max_shapes}")


def generate_shapes_dataset(root: str, num_train: int = 400, num_val: int = 40, seed: int = 0,
                            image_size: Tuple[int, int] = (256, 320), max_shapes: int = 4) -> str:
    """Write the synthetic set into ``root`` (created if needed) and return ``root``.

    Each image's height and width are drawn uniformly in ``image_size = (min, max)``; each split has its
    own random stream from ``seed``, so the val split does not depend on ``num_train``.
    """
    check_generation_arguments(num_train, num_val, seed, image_size, max_shapes)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for split_index, (split, count) in enumerate(zip(SPLITS, (num_train, num_val))):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), split_index]))
        coco = _generate_split(root, split, count, rng, tuple(image_size), max_shapes)
        with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w", encoding="utf-8") as stream:
            json.dump(coco, stream)
        logger.debug("Wrote %d %s images with %d shapes to %s", count, split, len(coco["annotations"]), root)
    return root


