"""Evaluation: COCO AP (pycocotools), LVIS AP (its federated rules over pycocotools), the evaluator protocol, inference over a loader, result tables."""
from .coco_evaluation import COCOEvaluator, instances_to_coco_json
from .lvis_evaluation import LVISEvaluator
from .evaluator import DatasetEvaluator, DatasetEvaluators, inference_context, inference_on_dataset
from .table import create_small_table, print_csv_format
from .verify import verify_results
