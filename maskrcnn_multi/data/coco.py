"""COCO-format datasets: load a COCO instances JSON into detectron2's dataset dicts and register it.

A dataset dict is ``{"file_name", "height", "width", "image_id", "annotations": [{"bbox",
"bbox_mode": BoxMode.XYWH_ABS, "category_id" (contiguous 0..K-1), "segmentation", "iscrowd"}]}``.
Segmentations are kept as COCO has them: a list of polygons, or an RLE dict (uncompressed RLE
is converted to compressed RLE).
"""
import contextlib
import io
import json
import logging
import os
from typing import Dict, List, Optional

import pycocotools.mask as mask_util
from pycocotools.coco import COCO

from ..structures import BoxMode
from .catalog import DatasetCatalog, MetadataCatalog, datasets_root

__all__ = ["DatasetError", "read_coco_json", "load_coco_json", "register_coco_instances", "register_coco_2017"]

logger = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A dataset file or record is unusable; the message names the file and the record."""


def read_coco_json(json_file: str) -> COCO:
    """Parse a COCO JSON into a pycocotools ``COCO`` index, with one-line errors naming the file."""
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"annotation file not found: {json_file}")
    with open(json_file, "r", encoding="utf-8") as stream:
        try:
            dataset = json.load(stream)
        except json.JSONDecodeError as error:
            raise DatasetError(
                f"{json_file}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
            ) from None
    if not isinstance(dataset, dict):
        raise DatasetError(f"{json_file}: expected a JSON object with 'images', got {type(dataset).__name__}")
    for key in ("images", "categories"):
        if not isinstance(dataset.get(key), list):
            raise DatasetError(f"{json_file}: missing or non-list '{key}'")
    dataset.setdefault("annotations", [])
    coco_api = COCO()
    coco_api.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress
        coco_api.createIndex()
    return coco_api


def _check_categories(coco_api: COCO, json_file: str) -> None:
    known_ids = set(coco_api.cats)
    for annotation in coco_api.dataset["annotations"]:
        if annotation.get("category_id") not in known_ids:
            raise DatasetError(
                f"{json_file}: annotation {annotation.get('id')} has category_id "
                f"{annotation.get('category_id')!r}, not among the categories {sorted(known_ids)}"
            )


def _convert_segmentation(segmentation, annotation_id, json_file: str, dropped_polygons: List):
    """Return the annotation's segmentation in detectron2's form, or None if nothing valid is left."""
    if isinstance(segmentation, dict):
        if "counts" not in segmentation or "size" not in segmentation:
            raise DatasetError(f"{json_file}: annotation {annotation_id} has an RLE without 'counts'/'size'")
        if isinstance(segmentation["counts"], list):  # uncompressed RLE
            segmentation = mask_util.frPyObjects(segmentation, *segmentation["size"])
        if isinstance(segmentation["counts"], bytes):
            segmentation = dict(segmentation, counts=segmentation["counts"].decode("ascii"))
        return segmentation
    if not isinstance(segmentation, list):
        raise DatasetError(
            f"{json_file}: annotation {annotation_id} has a segmentation of type "
            f"{type(segmentation).__name__} (expected polygons or RLE)"
        )
    valid = []
    for polygon in segmentation:
        if isinstance(polygon, list) and len(polygon) % 2 == 0 and len(polygon) >= 6:
            valid.append([float(value) for value in polygon])
        else:
            dropped_polygons.append(annotation_id)
    return valid or None


def _convert_annotation(annotation: dict, id_map: Dict[int, int], json_file: str, counters: Dict) -> Optional[dict]:
    """One COCO annotation -> detectron2's annotation dict, or None when it has to be dropped."""
    annotation_id = annotation.get("id")
    if annotation.get("ignore", 0) != 0:
        return None
    bbox = annotation.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise DatasetError(f"{json_file}: annotation {annotation_id} has bbox {bbox!r} (expected [x, y, w, h])")
    if bbox[2] <= 0 or bbox[3] <= 0:
        counters["empty_boxes"].append(annotation_id)
        return None
    record = {
        "bbox": [float(value) for value in bbox],
        "bbox_mode": BoxMode.XYWH_ABS,
        "category_id": id_map[annotation["category_id"]],
        "iscrowd": int(annotation.get("iscrowd", 0)),
    }
    if "segmentation" in annotation:
        segmentation = _convert_segmentation(
            annotation["segmentation"], annotation_id, json_file, counters["dropped_polygons"]
        )
        if segmentation is None:
            counters["no_valid_segmentation"].append(annotation_id)
            return None
        record["segmentation"] = segmentation
    return record


