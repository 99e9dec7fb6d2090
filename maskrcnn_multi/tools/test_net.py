"""Run a trained detector over DATASETS.TEST: predictions, COCO AP, throughput and latency
(detectron2's ``train_net --eval-only`` plus NVIDIA's ``test_net.py`` options).

    python -m maskrcnn_multi.tools.test_net --config-file CFG [--skip-eval] [--infer-steps N] \\
        [--json-summary FILE] [--num-gpus N ...] [--data_path COCO_ROOT] [--dataset NAME JSON IMAGES] \\
        MODEL.WEIGHTS model_final.pth [KEY VALUE ...]

Writes OUTPUT_DIR/inference/<dataset>/ as detectron2 does: instances_predictions.pth and
coco_instances_results.json (and coco_eval_metrics.json when evaluated), prints detectron2's lines
("Total inference time: ... (X s / iter per device, on N devices)", "Total inference pure compute
time: ..."), the throughput ("Total inference throughput: X images/s ...") and the latency
percentiles, then the AP tables. ``--skip-eval``: predictions only, no AP. ``--infer-steps N``: stop
each dataset after N batches (of TEST.IMS_PER_BATCH images per process) and score only the images
run. ``--json-summary FILE``: one JSON object (rank 0) with images_per_s, latency_ms {avg, p50, p90,
p95, p99}, ap {bbox, segm} (null with --skip-eval), device, precision ("exact", "bf16", "fp16"),
memory_format, batch_size (per process), num_devices, images, batches, and the same per dataset
under "datasets". Several processes: ``--num-gpus N`` or torchrun, as train_net. A user error is one
line on stderr and exit code 2; ``train_net --eval-only`` runs the same code (``tools._evaluate``).
"""
import argparse
import json
import logging
import os
import sys
from typing import Dict, Optional, Sequence

from maskrcnn_multi.config import UserError
from maskrcnn_multi.engine.inference import inference_settings
from maskrcnn_multi.engine.launch import is_main_process, launch
from maskrcnn_multi.evaluation import InferenceTiming
from maskrcnn_multi.tools._cli import ArgumentParser, run_main
from maskrcnn_multi.tools._evaluate import evaluate_checkpoint, report_results
from maskrcnn_multi.tools.train_net import add_run_arguments, parse_args as parse_run_args, setup, setup_logging

__all__ = ["argument_parser", "cli", "main", "parse_args", "run", "summary"]

logger = logging.getLogger("maskrcnn_multi.tools.test_net")

_PRECISION_NAMES = {"torch.bfloat16": "bf16", "torch.float16": "fp16"}


def _positive_steps(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number of batches, got {text!r}")
    return int(text)


def argument_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="test_net", description="Inference and COCO evaluation of a trained model.")
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to the config file")
    parser.add_argument("--skip-eval", action="store_true", help="write predictions only, compute no AP")
    parser.add_argument("--infer-steps", type=_positive_steps, default=None, metavar="N",
                        help="stop each dataset after N batches (throughput runs)")
    parser.add_argument("--json-summary", default=None, metavar="FILE",
                        help="write throughput, latency percentiles and AP as one JSON object")
    parser.add_argument("--resume", action="store_true", help="evaluate OUTPUT_DIR/last_checkpoint instead")
    parser.set_defaults(eval_only=True)  # setup() checks DATASETS.TEST only
    add_run_arguments(parser)
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """train_net's parsing rules (options anywhere, KEY VALUE overrides) with test_net's options."""
    return parse_run_args(argv, parser=argument_parser())


def _check_json_summary(path: Optional[str]) -> None:
    """Found before the run, not after it: the folder of --json-summary must exist."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError(f"--json-summary {path} is a folder: give a file name")
    if not os.path.isdir(folder):
        raise UserError(f"--json-summary {path}: folder {folder} does not exist")


def _check_weights(cfg, resume: bool) -> None:
    """Trained weights to evaluate: OUTPUT_DIR's last checkpoint with --resume, else MODEL.WEIGHTS."""
    if resume and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")):
        return
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        raise UserError("test_net evaluates trained weights, but MODEL.WEIGHTS is empty "
                        "(add MODEL.WEIGHTS /path/to/model_final.pth)")
    if "://" not in weights and not os.path.isfile(weights):
        raise UserError(f"MODEL.WEIGHTS {weights}: checkpoint file not found")


def _ap(results: dict) -> Optional[Dict[str, float]]:
    """{task: AP} of one dataset's results; None when nothing was evaluated."""
    ap = {task: metrics["AP"] for task, metrics in results.items() if isinstance(metrics, dict) and "AP" in metrics}
    return ap or None


def _dataset_summary(timing: InferenceTiming, results: dict) -> dict:
    return {
        "images_per_s": timing.images_per_s,
        "latency_ms": timing.latency_ms(),
        "ap": _ap(results),
        "images": timing.num_images,
        "batches": timing.num_batches,
        "warmup_batches": timing.num_warmup,
        "num_devices": timing.num_devices,
    }


def summary(cfg, backend, results: dict, timings: Dict[str, InferenceTiming], skip_eval: bool) -> dict:
    """The --json-summary object: the first DATASETS.TEST's numbers at the top, every dataset's under
    "datasets", and how the run ran (device, precision, memory format, batch size per process)."""
    per_dataset_results = results if len(timings) > 1 else {name: results for name in timings}
    datasets = {name: _dataset_summary(timing, per_dataset_results.get(name) or {})
                for name, timing in timings.items()}
    settings = inference_settings(cfg, backend)
    first = next(iter(datasets.values()))
    return {
        **first,
        "dataset": next(iter(datasets)),
        "device": backend.name,
        "precision": _PRECISION_NAMES.get(str(settings.dtype), "exact") if settings.dtype is not None else "exact",
        "memory_format": "channels_last" if "channels_last" in str(settings.memory_format) else "contiguous",
        "fused": settings.fuse,
        "batch_size": cfg.TEST.IMS_PER_BATCH,
        "skip_eval": skip_eval,
        "datasets": datasets,
    }


def run(args: argparse.Namespace):
    """One process's work: the shared evaluation path, (rank 0) the JSON summary, then the AP tables
    (exit status 1 when TEST.EXPECTED_RESULTS fails, as train_net)."""
    _check_json_summary(args.json_summary)
    cfg, backend = setup(args)
    _check_weights(cfg, args.resume)
    results, timings = evaluate_checkpoint(cfg, backend, resume=args.resume, max_batches=args.infer_steps,
                                           skip_eval=args.skip_eval)
    if is_main_process() and args.json_summary:
        with open(args.json_summary, "w", encoding="utf-8") as stream:
            json.dump(summary(cfg, backend, results, timings, args.skip_eval), stream, indent=1)
        logger.info("Wrote the inference summary to %s", args.json_summary)
    return report_results(cfg, results)


def main(argv: Optional[Sequence[str]] = None):
    """Entry point (``python -m maskrcnn_multi.tools.test_net``, console script ``maskrcnn-test``)."""
    args = parse_args(argv)
    setup_logging(None)
    return launch(run, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
                  dist_url=args.dist_url, script_args=list(sys.argv[1:] if argv is None else argv), args=(args,),
                  module="maskrcnn_multi.tools.test_net")


def cli() -> int:
    """Console entry point: a user error prints one line and exits with 2."""
    return run_main(main, prog="test_net")


if __name__ == "__main__":
    sys.exit(cli())
