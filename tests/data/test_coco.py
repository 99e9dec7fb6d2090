"""COCO loading: contiguous ids, segmentation kinds, and one-line errors naming the culprit."""
import json
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


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_unknown_image_ids_are_dropped_with_a_counted_warning(write_coco, caplog):
    json_file, image_root = write_coco([_annotation(1), _annotation(2, image_id=77), _annotation(3, image_id="1"),
                                        dict(_annotation(4), image_id=None)])
    with caplog.at_level(logging.WARNING, logger="maskrcnn_multi.data.coco"):
        dicts = load_coco_json(json_file, image_root)
    assert [len(d["annotations"]) for d in dicts] == [1, 0]
    (line,) = [m for m in _warnings(caplog) if "image_id" in m]
    assert line.startswith(f"{json_file}: dropped 3 annotations whose image_id is not among the images")
    assert "(annotation ids: 2, 3, 4)" in line and 'written as another type (e.g. "1" and 1)' in line


@pytest.mark.parametrize("bbox", [[float("nan"), 1, 5, 5], [1, 1, float("inf"), 5], [1, float("-inf"), 5, 5]])
def test_non_finite_boxes_are_dropped_and_counted(write_coco, caplog, bbox):
    json_file, image_root = write_coco([_annotation(1), _annotation(2, bbox=bbox)])
    with caplog.at_level(logging.WARNING, logger="maskrcnn_multi.data.coco"):
        annotations = load_coco_json(json_file, image_root)[0]["annotations"]
    assert len(annotations) == 1 and annotations[0]["bbox"] == [10.0, 10.0, 20.0, 20.0]
    assert f"{json_file}: dropped 1 annotations with a NaN or infinite box coordinate (annotation ids: 2)" in _warnings(caplog)


def test_nan_literals_in_the_json_text_are_caught(tmp_path, write_coco, caplog):
    """Python's json reads NaN / Infinity literals: a polygon with one NaN x-coordinate (once a 24 GB
    rasterization) is dropped, and its annotation with it when no polygon is left."""
    json_file, image_root = write_coco([_annotation(1), _annotation(2)])
    text = open(json_file).read()
    text = text.replace("[[10.0, 10.0, 30.0", "[[NaN, 10.0, 30.0", 1)
    open(json_file, "w").write(text)
    with caplog.at_level(logging.WARNING, logger="maskrcnn_multi.data.coco"):
        annotations = load_coco_json(json_file, image_root)[0]["annotations"]
    assert len(annotations) == 1
    messages = " | ".join(_warnings(caplog))
    assert "dropped 1 polygons with a NaN or infinite coordinate (annotation ids: 1)" in messages
    assert "dropped 1 annotations left without a valid polygon (annotation ids: 1)" in messages


def test_a_nan_polygon_among_good_ones_keeps_the_annotation(write_coco):
    json_file, image_root = write_coco([_annotation(1, segmentation=[SQUARE[0], [float("nan")] * 6])])
    assert load_coco_json(json_file, image_root)[0]["annotations"][0]["segmentation"] == SQUARE


@pytest.mark.parametrize("change, message", [
    (dict(bbox=["10", 10, 20, 20]), r"annotation 1 has bbox \['10', 10, 20, 20\] \(expected \[x, y, width, height\] numbers\)"),
    (dict(bbox=[10, 10, 20]), r"annotation 1 has bbox \[10, 10, 20\]"),
    (dict(bbox=[10, None, 20, 20]), r"annotation 1 has bbox \[10, None, 20, 20\]"),
    (dict(bbox=[True, 10, 20, 20]), r"annotation 1 has bbox \[True, 10, 20, 20\]"),
    (dict(segmentation=[[10, 10, "x", 10, 30, 30]]), r"annotation 1 has a polygon holding non-numbers"),
    (dict(segmentation=[10.0, 10.0, 30.0, 10.0, 30.0, 30.0]), r"annotation 1 has a polygon 10.0 that is not a list"),
    (dict(iscrowd="no"), r"annotation 1 has iscrowd 'no' \(expected 0 or 1\)"),
    (dict(category_id=None), r"annotation 1 has category_id None, not among the categories \[5, 9\]"),
])
def test_values_of_the_wrong_type_are_refused_by_name(write_coco, change, message):
    json_file, image_root = write_coco([dict(_annotation(1), **change)])
    with pytest.raises(DatasetError, match=rf"{json_file}: {message}"):
        load_coco_json(json_file, image_root)


def test_records_pycocotools_cannot_index_are_refused_by_name(write_coco):
    no_id = _annotation(1)
    del no_id["id"]
    json_file, image_root = write_coco([_annotation(3), no_id])
    with pytest.raises(DatasetError, match=rf"{json_file}: annotation #1 has no 'id'"):
        load_coco_json(json_file, image_root)
    json_file, image_root = write_coco([_annotation(3), _annotation(3, image_id=2)])
    with pytest.raises(DatasetError, match=r"annotation id 3 is used by 2 annotations"):
        load_coco_json(json_file, image_root)
    json_file, image_root = write_coco([], categories=[{"id": 5, "name": "a"}, {"id": [5], "name": "b"}])
    with pytest.raises(DatasetError, match=r"category #1 has id \[5\] \(expected a number\)"):
        load_coco_json(json_file, image_root)
    json_file, image_root = write_coco([], categories=[{"id": 5}])
    with pytest.raises(DatasetError, match=r"category 5 has no 'name' string"):
        load_coco_json(json_file, image_root)


@pytest.mark.parametrize("height, message", [
    ("forty", r"image 1 has height 'forty' \(expected a positive whole number of pixels\)"),
    (float("nan"), r"image 1 has height nan"),
    (0, r"image 1 has height 0"),
    (40.5, r"image 1 has height 40.5"),
])
def test_non_numeric_image_sizes_are_refused_by_name(write_coco, height, message):
    images = [{"id": 1, "file_name": "im1.png", "height": 40, "width": 60}]
    json_file, image_root = write_coco([], images=images)
    text = open(json_file).read().replace('"height": 40', f'"height": {json.dumps(height)}')
    open(json_file, "w").write(text)
    with pytest.raises(DatasetError, match=rf"{json_file}: {message}"):
        load_coco_json(json_file, image_root)


def test_whole_float_sizes_are_accepted(write_coco):
    json_file, image_root = write_coco([], images=[{"id": 1, "file_name": "im1.png", "height": 40, "width": 60}])
    text = open(json_file).read().replace('"height": 40', '"height": 40.0')
    open(json_file, "w").write(text)
    assert load_coco_json(json_file, image_root)[0]["height"] == 40


def test_non_utf8_file_is_named(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"images": [], "categories": [{"id": 1, "name": "caf\xe9"}]}')
    with pytest.raises(DatasetError, match=r"latin1\.json: not UTF-8 text"):
        load_coco_json(str(path), str(tmp_path))
