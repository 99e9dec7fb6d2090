"""Small on-disk COCO sets for the data tests."""
import json

import numpy as np
import pytest
from PIL import Image

from maskrcnn_multi.data.catalog import DatasetCatalog, MetadataCatalog
from maskrcnn_multi.data.synthetic import generate_shapes_dataset


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    """A tiny generated shapes set (6 train, 3 val images); treat as read-only."""
    return str(generate_shapes_dataset(str(tmp_path_factory.mktemp("shapes")), num_train=6, num_val=3, seed=1))


@pytest.fixture
def write_coco(tmp_path):
    """write_coco(annotations, images=None, categories=None) -> (json_file, image_root).

    Default: two 40x60 (HxW) images with ids 1, 2 and categories 5 "a", 9 "b".
    """

    def _write(annotations, images=None, categories=None):
        image_root = tmp_path / "images"
        image_root.mkdir(exist_ok=True)
        if images is None:
            images = [{"id": i, "file_name": f"im{i}.png", "height": 40, "width": 60} for i in (1, 2)]
        for image in images:
            pixels = np.full((image["height"], image["width"], 3), 40 * image["id"], dtype=np.uint8)
            Image.fromarray(pixels).save(image_root / image["file_name"])
        categories = categories if categories is not None else [{"id": 5, "name": "a"}, {"id": 9, "name": "b"}]
        json_file = tmp_path / "instances.json"
        json_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
        return str(json_file), str(image_root)

    return _write


@pytest.fixture
def temporary_dataset_names():
    """Names registered during a test are removed from both catalogs afterwards."""
    names = []
    yield names
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
