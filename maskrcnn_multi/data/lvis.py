"""LVIS (v0.5, v1) and Cityscapes instance segmentation in COCO-format JSON, registered as detectron2
names them.

LVIS's JSON is COCO's with three differences, handled by ``lvis_to_coco`` before the COCO loader
reads it: v1 images carry ``coco_url`` instead of ``file_name`` (the file is
``<image_root>/<split folder>/<name>``, as detectron2 resolves it), annotations have no ``iscrowd``
(all are instances), and images list ``not_exhaustive_category_ids`` / ``neg_category_ids`` for the
federated evaluation (kept in the dataset dicts; see ``evaluation.lvis_evaluation``).

Cityscapes: detectron2 reads the raw ``gtFine`` files; here the COCO-style conversion that
maskrcnn-benchmark used is read instead (``cityscapes/annotations/instancesonly_filtered_gtFine_
{train,val}.json`` with images under ``cityscapes/images``), under detectron2's names
``cityscapes_fine_instance_seg_{train,val}`` (8 classes).
"""
import os
from typing import List, Optional

from .catalog import MetadataCatalog, datasets_root
from .coco import load_coco_json, register_coco_instances

__all__ = ["lvis_to_coco", "load_lvis_json", "register_lvis_instances", "register_lvis", "register_cityscapes_coco"]

# name -> (image root under <root>, json under <root>)
LVIS_SPLITS = {
    "lvis_v1_train": ("coco/", "lvis/lvis_v1_train.json"),
    "lvis_v1_val": ("coco/", "lvis/lvis_v1_val.json"),
    "lvis_v0.5_train": ("coco/train2017", "lvis/lvis_v0.5_train.json"),
    "lvis_v0.5_val": ("coco/val2017", "lvis/lvis_v0.5_val.json"),
}
CITYSCAPES_SPLITS = {
    "cityscapes_fine_instance_seg_train": ("cityscapes/images", "cityscapes/annotations/instancesonly_filtered_gtFine_train.json"),
    "cityscapes_fine_instance_seg_val": ("cityscapes/images", "cityscapes/annotations/instancesonly_filtered_gtFine_val.json"),
}


def lvis_to_coco(dataset: dict) -> None:
    """Edit a parsed LVIS JSON in place into the COCO form our loader reads (see the module docstring)."""
    for image in dataset.get("images", []):
        if not isinstance(image, dict) or image.get("file_name"):
            continue
        url = image.get("coco_url")
        if isinstance(url, str) and url.count("/") >= 2:
            split_folder, file_name = url.split("/")[-2:]
            image["file_name"] = os.path.join(split_folder, file_name)
    for annotation in dataset.get("annotations", []):
        if isinstance(annotation, dict):
            annotation.setdefault("iscrowd", 0)
    for category in dataset.get("categories", []):
        if isinstance(category, dict) and "name" not in category and category.get("synonyms"):
            category["name"] = category["synonyms"][0]


def load_lvis_json(json_file: str, image_root: str, dataset_name: Optional[str] = None) -> List[dict]:
    """LVIS JSON -> detectron2 dataset dicts (contiguous category ids in the order of LVIS's ids); the
    metadata gains ``thing_frequencies`` (LVIS's "r" / "c" / "f" per contiguous id: APr, APc, APf)."""
    frequencies = []

    def adapt(dataset: dict) -> None:
        lvis_to_coco(dataset)
        categories = sorted((c for c in dataset.get("categories", []) if isinstance(c, dict)), key=lambda c: c.get("id"))
        frequencies.extend(category.get("frequency", "") for category in categories)

    dicts = load_coco_json(json_file, image_root, dataset_name, adapt=adapt, evaluator_type="lvis")
    if dataset_name is not None:
        MetadataCatalog.get(dataset_name).set(thing_frequencies=frequencies)
    return dicts


def register_lvis_instances(name: str, metadata: dict, json_file: str, image_root: str, *,
                            replace: bool = False) -> None:
    """Register an LVIS-format dataset under ``name`` (loaded lazily), evaluated by LVISEvaluator."""
    register_coco_instances(name, metadata, json_file, image_root, replace=replace, loader=load_lvis_json,
                            evaluator_type="lvis")


def register_lvis(root: Optional[str] = None) -> None:
    """lvis_v1_{train,val} and lvis_v0.5_{train,val} under ``root`` (default ``datasets_root()``)."""
    root = root if root is not None else datasets_root()
    for name, (image_root, json_file) in LVIS_SPLITS.items():
        register_lvis_instances(name, {}, os.path.join(root, json_file), os.path.join(root, image_root), replace=True)


def register_cityscapes_coco(root: Optional[str] = None) -> None:
    """cityscapes_fine_instance_seg_{train,val} from their COCO-style JSONs under ``root``."""
    root = root if root is not None else datasets_root()
    for name, (image_root, json_file) in CITYSCAPES_SPLITS.items():
        register_coco_instances(name, {}, os.path.join(root, json_file), os.path.join(root, image_root), replace=True)
