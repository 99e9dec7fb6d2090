"""One COCO annotation -> detectron2's annotation dict: what is dropped (counted), what is refused.

Dropped, counted per file and logged once with the annotation ids (`DropCounter.log`): a box with zero
or negative size, a box with a NaN or infinite coordinate, a polygon with fewer than 3 points or
with a NaN or infinite coordinate, an annotation left without a valid polygon. These are single
degenerate records (a converter's rounding, an empty object); the rest of the file is good.

Refused with `DatasetError` naming the file and the annotation: a bbox that is not 4 numbers (strings,
None, another length), a polygon holding something other than numbers, a segmentation that is
neither polygons nor RLE, an iscrowd that is not 0 or 1. These are the file's format being wrong,
which would repeat in every record, so dropping them would silently drop the dataset.
"""
import logging
from typing import Any, Dict, List, Optional

import pycocotools.mask as mask_util

from ..config.errors import short_repr
from ..structures import BoxMode
from .validation import DatasetError, coordinates_problem, is_real_number, positive_int

__all__ = ["DropCounter", "convert_annotation"]

logger = logging.getLogger("maskrcnn_multi.data.coco")  # the drops are part of loading a COCO file

_DROP_REASONS = {
    "unknown_image": "annotations whose image_id is not among the images",
    "nonfinite_boxes": "annotations with a NaN or infinite box coordinate",
    "empty_boxes": "annotations with zero or negative box size",
    "nonfinite_polygons": "polygons with a NaN or infinite coordinate",
    "dropped_polygons": "polygons with fewer than 3 points",
    "no_valid_segmentation": "annotations left without a valid polygon",
}
_SHOWN_IDS = 10


class DropCounter:
    """Annotation ids dropped from one file, by reason (the keys of ``_DROP_REASONS``)."""

    def __init__(self, json_file: str):
        self.json_file = json_file
        self.ids: Dict[str, List[Any]] = {reason: [] for reason in _DROP_REASONS}

    def add(self, reason: str, annotation_id: Any) -> None:
        self.ids[reason].append(annotation_id)

    def log(self, hint: str = "") -> None:
        """One warning line per reason that dropped something: the file, the count, the first ids."""
        for reason, what in _DROP_REASONS.items():
            ids = self.ids[reason]
            if not ids:
                continue
            shown = ", ".join(str(annotation_id) for annotation_id in ids[:_SHOWN_IDS])
            more = f" and {len(ids) - _SHOWN_IDS} more" if len(ids) > _SHOWN_IDS else ""
            extra = hint if reason == "unknown_image" else ""
            logger.warning("%s: dropped %d %s (annotation ids: %s%s)%s", self.json_file, len(ids), what, shown, more,
                           extra)


def _refuse(json_file: str, annotation_id: Any, what: str) -> DatasetError:
    return DatasetError(f"{json_file}: annotation {annotation_id} {what}")


def _convert_polygons(polygons: list, annotation_id: Any, json_file: str, drops: DropCounter) -> List[List[float]]:
    valid = []
    for polygon in polygons:
        if not isinstance(polygon, list):
            raise _refuse(json_file, annotation_id,
                          f"has a polygon {short_repr(polygon)} that is not a list of x, y numbers")
        problem = coordinates_problem(polygon)
        if problem == "not numbers":
            raise _refuse(json_file, annotation_id, f"has a polygon holding non-numbers: {short_repr(polygon)}")
        if problem == "not finite":
            drops.add("nonfinite_polygons", annotation_id)
        elif len(polygon) % 2 == 0 and len(polygon) >= 6:
            valid.append(list(map(float, polygon)))
        else:
            drops.add("dropped_polygons", annotation_id)
    return valid


