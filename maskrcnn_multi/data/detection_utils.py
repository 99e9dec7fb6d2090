"""Per-image helpers shared by the mapper: read an image, build augmentations, make ``Instances``.

Semantics follow detectron2's ``detection_utils`` so a dataset dict maps to the same tensors.
"""
import logging
from typing import List, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch

from ..config.errors import UserError, short_repr
from ..structures import BitMasks, Boxes, BoxMode, Instances, PolygonMasks, polygons_to_bitmask
from .image_io import BadImageError, read_image
from .transforms import RandomFlip, ResizeShortestEdge, Transform, TransformGen
from .validation import DatasetError, coordinates_problem

__all__ = [
    "BadImageError",
    "read_image",
    "check_image_size",
    "check_annotation_values",
    "build_augmentation",
    "transform_instance_annotations",
    "annotations_to_instances",
    "filter_empty_instances",
]

logger = logging.getLogger(__name__)


def check_image_size(dataset_dict: dict, image: np.ndarray) -> None:
    """Raise ``BadImageError`` if the image's size differs from the dict's "height"/"width"."""
    height, width = image.shape[:2]
    expected = (dataset_dict.get("height", height), dataset_dict.get("width", width))
    if expected != (height, width):
        swapped = " (swapped: does the file's EXIF orientation rotate it?)" if expected == (width, height) else ""
        raise BadImageError(
            f"image {dataset_dict.get('file_name')} is {width}x{height} (WxH) but its annotation "
            f"says {expected[1]}x{expected[0]}{swapped}"
        )
    dataset_dict.setdefault("height", height)
    dataset_dict.setdefault("width", width)


def check_annotation_values(annotations: Sequence[dict], file_name: str) -> None:
    """Raise ``DatasetError`` naming ``file_name`` and the annotation when a bbox is not 4 finite
    numbers or a polygon holds a non-number, NaN or infinity (the COCO loader drops those with a
    counted warning; a dataset from another loader reaches the mapper with them)."""
    for index, annotation in enumerate(annotations):
        where = f"{file_name}: annotation #{index}"
        bbox = annotation.get("bbox")
        problem = coordinates_problem(list(bbox) if isinstance(bbox, tuple) else bbox, expected_length=4)
        if problem is not None:
            raise DatasetError(f"{where} has bbox {short_repr(bbox)}: {_PROBLEMS[problem]}")
        segmentation = annotation.get("segmentation")
        if isinstance(segmentation, list):
            for polygon in segmentation:
                problem = coordinates_problem(polygon)
                if problem is not None:
                    raise DatasetError(f"{where} has polygon {short_repr(polygon)}: {_PROBLEMS[problem]}")


_PROBLEMS = {
    "not numbers": "expected numbers",
    "wrong length": "expected 4 numbers",
    "not finite": "a coordinate is NaN or infinite",
}


def build_augmentation(cfg, is_train: bool) -> List[TransformGen]:
    """ResizeShortestEdge from INPUT.MIN/MAX_SIZE_*, plus RandomFlip in training (detectron2's default)."""
    if is_train:
        min_size, max_size = cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN
        sample_style = cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
    else:
        min_size, max_size, sample_style = cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice"
    augmentations: List[TransformGen] = [ResizeShortestEdge(min_size, max_size, sample_style)]
    flip = cfg.INPUT.get("RANDOM_FLIP", "horizontal")
    if is_train and flip != "none":
        if flip != "horizontal":
            raise UserError(f"INPUT.RANDOM_FLIP {flip!r} is not supported (choose from: horizontal, none)")
        augmentations.append(RandomFlip(prob=0.5))
    return augmentations


