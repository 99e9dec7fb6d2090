"""COCO-format datasets: load a COCO instances JSON into detectron2's dataset dicts and register it.

A dataset dict is ``{"file_name", "height", "width", "image_id", "annotations": [{"bbox",
"bbox_mode": BoxMode.XYWH_ABS, "category_id" (contiguous 0..K-1), "segmentation", "iscrowd"}]}``.
Segmentations are kept as COCO has them: a list of polygons, or an RLE dict (uncompressed RLE
is converted to compressed RLE). What is refused and what is dropped with a counted warning:
``coco_json`` (the file's structure, ids, image_ids) and ``coco_annotations`` (boxes, polygons);
an image without ``file_name`` or with a height/width that is not a positive whole number is refused.
"""
import logging
import os
from typing import Callable, List, Optional

from ..config.errors import short_repr
from .catalog import DatasetCatalog, MetadataCatalog, datasets_root
from .coco_annotations import DropCounter, convert_annotation
from .coco_json import read_coco_json
from .validation import DatasetError, DatasetFileNotFoundError, positive_int

__all__ = ["DatasetError", "read_coco_json", "load_coco_json", "register_coco_instances", "register_coco_2017"]

logger = logging.getLogger(__name__)


def _image_record(image: dict, image_root: str, json_file: str) -> dict:
    """The dataset dict of one COCO image, without annotations; refuses a missing name or a bad size."""
    image_id = image["id"]
    file_name = image.get("file_name")
    if not isinstance(file_name, str) or not file_name:
        raise DatasetError(f"{json_file}: image {image_id} has file_name {short_repr(file_name)} (expected a path)")
    sizes = {}
    for key in ("height", "width"):
        if key not in image:
            raise DatasetError(f"{json_file}: image {image_id} has no '{key}'")
        sizes[key] = positive_int(image[key])
        if sizes[key] is None:
            raise DatasetError(
                f"{json_file}: image {image_id} has {key} {short_repr(image[key])} (expected a positive whole "
                "number of pixels)"
            )
    return {"file_name": os.path.join(image_root, file_name), "height": sizes["height"], "width": sizes["width"],
            "image_id": image_id}


def load_coco_json(json_file: str, image_root: str, dataset_name: Optional[str] = None, *,
                   adapt: Optional[Callable[[dict], None]] = None, evaluator_type: str = "coco") -> List[dict]:
    """Load a COCO instances JSON into a list of detectron2 dataset dicts.

    Category ids are mapped to contiguous ids 0..K-1 in the order of the sorted COCO ids; with
    ``dataset_name`` the metadata (thing_classes, thing_dataset_id_to_contiguous_id, json_file,
    image_root) is recorded in MetadataCatalog. Bad records raise ``DatasetError`` naming the file and
    the record; dropped annotations/polygons are logged once per file and reason, with their ids.
    ``adapt`` edits the parsed JSON first (``read_coco_json``): how a COCO-like format (LVIS) is read.
    An image's LVIS fields ``not_exhaustive_category_ids`` / ``neg_category_ids`` are kept.
    """
    if not os.path.isdir(image_root):
        raise DatasetFileNotFoundError(f"image root not found: {image_root} (images of {json_file})")
    coco_api = read_coco_json(json_file, adapt)
    category_ids = sorted(coco_api.getCatIds(), key=lambda category_id: (isinstance(category_id, str), category_id))
    id_map = {category_id: index for index, category_id in enumerate(category_ids)}
    if dataset_name is not None:
        MetadataCatalog.get(dataset_name).set(
            thing_classes=[coco_api.cats[category_id]["name"] for category_id in category_ids],
            thing_dataset_id_to_contiguous_id=id_map,
            json_file=json_file,
            image_root=image_root,
            evaluator_type=evaluator_type,
        )
    drops = DropCounter(json_file)
    dataset_dicts = []
    for image_id in sorted(coco_api.imgs, key=lambda key: (isinstance(key, str), key)):
        record = _image_record(coco_api.imgs[image_id], image_root, json_file)
        for key in ("not_exhaustive_category_ids", "neg_category_ids"):
            if key in coco_api.imgs[image_id]:
                record[key] = list(coco_api.imgs[image_id][key])
        annotations = (convert_annotation(annotation, id_map, json_file, drops)
                       for annotation in coco_api.imgToAnns.get(image_id, []))
        record["annotations"] = [annotation for annotation in annotations if annotation is not None]
        dataset_dicts.append(record)
    drops.log()
    logger.info("Loaded %d images in COCO format from %s", len(dataset_dicts), json_file)
    return dataset_dicts


def register_coco_instances(name: str, metadata: dict, json_file: str, image_root: str, *,
                            replace: bool = False, loader: Optional[Callable[..., List[dict]]] = None,
                            evaluator_type: str = "coco") -> None:
    """Register a COCO instances dataset under ``name`` (loaded lazily by DatasetCatalog.get).
    With ``replace`` an earlier registration of ``name`` (data and metadata) is dropped first.
    ``loader(json_file, image_root, name)`` (default ``load_coco_json``) reads a COCO-like format."""
    if not isinstance(name, str) or not name:
        raise DatasetError(f"dataset name must be a non-empty string, got {name!r}")
    if replace:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    load = loader if loader is not None else load_coco_json
    DatasetCatalog.register(name, lambda: load(json_file, image_root, name))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type=evaluator_type,
                                  **metadata)


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