def _compressed_rle_runs(counts: str) -> Optional[List[int]]:
    """The run lengths of COCO's compressed RLE string (pycocotools' rleFrString: 5 bits per character
    from '0', a continuation bit, a sign bit, runs from the third on stored as a delta to the run two
    before), or None when the string is not of that alphabet or ends inside a number."""
    runs: List[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                return None
            code = ord(counts[position]) - 48
            if not 0 <= code < 64:
                return None
            value |= (code & 0x1F) << (5 * shift)
            more = bool(code & 0x20)
            position += 1
            shift += 1
            if not more and code & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _convert_segmentation(segmentation: Any, annotation_id: Any, json_file: str, drops: DropCounter):
    """The annotation's segmentation in detectron2's form, or None if nothing valid is left."""
    if isinstance(segmentation, dict):
        if "counts" not in segmentation or "size" not in segmentation:
            raise _refuse(json_file, annotation_id, "has an RLE without 'counts'/'size'")
        size, counts = segmentation["size"], segmentation["counts"]
        if not (isinstance(size, list) and len(size) == 2 and all(positive_int(side) for side in size)):
            raise _refuse(json_file, annotation_id, f"has an RLE of size {short_repr(size)} (expected [height, width])")
        if isinstance(counts, list):  # uncompressed RLE: run lengths that add up to height * width
            if not all(positive_int(run) is not None or run == 0 for run in counts) or sum(counts) != size[0] * size[1]:
                raise _refuse(json_file, annotation_id, "has an uncompressed RLE whose counts do not add up to "
                                                        f"height x width = {size[0] * size[1]}")
            segmentation = mask_util.frPyObjects(segmentation, *size)
        elif not isinstance(counts, (str, bytes)):
            raise _refuse(json_file, annotation_id, f"has RLE counts of type {type(counts).__name__}")
        if isinstance(segmentation["counts"], bytes):
            segmentation = dict(segmentation, counts=segmentation["counts"].decode("ascii"))
        runs = _compressed_rle_runs(segmentation["counts"])
        if runs is None or min(runs, default=0) < 0 or sum(runs) != size[0] * size[1]:
            # pycocotools would read past the end or write past the mask: refuse before it decodes
            raise _refuse(json_file, annotation_id, "has a compressed RLE whose runs do not cover height x width "
                                                    f"= {size[0] * size[1]} pixels")
        return segmentation
    if not isinstance(segmentation, list):
        raise _refuse(json_file, annotation_id,
                      f"has a segmentation of type {type(segmentation).__name__} (expected polygons or RLE)")
    return _convert_polygons(segmentation, annotation_id, json_file, drops) or None


def _crowd_flag(annotation: dict, annotation_id: Any, json_file: str) -> int:
    value = annotation.get("iscrowd", 0)
    if (is_real_number(value) or isinstance(value, bool)) and value in (0, 1):
        return int(value)
    raise _refuse(json_file, annotation_id, f"has iscrowd {short_repr(value)} (expected 0 or 1)")


def convert_annotation(annotation: dict, id_map: Dict[Any, int], json_file: str,
                       drops: DropCounter) -> Optional[dict]:
    """One COCO annotation -> ``{"bbox", "bbox_mode", "category_id" (contiguous), "iscrowd"[,
    "segmentation"]}``, or None when it is dropped (counted in ``drops``)."""
    annotation_id = annotation.get("id")
    if annotation.get("ignore", 0) != 0:
        return None
    bbox = annotation.get("bbox")
    problem = coordinates_problem(bbox, expected_length=4) if isinstance(bbox, list) else "not numbers"
    if problem in ("not numbers", "wrong length"):
        raise _refuse(json_file, annotation_id, f"has bbox {short_repr(bbox)} (expected [x, y, width, height] numbers)")
    if problem == "not finite":
        drops.add("nonfinite_boxes", annotation_id)
        return None
    if bbox[2] <= 0 or bbox[3] <= 0:
        drops.add("empty_boxes", annotation_id)
        return None
    record = {
        "bbox": [float(value) for value in bbox],
        "bbox_mode": BoxMode.XYWH_ABS,
        "category_id": id_map[annotation["category_id"]],
        "iscrowd": _crowd_flag(annotation, annotation_id, json_file),
    }
    if "segmentation" in annotation:
        segmentation = _convert_segmentation(annotation["segmentation"], annotation_id, json_file, drops)
        if segmentation is None:
            drops.add("no_valid_segmentation", annotation_id)
            return None
        record["segmentation"] = segmentation
    return record
