"""COCO box / mask AP with pycocotools, detectron2's COCOEvaluator contract.

pycocotools' ``summarize()`` lines ("Average Precision  (AP) @[ IoU=0.50:0.95 | ...") go to stdout
exactly as pycocotools prints them (launch scripts parse them) and are also logged.
"""
import contextlib
import copy
import io
import itertools
import json
import logging
import os
import sys
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.distributed as dist
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..config.errors import UserError
from ..data.catalog import DatasetCatalog, MetadataCatalog
from ..data.coco import read_coco_json
from ..structures import BoxMode
from .evaluator import DatasetEvaluator
from .table import create_small_table

__all__ = ["COCOEvaluator", "instances_to_coco_json"]

logger = logging.getLogger(__name__)

_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
RESULTS_FILE = "coco_instances_results.json"
METRICS_FILE = "coco_eval_metrics.json"
PREDICTIONS_FILE = "instances_predictions.pth"


def instances_to_coco_json(instances, image_id) -> List[dict]:
    """Predictions of one image -> COCO result dicts.

    ``instances``: Instances with pred_boxes (XYXY), scores, pred_classes (contiguous ids) and
    optionally pred_masks (bool [N, H, W]). Boxes become XYWH lists; masks compressed RLE with ascii
    counts. Category ids stay contiguous (the evaluator maps them back).
    """
    if len(instances) == 0:
        return []
    boxes = instances.pred_boxes.tensor.detach().cpu().to(torch.float64).numpy()
    boxes = BoxMode.convert(boxes, BoxMode.XYXY_ABS, BoxMode.XYWH_ABS).tolist()
    scores = instances.scores.detach().cpu().tolist()
    classes = instances.pred_classes.detach().cpu().tolist()
    rles = None
    if instances.has("pred_masks"):
        masks = instances.pred_masks.detach().cpu().numpy()
        rles = []
        for mask in masks:
            rle = mask_util.encode(np.asfortranarray(mask[:, :, None].astype(np.uint8)))[0]
            rle["counts"] = rle["counts"].decode("ascii")
            rles.append(rle)
    results = []
    for index in range(len(boxes)):
        result = {"image_id": image_id, "category_id": int(classes[index]), "bbox": boxes[index], "score": float(scores[index])}
        if rles is not None:
            result["segmentation"] = rles[index]
        results.append(result)
    return results


def _gather_to_main(items: list) -> Optional[list]:
    """Concatenate ``items`` from every rank on rank 0 (None elsewhere); a no-op when not distributed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return items
    gathered: List[Optional[list]] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    if dist.get_rank() != 0:
        return None
    return list(itertools.chain.from_iterable(gathered))


def _logs_to_stdout(log: logging.Logger) -> bool:
    """Whether an INFO record of ``log`` is written to sys.stdout by some handler."""
    if not log.isEnabledFor(logging.INFO):
        return False
    current: Optional[logging.Logger] = log
    while current is not None:
        for handler in current.handlers:
            if getattr(handler, "stream", None) is sys.stdout and handler.level <= logging.INFO:
                return True
        current = current.parent if current.propagate else None
    return False


def _faster_cocoeval():
    """faster-coco-eval's COCOeval (pip install faster-coco-eval, the ``fast-eval`` extra), or None."""
    try:
        from faster_coco_eval import COCOeval_faster
    except ImportError:
        return None
    return COCOeval_faster


