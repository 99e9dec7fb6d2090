"""The shapes set in the COCO 2017 layout (what --data_path and the launch scripts expect)."""
import json
import os

import pytest

from maskrcnn_multi.config import UserError
from maskrcnn_multi.data import DatasetCatalog
from maskrcnn_multi.data.coco import register_coco_2017
from maskrcnn_multi.data.synthetic import generate_coco2017_layout, generate_shapes_dataset
from maskrcnn_multi.data.synthetic.__main__ import main as cli_main


def test_coco2017_layout_holds_the_same_set_under_the_2017_names(tmp_path):
    root = generate_coco2017_layout(str(tmp_path / "coco"), num_train=3, num_val=2, seed=5)
    plain = generate_shapes_dataset(str(tmp_path / "plain"), num_train=3, num_val=2, seed=5)
    assert sorted(os.listdir(root)) == ["annotations", "train2017", "val2017"]
    for split in ("train", "val"):
        with open(os.path.join(root, "annotations", f"instances_{split}2017.json")) as stream:
            coco = json.load(stream)
        with open(os.path.join(plain, "annotations", f"instances_{split}.json")) as stream:
            assert coco == json.load(stream)
        assert sorted(os.listdir(os.path.join(root, f"{split}2017"))) == sorted(i["file_name"] for i in coco["images"])


def test_registered_as_coco_2017_and_loadable(tmp_path, temporary_dataset_names):
    root = generate_coco2017_layout(str(tmp_path / "coco"), num_train=2, num_val=1, seed=1)
    register_coco_2017(root)
    temporary_dataset_names.extend(["coco_2017_train", "coco_2017_val"])
    records = DatasetCatalog.get("coco_2017_train")
    assert len(records) == 2 and all(os.path.isfile(record["file_name"]) for record in records)


def test_cli_layout_option_and_refusal_to_overwrite(tmp_path):
    cli_main(["--output", str(tmp_path), "--layout", "coco2017", "--num-train", "1", "--num-val", "1",
              "--image-size", "64", "64"])
    assert os.path.isfile(tmp_path / "annotations" / "instances_val2017.json")
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]  # no staging left
    with pytest.raises(UserError, match="instances_train2017.json already exists"):
        generate_coco2017_layout(str(tmp_path), num_train=1, num_val=1)
