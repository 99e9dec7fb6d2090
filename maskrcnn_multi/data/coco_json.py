"""Read a COCO instances JSON into a pycocotools index, refusing what would break it, by name.

pycocotools indexes images, categories and annotations by their ids and fails with a bare KeyError
(or silently keeps the last of two records) when one is missing or repeated. Before indexing:
- refused (`DatasetError` naming the file and the record): a file that is not UTF-8 JSON, not an
  object, or lacks the `images` / `categories` lists; a record that is not an object; an image,
  category or annotation without an `id` or with one that is not a number or string; an id used
  twice; a category without a `name`; an annotation whose `category_id` is not a category. (COCO
  evaluation matches annotations by id, so records without one cannot simply be renumbered.)
- dropped, with one counted warning naming the file: annotations whose `image_id` is missing or not
  among the images (they belong to no image; a set cut out of a larger one often keeps some).
"""
import contextlib
import io
import json
import os
from collections import Counter
from typing import Any, Callable, Dict, List, Optional

from pycocotools.coco import COCO

from ..config.errors import short_repr
from .coco_annotations import DropCounter
from .validation import DatasetError, DatasetFileNotFoundError

__all__ = ["read_coco_json"]


def _valid_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _parse(json_file: str) -> dict:
    if not os.path.isfile(json_file):
        raise DatasetFileNotFoundError(f"annotation file not found: {json_file}")
    try:
        with open(json_file, "r", encoding="utf-8") as stream:
            dataset = json.load(stream)
    except json.JSONDecodeError as error:
        raise DatasetError(
            f"{json_file}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    except UnicodeDecodeError as error:
        raise DatasetError(f"{json_file}: not UTF-8 text (byte {error.start}): is it a JSON file?") from None
    if not isinstance(dataset, dict):
        raise DatasetError(f"{json_file}: expected a JSON object with 'images', got {type(dataset).__name__}")
    for key in ("images", "categories"):
        if not isinstance(dataset.get(key), list):
            raise DatasetError(f"{json_file}: missing or non-list '{key}'")
    dataset.setdefault("annotations", [])
    if not isinstance(dataset["annotations"], list):
        raise DatasetError(f"{json_file}: 'annotations' is a {type(dataset['annotations']).__name__}, not a list")
    return dataset


def _check_ids(records: List[Any], kind: str, json_file: str) -> None:
    """Every record is an object with a valid, unique 'id'."""
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DatasetError(f"{json_file}: {kind} #{index} is a {type(record).__name__}, not an object")
        if "id" not in record:
            raise DatasetError(f"{json_file}: {kind} #{index} has no 'id' (every {kind} needs a unique one)")
        if not _valid_id(record["id"]):
            raise DatasetError(f"{json_file}: {kind} #{index} has id {short_repr(record['id'])} (expected a number)")
    repeated = [(value, count) for value, count in Counter(record["id"] for record in records).items() if count > 1]
    if repeated:
        value, count = repeated[0]
        more = f" (and {len(repeated) - 1} more repeated ids)" if len(repeated) > 1 else ""
        raise DatasetError(f"{json_file}: {kind} id {short_repr(value)} is used by {count} {kind}s{more}")


def _drop_orphans(dataset: dict, json_file: str) -> None:
    """Remove (counted, logged) the annotations whose image_id names no image."""
    image_ids = {image["id"] for image in dataset["images"]}
    kept, orphans = [], []
    for annotation in dataset["annotations"]:
        image_id = annotation.get("image_id")
        (kept if _valid_id(image_id) and image_id in image_ids else orphans).append(annotation)
    if not orphans:
        return
    dataset["annotations"] = kept
    drops = DropCounter(json_file)
    for annotation in orphans:
        drops.add("unknown_image", annotation["id"])
    as_text = {str(image_id) for image_id in image_ids}
    retyped = any(a.get("image_id") is not None and str(a["image_id"]) in as_text for a in orphans)
    drops.log(hint="; some equal an image id written as another type (e.g. \"1\" and 1)" if retyped else "")


def _check_categories(dataset: dict, json_file: str) -> None:
    known: Dict[Any, dict] = {category["id"]: category for category in dataset["categories"]}
    for category in dataset["categories"]:
        if not isinstance(category.get("name"), str):
            raise DatasetError(f"{json_file}: category {category['id']} has no 'name' string")
    for annotation in dataset["annotations"]:
        category_id = annotation.get("category_id")
        if not _valid_id(category_id) or category_id not in known:
            raise DatasetError(
                f"{json_file}: annotation {annotation['id']} has category_id {short_repr(category_id)}, "
                f"not among the categories {sorted(known, key=str)}"
            )


def read_coco_json(json_file: str, adapt: Optional[Callable[[dict], None]] = None) -> COCO:
    """Parse a COCO JSON into a pycocotools ``COCO`` index, with one-line errors naming the file
    and the record (see the module docstring for what is refused and what is dropped).
    ``adapt(dataset)`` edits the parsed dict in place first (a COCO-like format such as LVIS's)."""
    dataset = _parse(json_file)
    if adapt is not None:
        adapt(dataset)
    _check_ids(dataset["images"], "image", json_file)
    _check_ids(dataset["categories"], "category", json_file)
    _check_ids(dataset["annotations"], "annotation", json_file)
    _drop_orphans(dataset, json_file)
    _check_categories(dataset, json_file)
    coco_api = COCO()
    coco_api.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress
        coco_api.createIndex()
    return coco_api
