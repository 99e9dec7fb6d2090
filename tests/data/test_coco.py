"""COCO loading: contiguous ids, segmentation kinds, and one-line errors naming the culprit."""
import logging
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest

from maskrcnn_multi.data import (
    DatasetCatalog,
    DatasetError,
    MetadataCatalog,
    get_detection_dataset_dicts,
    load_coco_json,
    register_coco_2017,
    register_coco_instances,
)
from maskrcnn_multi.structures import BoxMode

SQUARE = [[10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]]


def _annotation(annotation_id, image_id=1, category_id=5, bbox=(10, 10, 20, 20), segmentation=SQUARE, **extra):
    return dict(id=annotation_id, image_id=image_id, category_id=category_id, bbox=list(bbox),
                segmentation=segmentation, iscrowd=0, area=400.0, **extra)


def test_loads_dicts_with_contiguous_ids_and_metadata(write_coco, temporary_dataset_names):
    json_file, image_root = write_coco([_annotation(1), _annotation(2, image_id=2, category_id=9)])
    temporary_dataset_names.append("unit_coco")
    dicts = load_coco_json(json_file, image_root, "unit_coco")
    assert [d["image_id"] for d in dicts] == [1, 2]
    assert dicts[0]["file_name"] == os.path.join(image_root, "im1.png")
    assert (dicts[0]["height"], dicts[0]["width"]) == (40, 60)
    first, second = dicts[0]["annotations"][0], dicts[1]["annotations"][0]
    assert first["bbox_mode"] == BoxMode.XYWH_ABS and first["bbox"] == [10.0, 10.0, 20.0, 20.0]
    assert (first["category_id"], second["category_id"]) == (0, 1)
    assert first["segmentation"] == SQUARE and first["iscrowd"] == 0
    metadata = MetadataCatalog.get("unit_coco")
    assert metadata.thing_classes == ["a", "b"]
    assert metadata.thing_dataset_id_to_contiguous_id == {5: 0, 9: 1}


def test_rle_segmentations_and_crowd_regions(write_coco):
    uncompressed = {"size": [40, 60], "counts": [410, 20, 20, 20, 1930]}
    mask = np.zeros((40, 60), dtype=np.uint8, order="F")
    mask[5:15, 20:30] = 1
    compressed = mask_util.encode(mask)
    compressed["counts"] = compressed["counts"].decode("ascii")
    json_file, image_root = write_coco(
        [_annotation(1, segmentation=uncompressed), _annotation(2, segmentation=compressed)]
    )
    annotations = load_coco_json(json_file, image_root)[0]["annotations"]
    assert all(isinstance(a["segmentation"]["counts"], str) for a in annotations)
    assert mask_util.area(annotations[0]["segmentation"]) == 40
    assert mask_util.area(annotations[1]["segmentation"]) == 100


def test_crowd_flag_is_kept(write_coco):
    json_file, image_root = write_coco([dict(_annotation(1), iscrowd=1)])
    assert load_coco_json(json_file, image_root)[0]["annotations"][0]["iscrowd"] == 1


def test_missing_annotation_file_is_named(tmp_path):
    missing = str(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match=f"annotation file not found: {missing}"):
        load_coco_json(missing, str(tmp_path))


def test_missing_image_root_is_named(write_coco, tmp_path):
    json_file, _ = write_coco([])
    with pytest.raises(FileNotFoundError, match="image root not found: .*missing_dir"):
        load_coco_json(json_file, str(tmp_path / "missing_dir"))


def test_malformed_json_names_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [],\n  "categories": [}\n')
    with pytest.raises(DatasetError, match=r"bad\.json: invalid JSON at line 2 column 18: "):
        load_coco_json(str(bad), str(tmp_path))


def test_unknown_category_names_annotation_and_file(write_coco):
    json_file, image_root = write_coco([_annotation(7, category_id=3)])
    with pytest.raises(DatasetError, match=r"instances\.json: annotation 7 has category_id 3, not among"):
        load_coco_json(json_file, image_root)


def test_degenerate_boxes_dropped_with_one_count_line(write_coco, caplog):
    json_file, image_root = write_coco(
        [_annotation(1), _annotation(2, bbox=(5, 5, 0, 10)), _annotation(3, bbox=(5, 5, 10, -2))]
    )
    with caplog.at_level(logging.WARNING, logger="maskrcnn_multi.data.coco"):
        dicts = load_coco_json(json_file, image_root)
    assert len(dicts[0]["annotations"]) == 1
    lines = [r.getMessage() for r in caplog.records if "zero or negative box size" in r.getMessage()]
    assert len(lines) == 1 and "dropped 2 " in lines[0] and "2, 3" in lines[0] and json_file in lines[0]


def test_short_polygons_are_dropped_and_named(write_coco, caplog):
    json_file, image_root = write_coco(
        [_annotation(1, segmentation=[SQUARE[0], [1.0, 1.0, 2.0, 2.0]]), _annotation(4, segmentation=[[1.0, 1.0]])]
    )
    with caplog.at_level(logging.WARNING, logger="maskrcnn_multi.data.coco"):
        annotations = load_coco_json(json_file, image_root)[0]["annotations"]
    assert len(annotations) == 1 and annotations[0]["segmentation"] == SQUARE
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "2 polygons with fewer than 3 points (annotation ids: 1, 4)" in message
    assert "annotations left without a valid polygon (annotation ids: 4)" in message


def test_empty_dataset_is_named(write_coco, temporary_dataset_names):
    json_file, image_root = write_coco([], images=[])
    temporary_dataset_names.append("unit_empty")
    register_coco_instances("unit_empty", {}, json_file, image_root)
    with pytest.raises(ValueError, match="dataset 'unit_empty' is empty"):
        get_detection_dataset_dicts(["unit_empty"])


def test_images_without_annotations_are_filtered_for_training(write_coco, temporary_dataset_names, caplog):
    json_file, image_root = write_coco([_annotation(1)])
    temporary_dataset_names.append("unit_filter")
    register_coco_instances("unit_filter", {}, json_file, image_root)
    with caplog.at_level(logging.INFO, logger="maskrcnn_multi.data.build"):
        assert len(get_detection_dataset_dicts(["unit_filter"], filter_empty=True)) == 1
    assert any("Removed 1 images" in r.getMessage() for r in caplog.records)
    assert len(get_detection_dataset_dicts(["unit_filter"], filter_empty=False)) == 2


def test_register_coco_2017_layout(tmp_path):
    builtin_root = os.path.dirname(os.path.dirname(MetadataCatalog.get("coco_2017_val").json_file))
    register_coco_2017(str(tmp_path))
    try:
        metadata = MetadataCatalog.get("coco_2017_val")
        assert metadata.json_file == os.path.join(str(tmp_path), "annotations", "instances_val2017.json")
        assert metadata.image_root == os.path.join(str(tmp_path), "val2017")
        assert "coco_2017_train" in DatasetCatalog
        with pytest.raises(FileNotFoundError, match="val2017"):
            DatasetCatalog.get("coco_2017_val")
    finally:
        register_coco_2017(builtin_root)
