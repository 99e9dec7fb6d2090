"""The shapes set written in the COCO 2017 layout, the one ``train_net --data_path`` and the launch
scripts (test/train_*.sh) expect: ``<root>/annotations/instances_{train,val}2017.json``,
``<root>/train2017/*.jpg``, ``<root>/val2017/*.jpg``. Same images and annotations as
``generate_shapes_dataset`` with the same arguments (image file names are relative to the split
folder, so only the folder and file names change).
"""
import os
import shutil
import tempfile
from typing import List, Tuple

from ...config.errors import UserError
from .shapes import SPLITS, generate_shapes_dataset

__all__ = ["coco2017_names", "generate_coco2017_layout"]


def coco2017_names() -> List[Tuple[str, str]]:
    """(path in the shapes layout, path in the COCO 2017 layout) of every entry a set consists of."""
    names = [(os.path.join("annotations", f"instances_{split}.json"),
              os.path.join("annotations", f"instances_{split}2017.json")) for split in SPLITS]
    return names + [(split, f"{split}2017") for split in SPLITS]


def generate_coco2017_layout(root: str, num_train: int = 400, num_val: int = 40, seed: int = 0,
                             image_size: Tuple[int, int] = (256, 320), max_shapes: int = 4) -> str:
    """Write the shapes set into ``root`` in the COCO 2017 layout and return ``root``.

    Raises UserError when ``root`` already holds one of the files or folders it would write.
    """
    targets = [os.path.join(root, coco_name) for _, coco_name in coco2017_names()]
    existing = [path for path in targets if os.path.exists(path)]
    if existing:
        raise UserError(f"{existing[0]} already exists; choose an empty --output")
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".shapes-coco2017-", dir=root)
    try:
        generate_shapes_dataset(staging, num_train=num_train, num_val=num_val, seed=seed,
                                image_size=image_size, max_shapes=max_shapes)
        for shapes_name, coco_name in coco2017_names():
            os.replace(os.path.join(staging, shapes_name), os.path.join(root, coco_name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
