"""Datasets registered when ``maskrcnn_multi.data`` is imported, under ``datasets_root()``.

- ``shapes_train`` / ``shapes_val``: the synthetic set at ``<root>/shapes``, generated on first load.
- ``coco_2017_train`` / ``coco_2017_val``: COCO 2017 at ``<root>/coco`` (annotations/, train2017/, val2017/).
- ``lvis_v1_{train,val}``, ``lvis_v0.5_{train,val}``: LVIS JSONs at ``<root>/lvis``, images in ``<root>/coco``.
- ``cityscapes_fine_instance_seg_{train,val}``: Cityscapes' COCO-style JSONs at ``<root>/cityscapes``.

Registration is lazy: nothing is read or generated until ``DatasetCatalog.get``. Call
``register_synthetic(root)`` / ``register_coco_2017(root)`` to point a name elsewhere.
"""
from .catalog import DatasetCatalog
from .coco import register_coco_2017
from .lvis import register_cityscapes_coco, register_lvis
from .synthetic import register_synthetic

__all__ = ["register_all_builtin"]


def register_all_builtin() -> None:
    """Register the built-in names that are not registered yet (at the default roots)."""
    if "shapes_train" not in DatasetCatalog:
        register_synthetic()
    if "coco_2017_train" not in DatasetCatalog:
        register_coco_2017()
    if "lvis_v1_train" not in DatasetCatalog:
        register_lvis()
    if "cityscapes_fine_instance_seg_train" not in DatasetCatalog:
        register_cityscapes_coco()
