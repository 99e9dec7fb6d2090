"""Datasets registered when ``maskrcnn_multi.data`` is imported, under ``datasets_root()``.

- ``shapes_train`` / ``shapes_val``: the synthetic set at ``<root>/shapes``, generated on first load.
- ``coco_2017_train`` / ``coco_2017_val``: COCO 2017 at ``<root>/coco`` (annotations/, train2017/, val2017/).

Registration is lazy: nothing is read or generated until ``DatasetCatalog.get``. Call
``register_synthetic(root)`` / ``register_coco_2017(root)`` to point a name elsewhere.
"""
from .catalog import DatasetCatalog
from .coco import register_coco_2017
from .synthetic import register_synthetic

__all__ = ["register_all_builtin"]


def register_all_builtin() -> None:
    """Register the built-in names that are not registered yet (at the default roots)."""
    if "shapes_train" not in DatasetCatalog:
        register_synthetic()
    if "coco_2017_train" not in DatasetCatalog:
        register_coco_2017()
