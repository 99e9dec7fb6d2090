"""LVIS AP with pycocotools: the LVIS API's federated rules, re-expressed for COCOeval.

The official LVIS toolkit (``lvis`` on PyPI) is not a dependency; what it computes differently from
plain COCOeval is reproduced here:
- up to 300 detections per image (TEST.DETECTIONS_PER_IMAGE 300 in detectron2's LVIS configs);
- an image is evaluated only for the categories it was checked for: those present on it
  (positive) or listed in its ``neg_category_ids``; detections of other categories are dropped;
- for a category in an image's ``not_exhaustive_category_ids``, detections that match no annotation
  are not false positives: a crowd region covering the whole image is added for that category, so
  COCOeval ignores them as it ignores detections inside a crowd region;
- APr, APc, APf: AP over the rare, common and frequent categories (the categories' ``frequency``).
Categories without ground truth in the evaluated images have no AP and are left out of the means, as
in COCOeval and LVIS.
"""
import logging
from collections import OrderedDict, defaultdict
from typing import Dict, List

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.coco import read_coco_json
from ..data.lvis import lvis_to_coco
from .coco_evaluation import COCOEvaluator
from .table import create_small_table

__all__ = ["LVISEvaluator"]

logger = logging.getLogger(__name__)

MAX_DETECTIONS = 300
_AREAS = {"APs": 1, "APm": 2, "APl": 3}  # COCOeval's area-range indices (0 is "all")


def _add_not_exhaustive_regions(dataset: dict) -> None:
    """A whole-image crowd annotation per (image, not-exhaustive category), in place."""
    next_id = max((a["id"] for a in dataset.get("annotations", []) if isinstance(a.get("id"), int)), default=0) + 1
    for image in dataset.get("images", []):
        height, width = image["height"], image["width"]
        for category_id in image.get("not_exhaustive_category_ids", []):
            rle = mask_util.encode(np.asfortranarray(np.ones((height, width), dtype=np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            dataset["annotations"].append({
                "id": next_id, "image_id": image["id"], "category_id": category_id, "iscrowd": 1,
                "bbox": [0, 0, width, height], "area": float(height * width), "segmentation": rle,
            })
            next_id += 1


class LVISEvaluator(COCOEvaluator):
    """COCOEvaluator with LVIS's federated rules (module docstring); results add APr, APc, APf."""

    def _read_ground_truth(self, json_file: str) -> COCO:
        def adapt(dataset: dict) -> None:
            lvis_to_coco(dataset)
            _add_not_exhaustive_regions(dataset)

        coco_api = read_coco_json(json_file, adapt)
        self._checked = defaultdict(set)  # image id -> categories it was checked for
        for annotation in coco_api.dataset["annotations"]:
            self._checked[annotation["image_id"]].add(annotation["category_id"])
        for image in coco_api.dataset["images"]:
            self._checked[image["id"]].update(image.get("neg_category_ids", []))
        return coco_api

    def _load_results(self, coco_results: List[dict], task: str) -> COCO:
        per_image = defaultdict(list)
        for result in coco_results:
            if result["category_id"] in self._checked.get(result["image_id"], ()):
                per_image[result["image_id"]].append(result)
        kept = []
        for results in per_image.values():
            kept.extend(sorted(results, key=lambda r: -r["score"])[:MAX_DETECTIONS])
        return super()._load_results(kept, task)

    def _run_cocoeval(self, coco_results: List[dict], task: str) -> COCOeval:
        coco_eval = COCOeval(self._coco_api, self._load_results(coco_results, task), task)
        coco_eval.params.maxDets = [MAX_DETECTIONS]
        coco_eval.evaluate()
        coco_eval.accumulate()
        return coco_eval

    def _derive_results(self, coco_eval: COCOeval, task: str) -> Dict[str, float]:
        """AP, AP50, AP75, APs, APm, APl, APr, APc, APf in percent (NaN where undefined)."""
        precision = coco_eval.eval["precision"][..., 0]  # [IoU, recall, category, area]
        iou_thresholds = coco_eval.params.iouThrs

        def mean_ap(values: np.ndarray) -> float:
            values = values[values > -1]
            return float(values.mean() * 100) if values.size else float("nan")

        results = OrderedDict()
        results["AP"] = mean_ap(precision[:, :, :, 0])
        results["AP50"] = mean_ap(precision[np.isclose(iou_thresholds, 0.5), :, :, 0])
        results["AP75"] = mean_ap(precision[np.isclose(iou_thresholds, 0.75), :, :, 0])
        for name, area in _AREAS.items():
            results[name] = mean_ap(precision[:, :, :, area])
        frequencies = self._metadata.get("thing_frequencies") or []
        category_ids = coco_eval.params.catIds
        for group in ("r", "c", "f"):
            members = [category_ids.index(self._contiguous_to_dataset_id[index])
                       for index, frequency in enumerate(frequencies)
                       if frequency == group and self._contiguous_to_dataset_id.get(index) in category_ids]
            results[f"AP{group}"] = mean_ap(precision[:, :, members, 0]) if members else float("nan")
        logger.info("LVIS evaluation results for %s on %s:\n%s", task, self._dataset_name, create_small_table(results))
        return results
