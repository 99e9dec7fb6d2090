"""LVIS and Cityscapes registration: LVIS's JSON (coco_url file names, no iscrowd, federated fields)."""
import json

import numpy as np
import pytest
from PIL import Image

from maskrcnn_multi.data import DatasetCatalog, MetadataCatalog, register_lvis_instances


def write_lvis(tmp_path):
    """Two 40x60 images in val2017/, categories 1 (f), 2 (c), 3 (r); see test_lvis_evaluation."""
    (tmp_path / "val2017").mkdir()
    images = []
    for image_id in (1, 2):
        Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "val2017" / f"{image_id:012d}.jpg")
        images.append({"id": image_id, "height": 40, "width": 60,
                       "coco_url": f"http://images.cocodataset.org/val2017/{image_id:012d}.jpg",
                       "neg_category_ids": [2] if image_id == 1 else [], "not_exhaustive_category_ids": [1] if image_id == 2 else []})
    boxes = {1: [(1, [5, 5, 10, 10])], 2: [(1, [5, 5, 10, 10]), (2, [30, 5, 10, 10]), (3, [5, 25, 10, 10])]}
    annotations = []
    for image_id, objects in boxes.items():
        for category_id, box in objects:
            x, y, w, h = box
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                "bbox": box, "area": w * h, "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
    categories = [{"id": 1, "synonyms": ["apple"], "name": "apple", "frequency": "f"},
                  {"id": 2, "synonyms": ["bat"], "name": "bat", "frequency": "c"},
                  {"id": 3, "synonyms": ["cat"], "name": "cat", "frequency": "r"}]
    json_file = tmp_path / "lvis_v1_val.json"
    json_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return str(json_file), str(tmp_path)


@pytest.fixture
def lvis_dataset(tmp_path):
    json_file, root = write_lvis(tmp_path)
    register_lvis_instances("test_lvis_val", {}, json_file, root, replace=True)
    yield "test_lvis_val"
    DatasetCatalog.remove("test_lvis_val")
    MetadataCatalog.remove("test_lvis_val")


def test_lvis_records_resolve_coco_urls_and_keep_the_federated_fields(lvis_dataset, tmp_path):
    dicts = DatasetCatalog.get(lvis_dataset)
    assert [d["file_name"] for d in dicts] == [str(tmp_path / "val2017" / f"{i:012d}.jpg") for i in (1, 2)]
    assert [a["category_id"] for a in dicts[1]["annotations"]] == [0, 1, 2]  # contiguous, in LVIS id order
    assert all(a["iscrowd"] == 0 for d in dicts for a in d["annotations"])
    assert dicts[0]["neg_category_ids"] == [2] and dicts[1]["not_exhaustive_category_ids"] == [1]
    metadata = MetadataCatalog.get(lvis_dataset)
    assert metadata.evaluator_type == "lvis" and metadata.thing_frequencies == ["f", "c", "r"]
    assert metadata.thing_classes == ["apple", "bat", "cat"]


def test_the_builtin_names_are_detectron2s():
    for name in ("lvis_v1_train", "lvis_v1_val", "lvis_v0.5_train", "lvis_v0.5_val",
                 "cityscapes_fine_instance_seg_train", "cityscapes_fine_instance_seg_val"):
        assert name in DatasetCatalog
    assert MetadataCatalog.get("lvis_v1_val").json_file.endswith("lvis/lvis_v1_val.json")
    assert MetadataCatalog.get("cityscapes_fine_instance_seg_val").json_file.endswith(
        "cityscapes/annotations/instancesonly_filtered_gtFine_val.json")
