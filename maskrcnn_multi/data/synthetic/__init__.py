"""A synthetic COCO-format instance set: coloured rectangles, ellipses and triangles.

Same scheme as the reference set the detectron2 baseline was trained on (categories 1 rectangle,
2 ellipse, 3 triangle; polygon masks). Output is a pure function of the seed.

Where it goes: ``<root>/annotations/instances_{train,val}.json``, ``<root>/train``, ``<root>/val``, with
root ``$MASKRCNN_MULTI_DATASETS/shapes`` (default ``./datasets/shapes``). "shapes_train" and
"shapes_val" are registered there when ``maskrcnn_multi.data`` is imported, and the set is generated
the first time either is loaded (400 train / 40 val images, seed 0).

CLI: ``python -m maskrcnn_multi.data.synthetic --output DIR --num-train N --num-val M --seed S``
(``--layout coco2017`` writes the COCO 2017 layout for ``--data_path``: ``generate_coco2017_layout``). It
refuses a non-empty ``--output`` unless ``--overwrite``, which replaces only a synthetic set
(``write_synthetic_set``).
"""
from .coco2017 import generate_coco2017_layout
from .register import default_root, ensure_synthetic, register_synthetic
from .shapes import CATEGORIES, check_generation_arguments, generate_shapes_dataset
from .writer import OutputFolderError, write_synthetic_set

__all__ = ["CATEGORIES", "OutputFolderError", "check_generation_arguments", "default_root", "ensure_synthetic",
           "generate_coco2017_layout", "generate_shapes_dataset", "register_synthetic", "write_synthetic_set"]
