"""LVISEvaluator: LVIS's federated rules on pycocotools, on a case small enough to count by hand."""
import importlib.util
from pathlib import Path

import pytest
import torch

from maskrcnn_multi.data import DatasetCatalog, MetadataCatalog, register_lvis_instances
from maskrcnn_multi.engine.trainer import DefaultTrainer
from maskrcnn_multi.evaluation import LVISEvaluator
from maskrcnn_multi.structures import Boxes, Instances


def _write_lvis(tmp_path):
    path = Path(__file__).resolve().parents[1] / "data" / "test_lvis.py"
    spec = importlib.util.spec_from_file_location("_lvis_data_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_lvis(tmp_path)


def _instances(detections):
    """[(contiguous class, score, (x0, y0, x1, y1))] -> Instances of a 40x60 image."""
    instances = Instances((40, 60))
    instances.pred_boxes = Boxes(torch.tensor([box for _, _, box in detections], dtype=torch.float32))
    instances.scores = torch.tensor([score for _, score, _ in detections])
    instances.pred_classes = torch.tensor([cls for cls, _, _ in detections])
    return instances


def test_federated_rules_count_only_checked_categories_and_ignore_not_exhaustive_misses(tmp_path):
    json_file, root = _write_lvis(tmp_path)
    register_lvis_instances("test_lvis_eval", {}, json_file, root, replace=True)
    try:
        DatasetCatalog.get("test_lvis_eval")
        evaluator = DefaultTrainer.build_evaluator(_cfg(tmp_path), "test_lvis_eval")
        assert isinstance(evaluator, LVISEvaluator)
        evaluator.reset()
        # image 1 (apple present, bat checked absent): apple exact; a bat there is a counted false
        # positive; a cat there is dropped (image 1 was never checked for cats)
        evaluator.process([{"image_id": 1}], [{"instances": _instances([
            (0, 0.9, (5, 5, 15, 15)), (1, 0.9, (40, 20, 50, 30)), (2, 0.99, (40, 20, 50, 30))])}])
        # image 2 (apple not exhaustive): apple exact, an unmatched apple is ignored, bat and cat exact
        evaluator.process([{"image_id": 2}], [{"instances": _instances([
            (0, 0.95, (40, 25, 55, 35)), (0, 0.8, (5, 5, 15, 15)), (1, 0.8, (30, 5, 40, 15)), (2, 0.8, (5, 25, 15, 35))])}])
        results = evaluator.evaluate()["bbox"]
    finally:
        DatasetCatalog.remove("test_lvis_eval")
        MetadataCatalog.remove("test_lvis_eval")
    # apple: 2 of 2, no false positive -> 1.0; bat: FP (0.9) before TP (0.8) -> 0.5; cat: 1.0
    assert results["APf"] == pytest.approx(100.0)
    assert results["APc"] == pytest.approx(50.0)
    assert results["APr"] == pytest.approx(100.0)
    assert results["AP"] == pytest.approx(250.0 / 3)


def _cfg(tmp_path):
    from maskrcnn_multi.config import get_cfg

    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    return cfg
