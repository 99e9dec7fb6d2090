"""COCOEvaluator: perfect predictions score 100, none score 0, files and summary lines are produced."""
import json
import logging
import os
import sys

import pytest
import torch

from maskrcnn_multi.data import DatasetCatalog, MetadataCatalog, register_coco_instances
from maskrcnn_multi.data.synthetic import generate_shapes_dataset
from maskrcnn_multi.evaluation import COCOEvaluator, create_small_table, instances_to_coco_json
from maskrcnn_multi.structures import Boxes, BoxMode, Instances, polygons_to_bitmask

DATASET = "unit_eval_shapes_val"


@pytest.fixture(scope="module")
def dataset_dicts(tmp_path_factory):
    root = generate_shapes_dataset(str(tmp_path_factory.mktemp("shapes")), num_train=0, num_val=4, seed=2)
    register_coco_instances(DATASET, {}, os.path.join(root, "annotations", "instances_val.json"),
                            os.path.join(root, "val"))
    yield DatasetCatalog.get(DATASET)
    DatasetCatalog.remove(DATASET)
    MetadataCatalog.remove(DATASET)


def _ground_truth_outputs(dataset_dict, with_masks=True):
    """The model's output format holding exactly the ground truth, score 1."""
    height, width = dataset_dict["height"], dataset_dict["width"]
    annotations = dataset_dict["annotations"]
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations]
    instances = Instances((height, width))
    instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    instances.scores = torch.ones(len(annotations))
    instances.pred_classes = torch.tensor([a["category_id"] for a in annotations], dtype=torch.int64)
    if with_masks:
        masks = [torch.from_numpy(polygons_to_bitmask(a["segmentation"], height, width)) for a in annotations]
        instances.pred_masks = torch.stack(masks) if masks else torch.zeros((0, height, width), dtype=torch.bool)
    return [{"instances": instances}]


def _run(evaluator, dataset_dicts, make_outputs):
    evaluator.reset()
    for dataset_dict in dataset_dicts:
        evaluator.process([dataset_dict], make_outputs(dataset_dict))
    return evaluator.evaluate()


def test_perfect_predictions_score_100(dataset_dicts, tmp_path, capsys):
    evaluator = COCOEvaluator(DATASET, output_dir=str(tmp_path))
    results = _run(evaluator, dataset_dicts, _ground_truth_outputs)
    assert list(results) == ["bbox", "segm"]
    for task in ("bbox", "segm"):
        assert results[task]["AP"] == pytest.approx(100.0)
        assert results[task]["AP50"] == pytest.approx(100.0)
        assert {"AP75", "APs", "APm", "APl", "AP-rectangle", "AP-ellipse", "AP-triangle"} <= set(results[task])
    stdout = capsys.readouterr().out
    assert stdout.count(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000") == 2
    assert stdout.count("Average Recall") == 12
    saved = json.loads((tmp_path / "coco_instances_results.json").read_text())
    assert {r["category_id"] for r in saved} <= {1, 2, 3} and isinstance(saved[0]["segmentation"]["counts"], str)
    metrics = json.loads((tmp_path / "coco_eval_metrics.json").read_text())
    assert metrics["bbox"]["AP"] == pytest.approx(100.0)


def test_summary_reaches_stdout_once_when_the_log_goes_there(dataset_dicts, capsys):
    """train_net logs to stdout: the summary lines must then not be printed a second time."""
    package_logger = logging.getLogger("maskrcnn_multi")
    handler = logging.StreamHandler(sys.stdout)  # sys.stdout is capsys' stream here
    saved_level = package_logger.level
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)
    try:
        _run(COCOEvaluator(DATASET), dataset_dicts, _ground_truth_outputs)
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(saved_level)
    stdout = capsys.readouterr().out
    assert stdout.count("\n Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000\n") == 2


def test_empty_predictions_score_0_with_a_warning(dataset_dicts, caplog, capsys):
    empty = lambda dataset_dict: [{"instances": Instances((dataset_dict["height"], dataset_dict["width"]),
                                                          pred_boxes=Boxes(torch.zeros(0, 4)),
                                                          scores=torch.zeros(0),
                                                          pred_classes=torch.zeros(0, dtype=torch.int64))}]
    with caplog.at_level(logging.WARNING, logger="maskrcnn_multi.evaluation.coco_evaluation"):
        results = _run(COCOEvaluator(DATASET), dataset_dicts, empty)
    assert results["bbox"]["AP"] == 0.0 and results["segm"]["AP"] == 0.0
    assert any("no predictions on dataset" in r.getMessage() for r in caplog.records)
    assert "maxDets=100 ] = 0.000" in capsys.readouterr().out


def test_boxes_only_skip_segm_and_wrong_classes_lower_ap(dataset_dicts):
    def shifted_classes(dataset_dict):
        outputs = _ground_truth_outputs(dataset_dict, with_masks=False)
        outputs[0]["instances"].pred_classes = (outputs[0]["instances"].pred_classes + 1) % 3
        return outputs

    results = _run(COCOEvaluator(DATASET), dataset_dicts, shifted_classes)
    assert list(results) == ["bbox"] and results["bbox"]["AP"] == pytest.approx(0.0)


