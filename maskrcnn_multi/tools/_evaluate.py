"""Evaluating a checkpoint: the one code path of ``test_net`` and ``train_net --eval-only``.

Build the model, load MODEL.WEIGHTS, write config.yaml (once the weights have loaded), run
``DefaultTrainer.test`` (which goes through ``engine.inference`` and ``inference_on_dataset``) and,
with TEST.AUG.ENABLED, ``test_with_TTA``; ``report_results`` then prints (rank 0) the AP tables and
detectron2's copypaste lines and checks TEST.EXPECTED_RESULTS.
"""
import logging
import os
import sys
from typing import Dict, Optional, Tuple

from maskrcnn_multi.checkpoint import DetectionCheckpointer
from maskrcnn_multi.engine.launch import is_main_process
from maskrcnn_multi.engine.runtime import apply_device_settings
from maskrcnn_multi.engine.trainer import DefaultTrainer
from maskrcnn_multi.evaluation import InferenceTiming, create_small_table, print_csv_format, verify_results

__all__ = ["evaluate_checkpoint", "print_results", "report_results", "save_config"]

logger = logging.getLogger("maskrcnn_multi.tools.evaluate")


def save_config(cfg) -> None:
    """Write OUTPUT_DIR/config.yaml (rank 0). Called once the run has proven itself (weights loaded
    for an evaluation, the first training iteration done), so a mistaken command leaves an earlier
    run's config.yaml in place."""
    if is_main_process():
        path = os.path.join(cfg.OUTPUT_DIR, "config.yaml")
        with open(path, "w") as config_file:
            config_file.write(cfg.dump())
        logger.info("Full config saved to %s", path)


def print_results(results) -> None:
    """An AP table per dataset and task, then detectron2's copypaste lines."""
    if not results:
        return
    per_dataset = results if all(isinstance(v, dict) and all(isinstance(x, dict) for x in v.values())
                                 for v in results.values()) else {"": results}
    for dataset_name, tasks in per_dataset.items():
        for task, metrics in tasks.items():
            headline = {name: value for name, value in metrics.items() if "-" not in name}
            print(f"\n{task} AP{' on ' + dataset_name if dataset_name else ''}:\n{create_small_table(headline)}")
        print_csv_format(tasks)
    sys.stdout.flush()


def report_results(cfg, results):
    """Print the results (rank 0); exit status 1 instead of them when TEST.EXPECTED_RESULTS fails."""
    if not is_main_process():
        return results
    print_results(results)
    if results and not verify_results(cfg, results):
        return 1
    return results


def evaluate_checkpoint(cfg, backend, resume: bool = False, max_batches: Optional[int] = None,
                        skip_eval: bool = False) -> Tuple[Dict, Dict[str, InferenceTiming]]:
    """MODEL.WEIGHTS (or, with ``resume``, OUTPUT_DIR's last checkpoint) on every DATASETS.TEST.

    Returns ``(results, timings)``: ``DefaultTrainer.test``'s results (its shape: one dataset's
    ``{task: metrics}`` or ``{dataset: ...}``; {} with ``skip_eval``), plus ``test_with_TTA``'s
    ``"<dataset>_TTA"`` entries with TEST.AUG.ENABLED (not with ``skip_eval`` or ``max_batches``), and
    ``{dataset: InferenceTiming}`` of the plain run. Nothing is printed (``report_results``).
    """
    apply_device_settings(cfg, backend, training=False)
    model = DefaultTrainer.build_model(cfg)
    DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=resume)
    save_config(cfg)
    timings: Dict[str, InferenceTiming] = {}
    results = DefaultTrainer.test(cfg, model, backend=backend, max_batches=max_batches, skip_eval=skip_eval,
                                  timings=timings)
    if cfg.TEST.AUG.ENABLED and not skip_eval and max_batches is None:
        results.update(DefaultTrainer.test_with_TTA(cfg, model, backend=backend))
    return results, timings
