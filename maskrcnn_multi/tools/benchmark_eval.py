"""Time COCO evaluation (bbox + segm) of a synthetic COCO-size set, pycocotools against faster-coco-eval.

    python -m maskrcnn_multi.tools.benchmark_eval --images 5000

The set: ``--images`` 640x480 images with ``--objects`` ground-truth polygons each (80 categories) and
``--detections`` per image (the ground truth moved by a few pixels with random scores, plus false
positives), every detection with an RLE mask, as COCOEvaluator receives a model's output. Prints one
line per implementation: seconds for bbox, for segm, and the AP (equal across implementations).
"""
import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from typing import Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util

from maskrcnn_multi.config.errors import UserError
from maskrcnn_multi.data import DatasetCatalog, MetadataCatalog, register_coco_instances
from maskrcnn_multi.evaluation.coco_evaluation import COCOEvaluator, _faster_cocoeval
from maskrcnn_multi.tools._cli import run_main

HEIGHT, WIDTH, CATEGORIES = 480, 640, 80


def _box_polygon(x, y, w, h):
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def synthetic_set(images: int, objects: int, detections: int, seed: int = 0):
    """(COCO ground-truth dict, [{"image_id", "instances": [COCO result dicts]}]) with contiguous ids."""
    rng = np.random.default_rng(seed)
    gt = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": f"c{i}"} for i in range(CATEGORIES)]}
    predictions = []
    for image_id in range(1, images + 1):
        gt["images"].append({"id": image_id, "file_name": f"{image_id}.jpg", "height": HEIGHT, "width": WIDTH})
        boxes = np.column_stack([rng.uniform(0, WIDTH - 120, objects), rng.uniform(0, HEIGHT - 120, objects),
                                 rng.uniform(8, 120, objects), rng.uniform(8, 120, objects)])
        classes = rng.integers(0, CATEGORIES, objects)
        for box, cls in zip(boxes, classes):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": int(cls) + 1,
                                      "bbox": box.tolist(), "area": float(box[2] * box[3]), "iscrowd": 0,
                                      "segmentation": [_box_polygon(*box.tolist())]})
        picks = rng.integers(0, objects, detections)
        det_boxes = boxes[picks] + rng.normal(0, 4, (detections, 4))
        det_boxes[objects:] = np.column_stack([rng.uniform(0, WIDTH - 60, detections - objects),
                                               rng.uniform(0, HEIGHT - 60, detections - objects),
                                               rng.uniform(8, 60, (detections - objects, 2))])
        det_boxes[:, 2:] = np.clip(det_boxes[:, 2:], 2, None)
        results = []
        rles = mask_util.frPyObjects([_box_polygon(*b.tolist()) for b in det_boxes], HEIGHT, WIDTH)
        for box, rle, cls, score in zip(det_boxes, rles, classes[picks], rng.uniform(0.05, 1, detections)):
            rle["counts"] = rle["counts"].decode("ascii")
            results.append({"image_id": image_id, "category_id": int(cls), "bbox": box.tolist(),
                            "score": float(score), "segmentation": rle})
        predictions.append({"image_id": image_id, "instances": results})
    return gt, predictions


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000, help="images in the set (default: COCO val's 5000)")
    parser.add_argument("--objects", type=int, default=7, help="ground-truth objects per image (COCO: ~7)")
    parser.add_argument("--detections", type=int, default=100, help="detections per image (default 100)")
    args = parser.parse_args(argv)
    if args.images < 1 or args.objects < 1 or args.detections < args.objects:
        raise UserError("--images and --objects must be >= 1 and --detections >= --objects")
    gt, predictions = synthetic_set(args.images, args.objects, args.detections)
    implementations = [("pycocotools", False)] + ([("faster-coco-eval", True)] if _faster_cocoeval() else [])
    with tempfile.TemporaryDirectory() as folder:
        json_file = os.path.join(folder, "instances.json")
        with open(json_file, "w") as stream:
            json.dump(gt, stream)
        register_coco_instances("benchmark_eval", {}, json_file, folder, replace=True)
        print(f"{args.images} images of {HEIGHT}x{WIDTH}, {args.objects} objects and {args.detections} detections each")
        for name, fast in implementations:
            line = [name]
            for task in ("bbox", "segm"):
                evaluator = COCOEvaluator("benchmark_eval", distributed=False, tasks=(task,), use_fast_impl=fast)
                evaluator._predictions = [dict(p, instances=[dict(r) for r in p["instances"]]) for p in predictions]
                start = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    results = evaluator.evaluate()
                line.append(f"{task} {time.perf_counter() - start:.1f} s (AP {results[task]['AP']:.3f})")
            print(" | ".join(line), flush=True)
        DatasetCatalog.remove("benchmark_eval")
        MetadataCatalog.remove("benchmark_eval")


def cli() -> int:
    return run_main(main)


if __name__ == "__main__":
    raise SystemExit(cli())