def transform_instance_annotations(annotation: dict, transforms: Transform, image_size: Tuple[int, int]) -> dict:
    """Apply ``transforms`` to one annotation's box and segmentation, in place; returns it.

    The box becomes XYXY_ABS clipped to ``image_size`` (h, w); polygons stay flat coordinate arrays;
    an RLE becomes a transformed HxW uint8 mask.
    """
    bbox = BoxMode.convert(list(annotation["bbox"]), annotation["bbox_mode"], BoxMode.XYXY_ABS)
    bbox = transforms.apply_box(np.array([bbox], dtype=np.float64))[0].clip(min=0)
    height, width = image_size
    annotation["bbox"] = np.minimum(bbox, [width, height, width, height])
    annotation["bbox_mode"] = BoxMode.XYXY_ABS
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, list):
        polygons = [np.asarray(polygon, dtype=np.float64).reshape(-1, 2) for polygon in segmentation]
        annotation["segmentation"] = [polygon.reshape(-1) for polygon in transforms.apply_polygons(polygons)]
    elif isinstance(segmentation, dict):
        annotation["segmentation"] = transforms.apply_segmentation(mask_util.decode(segmentation))
    return annotation


def _to_bitmask(segmentation, image_size: Tuple[int, int]) -> np.ndarray:
    height, width = image_size
    if isinstance(segmentation, list):
        return polygons_to_bitmask(segmentation, height, width)
    if isinstance(segmentation, dict):
        return mask_util.decode(segmentation).astype(bool)
    if isinstance(segmentation, np.ndarray) and segmentation.shape == (height, width):
        return segmentation.astype(bool)
    raise ValueError(f"segmentation of type {type(segmentation).__name__} cannot be made an {height}x{width} mask")


def annotations_to_instances(annotations: Sequence[dict], image_size: Tuple[int, int], mask_format: str = "polygon") -> Instances:
    """Transformed annotations of one image -> ``Instances(gt_boxes, gt_classes[, gt_masks])``.

    gt_boxes: Boxes float32 (N, 4) XYXY clipped to image_size; gt_classes: int64 (N,); gt_masks:
    PolygonMasks (mask_format "polygon") or BitMasks bool (N, H, W) ("bitmask"), only when every
    annotation has a "segmentation".
    """
    boxes = np.array(
        [BoxMode.convert(list(obj["bbox"]), obj["bbox_mode"], BoxMode.XYXY_ABS) for obj in annotations],
        dtype=np.float32,
    ).reshape(-1, 4)
    instances = Instances(image_size)
    gt_boxes = Boxes(torch.from_numpy(boxes))
    gt_boxes.clip(image_size)
    instances.gt_boxes = gt_boxes
    instances.gt_classes = torch.tensor([int(obj["category_id"]) for obj in annotations], dtype=torch.int64)
    if len(annotations) and all("segmentation" in obj for obj in annotations):
        segmentations = [obj["segmentation"] for obj in annotations]
        if mask_format == "polygon":
            for segmentation in segmentations:
                if not isinstance(segmentation, list):
                    raise UserError(
                        f"INPUT.MASK_FORMAT 'polygon' cannot hold a {type(segmentation).__name__} "
                        "segmentation (use INPUT.MASK_FORMAT bitmask for RLE masks)"
                    )
            instances.gt_masks = PolygonMasks(segmentations)
        elif mask_format == "bitmask":
            masks = [torch.from_numpy(np.ascontiguousarray(_to_bitmask(s, image_size))) for s in segmentations]
            instances.gt_masks = BitMasks(torch.stack(masks))
        else:
            raise UserError(f"unknown INPUT.MASK_FORMAT {mask_format!r} (choose from: polygon, bitmask)")
    return instances


def filter_empty_instances(instances: Instances, box_threshold: float = 1e-5) -> Tuple[Instances, int]:
    """Drop instances whose box side is <= box_threshold or whose mask is empty.

    Returns (kept instances, number dropped).
    """
    keep = instances.gt_boxes.nonempty(threshold=box_threshold)
    if instances.has("gt_masks"):
        keep &= instances.gt_masks.nonempty()
    return instances[keep], int((~keep).sum())
