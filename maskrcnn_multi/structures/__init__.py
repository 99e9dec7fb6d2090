"""Boxes, instances, image batches and masks: detectron2's structures, device-agnostic."""
from .boxes import Boxes, BoxMode, pairwise_intersection, pairwise_ioa, pairwise_iou
from .image_list import ImageList
from .instances import Instances
from .masks import BitMasks, PolygonMasks, ROIMasks, polygons_to_bitmask, rasterize_polygons_within_box

__all__ = [
    "Boxes",
    "BoxMode",
    "pairwise_iou",
    "pairwise_ioa",
    "pairwise_intersection",
    "Instances",
    "ImageList",
    "PolygonMasks",
    "BitMasks",
    "ROIMasks",
    "polygons_to_bitmask",
    "rasterize_polygons_within_box",
]
