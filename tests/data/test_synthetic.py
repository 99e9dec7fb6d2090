"""The synthetic shapes set: deterministic, COCO-valid, generated atomically, registered by name."""
import collections
import json
import os

import pytest

from maskrcnn_multi.config import UserError
from maskrcnn_multi.data import DatasetCatalog, MetadataCatalog, load_coco_json
from maskrcnn_multi.data.synthetic import register as synthetic_register
from maskrcnn_multi.data.synthetic.__main__ import main as cli_main
from maskrcnn_multi.data.synthetic import ensure_synthetic, generate_shapes_dataset, register_synthetic


def _tree_bytes(root):
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as stream:
                files[os.path.relpath(path, root)] = stream.read()
    return files


def test_same_seed_gives_identical_bytes(tmp_path):
    first = _tree_bytes(generate_shapes_dataset(str(tmp_path / "a"), num_train=3, num_val=2, seed=5))
    second = _tree_bytes(generate_shapes_dataset(str(tmp_path / "b"), num_train=3, num_val=2, seed=5))
    other = _tree_bytes(generate_shapes_dataset(str(tmp_path / "c"), num_train=3, num_val=2, seed=6))
    assert first == second and len(first) == 2 + 3 + 2
    assert first["annotations/instances_train.json"] != other["annotations/instances_train.json"]


def test_annotations_follow_the_reference_scheme(shapes_root):
    with open(os.path.join(shapes_root, "annotations", "instances_train.json")) as stream:
        coco = json.load(stream)
    assert coco["categories"] == [{"id": 1, "name": "rectangle"}, {"id": 2, "name": "ellipse"},
                                  {"id": 3, "name": "triangle"}]
    points = {1: 4, 2: 32, 3: 3}
    per_image = collections.Counter(a["image_id"] for a in coco["annotations"])
    assert len(per_image) == 6 and 1 <= min(per_image.values()) and max(per_image.values()) <= 4
    for annotation in coco["annotations"]:
        assert len(annotation["segmentation"][0]) == 2 * points[annotation["category_id"]]
        x, y, w, h = annotation["bbox"]
        image = coco["images"][annotation["image_id"] - 1]
        assert x >= 0 and y >= 0 and x + w <= image["width"] and y + h <= image["height"]
        assert 0 < annotation["area"] <= w * h + 1e-6
    dicts = load_coco_json(os.path.join(shapes_root, "annotations", "instances_train.json"),
                           os.path.join(shapes_root, "train"))
    assert all(os.path.isfile(d["file_name"]) for d in dicts)


def test_cli_writes_the_set(tmp_path):
    output = tmp_path / "cli"
    assert cli_main(["--output", str(output), "--num-train", "2", "--num-val", "1", "--seed", "4"]) == 0
    assert len(os.listdir(output / "train")) == 2 and len(os.listdir(output / "val")) == 1


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    def interrupted(root, **kwargs):
        os.makedirs(os.path.join(root, "train"))
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic_register, "generate_shapes_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(str(tmp_path / "shapes"), num_train=2, num_val=1)
    assert os.listdir(tmp_path) == []


def test_ensure_generates_once_and_refuses_a_foreign_folder(tmp_path):
    root = ensure_synthetic(str(tmp_path / "shapes"), num_train=2, num_val=1, seed=2)
    before = _tree_bytes(root)
    assert ensure_synthetic(root, num_train=2, num_val=1, seed=2) == root and _tree_bytes(root) == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "stray.txt").write_text("x")
    with pytest.raises(UserError, match="other exists but is not a complete shapes set"):
        ensure_synthetic(str(tmp_path / "other"))


def test_register_synthetic_generates_on_first_load(tmp_path, monkeypatch):
    builtin_root = os.path.dirname(os.path.dirname(MetadataCatalog.get("shapes_train").json_file))
    monkeypatch.setenv("MASKRCNN_MULTI_DATASETS", str(tmp_path))
    register_synthetic(num_train=2, num_val=1, seed=0)
    try:
        assert not os.path.exists(tmp_path / "shapes")
        assert len(DatasetCatalog.get("shapes_val")) == 1
        assert len(DatasetCatalog.get("shapes_train")) == 2
        metadata = MetadataCatalog.get("shapes_val")
        assert metadata.thing_classes == ["rectangle", "ellipse", "triangle"]
        assert metadata.json_file == str(tmp_path / "shapes" / "annotations" / "instances_val.json")
    finally:
        register_synthetic(builtin_root)


def test_builtin_names_are_registered_on_import():
    assert {"shapes_train", "shapes_val", "coco_2017_train", "coco_2017_val"} <= set(DatasetCatalog.list())
    assert MetadataCatalog.get("shapes_val").json_file.endswith(os.path.join("shapes", "annotations", "instances_val.json"))