def _log_dropped(json_file: str, counters: Dict) -> None:
    messages = {
        "empty_boxes": "annotations with zero or negative box size",
        "dropped_polygons": "polygons with fewer than 3 points",
        "no_valid_segmentation": "annotations left without a valid polygon",
    }
    for key, what in messages.items():
        ids = counters[key]
        if ids:
            shown = ", ".join(str(annotation_id) for annotation_id in ids[:10])
            more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
            logger.warning("%s: dropped %d %s (annotation ids: %s%s)", json_file, len(ids), what, shown, more)


def load_coco_json(json_file: str, image_root: str, dataset_name: Optional[str] = None) -> List[dict]:
    """Load a COCO instances JSON into a list of detectron2 dataset dicts.

    Category ids are mapped to contiguous ids 0..K-1 in the order of the sorted COCO ids; with
    ``dataset_name`` the metadata (thing_classes, thing_dataset_id_to_contiguous_id, json_file,
    image_root) is recorded in MetadataCatalog. Bad records raise ``DatasetError`` naming the file and
    the annotation; dropped annotations/polygons are logged once per file with their ids.
    """
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"image root not found: {image_root} (images of {json_file})")
    coco_api = read_coco_json(json_file)
    _check_categories(coco_api, json_file)
    category_ids = sorted(coco_api.getCatIds())
    id_map = {category_id: index for index, category_id in enumerate(category_ids)}
    if dataset_name is not None:
        MetadataCatalog.get(dataset_name).set(
            thing_classes=[coco_api.cats[category_id]["name"] for category_id in category_ids],
            thing_dataset_id_to_contiguous_id=id_map,
            json_file=json_file,
            image_root=image_root,
            evaluator_type="coco",
        )
    annotation_ids = [annotation.get("id") for annotation in coco_api.dataset["annotations"]]
    if len(set(annotation_ids)) != len(annotation_ids):
        raise DatasetError(f"{json_file}: annotation ids are not unique")

    counters = {"empty_boxes": [], "dropped_polygons": [], "no_valid_segmentation": []}
    dataset_dicts = []
    for image_id in sorted(coco_api.imgs):
        image = coco_api.imgs[image_id]
        for key in ("file_name", "height", "width"):
            if key not in image:
                raise DatasetError(f"{json_file}: image {image_id} has no '{key}'")
        annotations = []
        for annotation in coco_api.imgToAnns.get(image_id, []):
            record = _convert_annotation(annotation, id_map, json_file, counters)
            if record is not None:
                annotations.append(record)
        dataset_dicts.append(
            {
                "file_name": os.path.join(image_root, image["file_name"]),
                "height": int(image["height"]),
                "width": int(image["width"]),
                "image_id": image_id,
                "annotations": annotations,
            }
        )
    _log_dropped(json_file, counters)
    logger.info("Loaded %d images in COCO format from %s", len(dataset_dicts), json_file)
    return dataset_dicts


def register_coco_instances(name: str, metadata: dict, json_file: str, image_root: str, *,
                            replace: bool = False) -> None:
    """Register a COCO instances dataset under ``name`` (loaded lazily by DatasetCatalog.get).
    With ``replace`` an earlier registration of ``name`` (data and metadata) is dropped first."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset name must be a non-empty string, got {name!r}")
    if replace:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco", **metadata)


def register_coco_2017(root: Optional[str] = None) -> None:
    """Register coco_2017_train / coco_2017_val from a COCO 2017 layout.

    ``root`` (default ``<datasets_root()>/coco``) holds ``annotations/instances_{train,val}2017.json``,
    ``train2017/`` and ``val2017/``. Replaces earlier registrations of these names.
    """
    root = root if root is not None else os.path.join(datasets_root(), "coco")
    for split in ("train", "val"):
        register_coco_instances(
            f"coco_2017_{split}",
            {},
            os.path.join(root, "annotations", f"instances_{split}2017.json"),
            os.path.join(root, f"{split}2017"),
            replace=True,
        )
