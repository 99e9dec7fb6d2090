"""Generate the shapes set on first use (atomically) and register shapes_train / shapes_val."""
import logging
import os
import shutil
import tempfile
from typing import List, Optional

from ...config.errors import UserError
from ..catalog import DatasetCatalog, MetadataCatalog, datasets_root
from ..coco import load_coco_json
from .shapes import CATEGORIES, SPLITS, generate_shapes_dataset

__all__ = ["default_root", "ensure_synthetic", "register_synthetic"]

logger = logging.getLogger(__name__)


def default_root() -> str:
    """``<datasets_root()>/shapes``: ``$MASKRCNN_MULTI_DATASETS/shapes``, else ``./datasets/shapes``."""
    return os.path.join(datasets_root(), "shapes")


def _annotation_paths(root: str) -> List[str]:
    return [os.path.join(root, "annotations", f"instances_{split}.json") for split in SPLITS]


def ensure_synthetic(root: Optional[str] = None, num_train: int = 400, num_val: int = 40, seed: int = 0) -> str:
    """Generate the set at ``root`` (default ``default_root()``) unless it is already there; returns root.

    Generation goes to a temporary sibling folder renamed into place at the end, so an interrupted
    run never leaves a half set, and concurrent processes (one per rank) agree on one copy.
    """
    root = os.path.abspath(root if root is not None else default_root())
    if all(os.path.isfile(path) for path in _annotation_paths(root)):
        return root
    if os.path.exists(root) and os.listdir(root):
        raise UserError(
            f"{root} exists but is not a complete shapes set (missing annotations/instances_train.json "
            "or instances_val.json); remove it or point MASKRCNN_MULTI_DATASETS elsewhere"
        )
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}-partial-", dir=parent)
    try:
        logger.info("Generating the synthetic shapes set in %s (seed %d)", root, seed)
        generate_shapes_dataset(staging, num_train=num_train, num_val=num_val, seed=seed)
        if os.path.isdir(root) and not os.listdir(root):
            os.rmdir(root)
        os.rename(staging, root)
    except OSError:
        if not all(os.path.isfile(path) for path in _annotation_paths(root)):
            raise
        logger.info("Another process generated %s first; using its copy", root)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return root


def register_synthetic(root: Optional[str] = None, num_train: int = 400, num_val: int = 40, seed: int = 0) -> None:
    """Register "shapes_train" and "shapes_val" at ``root``; the set is generated on first load.

    Replaces any earlier registration of those two names (e.g. the default one made on import).
    """
    root = os.path.abspath(root if root is not None else default_root())
    for split in SPLITS:
        name = f"shapes_{split}"
        json_file = os.path.join(root, "annotations", f"instances_{split}.json")
        image_root = os.path.join(root, split)
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
        MetadataCatalog.get(name).set(
            thing_classes=[category["name"] for category in CATEGORIES],
            thing_dataset_id_to_contiguous_id={category["id"]: index for index, category in enumerate(CATEGORIES)},
            json_file=json_file, image_root=image_root, evaluator_type="coco",
        )

        def load(json_file=json_file, image_root=image_root, name=name):
            ensure_synthetic(root, num_train=num_train, num_val=num_val, seed=seed)
            return load_coco_json(json_file, image_root, name)

        DatasetCatalog.register(name, load)