def test_out_of_range_class_is_named(dataset_dicts):
    def bad_class(dataset_dict):
        outputs = _ground_truth_outputs(dataset_dict, with_masks=False)
        outputs[0]["instances"].pred_classes[:] = 7
        return outputs

    with pytest.raises(ValueError, match="predicted class 7 for image 1 is outside 0..2"):
        _run(COCOEvaluator(DATASET), dataset_dicts[:1], bad_class)


def test_instances_to_coco_json_converts_boxes_to_xywh():
    instances = Instances((10, 10), pred_boxes=Boxes(torch.tensor([[1.0, 2.0, 5.0, 7.0]])),
                          scores=torch.tensor([0.5]), pred_classes=torch.tensor([2]))
    (result,) = instances_to_coco_json(instances, 42)
    assert result == {"image_id": 42, "category_id": 2, "bbox": [1.0, 2.0, 4.0, 5.0], "score": 0.5}


def test_create_small_table():
    table = create_small_table({"AP": 50.0, "AP50": 75.25})
    assert table.splitlines() == ["|   AP   |  AP50  |", "|:------:|:------:|", "| 50.000 | 75.250 |"]


def test_writes_detectron2s_instances_predictions_pth(dataset_dicts, tmp_path):
    _run(COCOEvaluator(DATASET, output_dir=str(tmp_path)), dataset_dicts, _ground_truth_outputs)
    predictions = torch.load(tmp_path / "instances_predictions.pth", weights_only=False)
    assert [p["image_id"] for p in predictions] == [d["image_id"] for d in dataset_dicts]
    first = predictions[0]["instances"][0]
    # contiguous category ids (detectron2 maps them back only in the results json)
    assert set(first) >= {"image_id", "category_id", "bbox", "score", "segmentation"}
    assert {r["category_id"] for p in predictions for r in p["instances"]} <= {0, 1, 2}


def test_no_tasks_writes_predictions_and_computes_nothing(dataset_dicts, tmp_path, capsys):
    results = _run(COCOEvaluator(DATASET, output_dir=str(tmp_path), tasks=()), dataset_dicts, _ground_truth_outputs)
    assert results == {} and "Average Precision" not in capsys.readouterr().out
    assert (tmp_path / "coco_instances_results.json").is_file() and (tmp_path / "instances_predictions.pth").is_file()
    assert not (tmp_path / "coco_eval_metrics.json").exists()


def test_only_processed_images_scores_the_images_run(dataset_dicts, caplog):
    partial = dataset_dicts[:2]
    assert _run(COCOEvaluator(DATASET), partial, _ground_truth_outputs)["bbox"]["AP"] < 100.0
    with caplog.at_level(logging.WARNING, logger="maskrcnn_multi.evaluation.coco_evaluation"):
        results = _run(COCOEvaluator(DATASET, only_processed_images=True), partial, _ground_truth_outputs)
    assert results["bbox"]["AP"] == pytest.approx(100.0) and results["segm"]["AP"] == pytest.approx(100.0)
    assert any("scoring the 2 processed images of the 4" in r.getMessage() for r in caplog.records)


def _noisy_outputs(dataset_dict, rng):
    """Ground truth moved by a few pixels, random scores and classes for some, false positives."""
    (outputs,) = _ground_truth_outputs(dataset_dict)
    instances = outputs["instances"]
    count = len(instances)
    boxes = instances.pred_boxes.tensor + torch.from_numpy(rng.normal(0, 3, (count, 4))).float()
    extra = torch.from_numpy(rng.uniform(0, 100, (5, 2))).float()
    boxes = torch.cat([boxes, torch.cat([extra, extra + 20], dim=1)])
    noisy = Instances(instances.image_size)
    noisy.pred_boxes = Boxes(boxes)
    noisy.scores = torch.from_numpy(rng.uniform(0.05, 1, count + 5)).float()
    classes = instances.pred_classes.clone()
    classes[torch.from_numpy(rng.random(count) < 0.2)] = 0
    noisy.pred_classes = torch.cat([classes, torch.from_numpy(rng.integers(0, 3, 5))])
    masks = torch.roll(instances.pred_masks, shifts=int(rng.integers(-3, 4)), dims=2)
    noisy.pred_masks = torch.cat([masks, torch.zeros((5, *masks.shape[1:]), dtype=torch.bool)])
    noisy.pred_masks[count:, 20:40, 20:40] = True
    return [{"instances": noisy}]


def test_faster_coco_eval_gives_pycocotools_numbers(dataset_dicts):
    pytest.importorskip("faster_coco_eval", reason="faster-coco-eval is not installed (pip install -e .[fast-eval])")
    import numpy as np

    results = {}
    for fast in (True, False):
        rng = np.random.default_rng(3)
        evaluator = COCOEvaluator(DATASET, distributed=False, use_fast_impl=fast)
        results[fast] = _run(evaluator, dataset_dicts, lambda d: _noisy_outputs(d, rng))
    assert 0 < results[False]["bbox"]["AP"] < 100 and 0 < results[False]["segm"]["AP"] < 100
    for task in ("bbox", "segm"):
        assert results[True][task].keys() == results[False][task].keys()
        for metric, value in results[False][task].items():
            assert results[True][task][metric] == pytest.approx(value, abs=1e-9, nan_ok=True), (task, metric)