class COCOEvaluator(DatasetEvaluator):
    """COCO AP of instance predictions on a registered dataset with a COCO json_file.

    Args:
        dataset_name: a MetadataCatalog name with ``json_file`` and ``thing_dataset_id_to_contiguous_id``
            (set by load_coco_json / register_coco_instances / register_synthetic).
        output_dir: where to write detectron2's files (optional): instances_predictions.pth
            (``torch.save`` of ``[{"image_id", "instances": [COCO result dicts]}]``, contiguous
            category ids), coco_instances_results.json (dataset category ids) and coco_eval_metrics.json.
        distributed: gather predictions from all ranks; only rank 0 evaluates and returns results.
        tasks: subset of ("bbox", "segm"); "segm" is skipped with a warning when no prediction has masks.
            Empty: the predictions are written and nothing is evaluated (``evaluate`` returns {}).
        only_processed_images: score only the images that were processed (a run stopped early,
            ``test_net --infer-steps``); by default every image of the dataset counts, so one not
            processed counts as missed.
        use_fast_impl: evaluate with faster-coco-eval when it is installed (detectron2's option name;
            its own fast evaluator is C++ too), else pycocotools. The same numbers either way.
    """

    def __init__(self, dataset_name: str, output_dir: Optional[str] = None, distributed: bool = True,
                 tasks: Sequence[str] = ("bbox", "segm"), only_processed_images: bool = False,
                 use_fast_impl: bool = True):
        unknown = [task for task in tasks if task not in ("bbox", "segm")]
        if unknown:
            raise ValueError(f"COCOEvaluator: unknown tasks {unknown} (choose from: bbox, segm)")
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._tasks = tuple(tasks)
        self._only_processed_images = only_processed_images
        self._use_fast_impl = use_fast_impl
        self._metadata = MetadataCatalog.get(dataset_name)
        json_file = self._metadata.get("json_file")
        if json_file is None:
            raise UserError(f"dataset '{dataset_name}' has no json_file in its metadata; COCOEvaluator needs one")
        if not os.path.isfile(json_file) or self._metadata.get("thing_dataset_id_to_contiguous_id") is None:
            DatasetCatalog.get(dataset_name)  # lazily generated sets (shapes) appear on first load
        self._coco_api = self._read_ground_truth(json_file)
        id_map = self._metadata.get("thing_dataset_id_to_contiguous_id")
        if id_map is None:
            id_map = {category_id: index for index, category_id in enumerate(sorted(self._coco_api.getCatIds()))}
        self._contiguous_to_dataset_id = {contiguous: dataset_id for dataset_id, contiguous in id_map.items()}
        self._predictions: List[dict] = []

    def _read_ground_truth(self, json_file: str) -> COCO:
        return read_coco_json(json_file)

    def reset(self) -> None:
        self._predictions = []

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        """Convert each image's ``output["instances"]`` to COCO results keyed by ``input["image_id"]``."""
        for model_input, output in zip(inputs, outputs):
            if "image_id" not in model_input:
                raise KeyError(f"COCOEvaluator: input for {model_input.get('file_name')} has no 'image_id'")
            prediction = {"image_id": model_input["image_id"], "instances": []}
            if "instances" in output:
                prediction["instances"] = instances_to_coco_json(output["instances"], model_input["image_id"])
            self._predictions.append(prediction)

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        """Gather, evaluate every task, save files; returns {} on ranks other than 0."""
        predictions = _gather_to_main(self._predictions) if self._distributed else self._predictions
        if predictions is None:
            return {}
        self._save_predictions(predictions)
        coco_results = list(itertools.chain.from_iterable(p["instances"] for p in predictions))
        num_classes = len(self._contiguous_to_dataset_id)
        for result in coco_results:
            if result["category_id"] not in self._contiguous_to_dataset_id:
                raise UserError(
                    f"COCOEvaluator: predicted class {result['category_id']} for image {result['image_id']} "
                    f"is outside 0..{num_classes - 1} of dataset '{self._dataset_name}'"
                )
            result["category_id"] = self._contiguous_to_dataset_id[result["category_id"]]
        if not coco_results:
            logger.warning(
                "COCOEvaluator: no predictions on dataset '%s' (%d images processed): every AP is 0",
                self._dataset_name, len(predictions),
            )
        self._save(RESULTS_FILE, coco_results)
        if not self._tasks:
            return {}
        image_ids = self._image_ids(predictions)
        results = OrderedDict()
        has_masks = any("segmentation" in r for r in coco_results)
        for task in self._tasks:
            if task == "segm" and coco_results and not has_masks:
                logger.warning("COCOEvaluator: predictions have no masks; skipping the 'segm' task")
                continue
            coco_eval = self._run_cocoeval(coco_results, task, image_ids)
            results[task] = self._derive_results(coco_eval, task)
        self._save(METRICS_FILE, results)
        return results

    def _save_predictions(self, predictions: List[dict]) -> None:
        """detectron2's instances_predictions.pth (before the category ids are mapped back)."""
        if not self._output_dir:
            return
        os.makedirs(self._output_dir, exist_ok=True)
        path = os.path.join(self._output_dir, PREDICTIONS_FILE)
        torch.save(copy.deepcopy(predictions), path)
        logger.info("Saved %s", path)

    def _image_ids(self, predictions: List[dict]) -> Optional[List[int]]:
        """The image ids to score: None (all of the dataset's) unless only the processed ones count."""
        if not self._only_processed_images:
            return None
        image_ids = sorted({p["image_id"] for p in predictions})
        total = len(self._coco_api.getImgIds())
        if len(image_ids) < total:
            logger.warning("COCOEvaluator: scoring the %d processed images of the %d in '%s'",
                           len(image_ids), total, self._dataset_name)
        return image_ids

    def _save(self, file_name: str, payload) -> None:
        if not self._output_dir:
            return
        os.makedirs(self._output_dir, exist_ok=True)
        path = os.path.join(self._output_dir, file_name)
        with open(path, "w", encoding="utf-8") as stream:
            json.dump(payload, stream)
        logger.info("Saved %s", path)

    def _load_results(self, coco_results: List[dict], task: str) -> COCO:
        if not coco_results:  # loadRes cannot take an empty list; an empty detection set scores 0
            coco_dt = COCO()
            coco_dt.dataset = {
                "images": copy.deepcopy(self._coco_api.dataset["images"]),
                "categories": copy.deepcopy(self._coco_api.dataset["categories"]),
                "annotations": [],
            }
            with contextlib.redirect_stdout(io.StringIO()):
                coco_dt.createIndex()
            return coco_dt
        # loadRes adds keys to the dicts it gets (area, id, a box polygon): give it copies
        coco_results = copy.deepcopy(coco_results)
        if task == "segm":
            # without "bbox", loadRes computes areas from the masks, as COCO's segm evaluation expects
            for result in coco_results:
                result.pop("bbox", None)
        with contextlib.redirect_stdout(io.StringIO()):
            return self._coco_api.loadRes(coco_results)

    def _run_cocoeval(self, coco_results: List[dict], task: str, image_ids: Optional[List[int]] = None) -> COCOeval:
        fast = _faster_cocoeval() if self._use_fast_impl else None
        summary = io.StringIO()
        detections = self._load_results(coco_results, task)
        if fast is not None:  # the same numbers, computed in C++ (tests/evaluation: equal stats)
            coco_eval = fast(self._coco_api, detections, task, print_function=lambda line: summary.write(f"{line}\n"))
        else:
            coco_eval = COCOeval(self._coco_api, detections, task)
        if image_ids is not None:
            coco_eval.params.imgIds = image_ids
        with contextlib.redirect_stdout(io.StringIO()):
            coco_eval.evaluate()
            coco_eval.accumulate()
        with contextlib.redirect_stdout(summary):
            coco_eval.summarize()
        if fast is not None:  # pycocotools' 12 lines (faster-coco-eval adds AR at IoU .50 and .75, and progress)
            summary = io.StringIO("".join(line for line in summary.getvalue().splitlines(keepends=True)
                                          if line.startswith(" Average Precision") or
                                          (line.startswith(" Average Recall") and "IoU=0.50:0.95" in line)))
        # pycocotools' exact lines (launch scripts parse them): the log's continuation lines carry them
        # unprefixed; printed as well only where the log does not reach stdout
        logger.info("COCOeval summary (%s) on %s:\n%s", task, self._dataset_name, summary.getvalue().rstrip())
        if not _logs_to_stdout(logger):
            sys.stdout.write(summary.getvalue())
            sys.stdout.flush()
        return coco_eval

    def _derive_results(self, coco_eval: COCOeval, task: str) -> Dict[str, float]:
        """COCOeval stats in percent: AP, AP50, AP75, APs, APm, APl and AP-<class> (NaN where undefined)."""
        results = OrderedDict(
            (metric, float(coco_eval.stats[index] * 100) if coco_eval.stats[index] >= 0 else float("nan"))
            for index, metric in enumerate(_METRICS)
        )
        logger.info("Evaluation results for %s:\n%s", task, create_small_table(results))
        class_names = self._metadata.get("thing_classes")
        if class_names:
            # precision: [IoU thresholds, recall points, classes, area ranges, max dets]
            precisions = coco_eval.eval["precision"]
            category_ids = coco_eval.params.catIds
            for contiguous_id, name in enumerate(class_names):
                dataset_id = self._contiguous_to_dataset_id.get(contiguous_id)
                if dataset_id not in category_ids:
                    continue
                precision = precisions[:, :, category_ids.index(dataset_id), 0, -1]
                precision = precision[precision > -1]
                results[f"AP-{name}"] = float(np.mean(precision) * 100) if precision.size else float("nan")
            per_class = {key: value for key, value in results.items() if key.startswith("AP-")}
            logger.info("Per-category %s AP:\n%s", task, create_small_table(per_class))
        return results
