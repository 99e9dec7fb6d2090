"""Time the whole model in each precision mode: one table, modes x threads, inference and training.

    python -m maskrcnn_multi.tools.benchmark --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml \\
        [--device cpu] [--task inference|train|both] [--modes exact,fused,fast] [--threads 1,2] \\
        [--iters N] [--warmup W] [--opts KEY VALUE ...]

Random weights (MODEL.WEIGHTS "", PIXEL_STD ~57 so random layers stay sane), one random 800x1216 image
for inference (score threshold 0, so every image has TEST.DETECTIONS_PER_IMAGE detections and their
masks are pasted), two images with
3-5 boxes and masks each for a training iteration (SGD with lr 0: random weights have no statistics
behind FrozenBN and would diverge; the work done is the same). Modes:
- exact: float32, the model's own modules layer by layer, contiguous (how detectron2 runs);
- fused: float32 in the backend's preferred layout with the fused inference graph (our default);
- fast:  the backend's half type (bfloat16 on the CPU) with autocast and channels_last; training
  with AMP O1 in that dtype;
- compiled: fast with the backbone compiled by torch.compile (TEST.COMPILE; inference only, and
  not in the default --modes: its first call compiles for tens of seconds).
Each cell runs in its own process (a clean peak-memory figure and its own thread count), reports the
median over ``--iters`` timed iterations after ``--warmup``, and the table gives seconds, the detection
count and the peak resident memory (CPU) or peak allocated memory (accelerators).
"""
import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Sequence

import numpy as np
import torch

from maskrcnn_multi.backends import LossScaler, get_backend
from maskrcnn_multi.backends.amp import apply_opt_level
from maskrcnn_multi.config import UserError, get_cfg
from maskrcnn_multi.engine.inference import for_inference, set_training_memory_format
from maskrcnn_multi.modeling import build_model
from maskrcnn_multi.structures import Boxes, Instances, PolygonMasks
from maskrcnn_multi.tools._cli import ArgumentParser, run_main

logger = logging.getLogger("maskrcnn_multi.benchmark")

IMAGE_HEIGHT, IMAGE_WIDTH = 800, 1216
MODES = {
    "exact": {"pairs": ["TEST.FUSE_LAYERS", "False", "MODEL.MEMORY_FORMAT", "contiguous"], "amp": False},
    "fused": {"pairs": ["TEST.FUSE_LAYERS", "True", "MODEL.MEMORY_FORMAT", "auto"], "amp": False},
    "fast": {"pairs": ["TEST.AMP.ENABLED", "True", "MODEL.MEMORY_FORMAT", "channels_last"], "amp": True},
    # inference only: fast, with the backbone compiled (TEST.COMPILE; compiling is in the warm-up)
    "compiled": {"pairs": ["TEST.AMP.ENABLED", "True", "MODEL.MEMORY_FORMAT", "channels_last", "TEST.COMPILE", "True"],
                 "amp": True, "inference_only": True},
}
TASKS = ("inference", "train")
# Random weights: no checkpoint, every detection kept (score threshold 0: TEST.DETECTIONS_PER_IMAGE
# of them, their masks pasted), and detectron2's RGB-scale pixel std so that random layers give sane
# activations (with MSRA's std of 1 a random R50's box head saturates and keeps one detection).
_RANDOM_WEIGHTS = ["MODEL.WEIGHTS", "", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
                   "MODEL.PIXEL_STD", "[57.375, 57.120, 58.395]"]


def get_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="benchmark", description="maskrcnn_multi model benchmark, random data")
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--device", default=None, help="MODEL.DEVICE (default: the config's)")
    parser.add_argument("--task", choices=TASKS + ("both",), default="both")
    parser.add_argument("--modes", default="exact,fused,fast", help=f"comma-separated, from: {', '.join(MODES)}")
    parser.add_argument("--threads", default="1,2", help="comma-separated CPU thread counts")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per cell")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE", help="config overrides")
    parser.add_argument("--cell", nargs=3, metavar=("MODE", "TASK", "THREADS"), help=argparse.SUPPRESS)
    return parser


def _split(text: str, name: str, allowed=None, convert=str) -> List:
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        values = [convert(item) for item in items]
    except ValueError:
        raise UserError(f"--{name} {text!r} is not a comma-separated list of numbers") from None
    if not values or (allowed is not None and any(v not in allowed for v in values)):
        raise UserError(f"--{name} {text!r}: choose from {', '.join(allowed or [])}")
    if convert is int and any(v < 1 for v in values):
        raise UserError(f"--{name} {text!r}: thread counts must be >= 1")
    return values


def random_inputs(num_images: int, num_classes: int, with_targets: bool, generator: torch.Generator) -> List[Dict]:
    """Images Tensor[3, 800, 1216] of 0-255 values; with targets, 3-5 boxes each with a polygon mask."""
    inputs = []
    for _ in range(num_images):
        image = torch.randint(0, 256, (3, IMAGE_HEIGHT, IMAGE_WIDTH), generator=generator).float()
        record = {"image": image, "height": IMAGE_HEIGHT, "width": IMAGE_WIDTH}
        if with_targets:
            count = int(torch.randint(3, 6, (1,), generator=generator))
            corner = torch.rand(count, 2, generator=generator) * torch.tensor([IMAGE_WIDTH * 0.7, IMAGE_HEIGHT * 0.7])
            size = 32 + torch.rand(count, 2, generator=generator) * 300
            boxes = torch.cat([corner, corner + size], dim=1)
            polygons = [[np.array([x0, y0, x1, y0, (x0 + x1) / 2, y1], dtype=np.float64)]
                        for x0, y0, x1, y1 in boxes.tolist()]
            instances = Instances((IMAGE_HEIGHT, IMAGE_WIDTH))
            instances.gt_boxes = Boxes(boxes)
            instances.gt_classes = torch.randint(0, num_classes, (count,), generator=generator)
            instances.gt_masks = PolygonMasks(polygons)
            record["instances"] = instances
        inputs.append(record)
    return inputs


def time_iterations(step: Callable[[], object], synchronize: Callable[[], None], iters: int, warmup: int) -> List[float]:
    seconds = []
    for index in range(warmup + iters):
        synchronize()
        start = time.perf_counter()
        step()
        synchronize()
        if index >= warmup:
            seconds.append(time.perf_counter() - start)
    return seconds


def _config(args, mode: str):
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(list(args.opts) + MODES[mode]["pairs"] + _RANDOM_WEIGHTS)
    if args.device is not None:
        cfg.MODEL.DEVICE = args.device
    cfg.freeze()
    return cfg


def _inference_step(cfg, backend, generator):
    model = build_model(cfg).eval()
    runner = for_inference(model, cfg, backend)
    inputs = random_inputs(1, cfg.MODEL.ROI_HEADS.NUM_CLASSES, False, generator)
    counts = []

    def step():
        counts.append(len(runner(inputs)[0]["instances"]))

    return step, counts


def _training_step(cfg, backend, generator, amp: bool):
    model = build_model(cfg).train()
    dtype = backend.amp_dtype(cfg.AMP_DTYPE) if amp else torch.float32
    set_training_memory_format(model, cfg, backend, dtype)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0, momentum=0.9)
    optimizer = apply_opt_level(model, optimizer, "O1" if amp else "O0", dtype)
    scaler = LossScaler("dynamic") if amp else None
    inputs = random_inputs(2, cfg.MODEL.ROI_HEADS.NUM_CLASSES, True, generator)

    def step():
        with backend.autocast("O1" if amp else "O0", dtype if amp else None):
            losses = model(inputs)
        total = sum(value.float() for value in losses.values())
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            total.backward()
            optimizer.step()
        else:
            scaler.scale(total).backward()
            scaler.step(optimizer)
            scaler.update()

    return step, []


def run_cell(args, mode: str, task: str, threads: int) -> Dict:
    """One measurement in this process: {"seconds": median, "detections", "peak_mb", ...}."""
    torch.set_num_threads(threads)
    cfg = _config(args, mode)
    backend = get_backend(cfg.MODEL.DEVICE)
    backend.set_device()
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    if task == "inference":
        step, counts = _inference_step(cfg, backend, generator)
    else:
        step, counts = _training_step(cfg, backend, generator, MODES[mode]["amp"])
    backend.reset_peak_memory_stats()
    seconds = time_iterations(step, backend.synchronize, args.iters, args.warmup)
    return {"mode": mode, "task": task, "threads": threads, "seconds": statistics.median(seconds),
            "min": min(seconds), "max": max(seconds), "detections": counts[-1] if counts else None,
            "peak_mb": backend.memory_stats().get("max_allocated_mb"), "device": backend.name}


def _run_cell_process(args, mode: str, task: str, threads: int) -> Dict:
    command = [sys.executable, "-m", "maskrcnn_multi.tools.benchmark", "--config-file", args.config_file,
               "--iters", str(args.iters), "--warmup", str(args.warmup), "--cell", mode, task, str(threads)]
    if args.device is not None:
        command += ["--device", args.device]
    if args.opts:
        command += ["--opts", *args.opts]
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"benchmark cell {mode}/{task}/{threads} thread(s) failed: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def format_table(results: Sequence[Dict], modes: Sequence[str], tasks: Sequence[str], threads: Sequence[int]) -> str:
    """A Markdown table: one row per mode; per task and thread count the median seconds; then the
    detection count and each task's largest peak memory."""
    by_key = {(r["mode"], r["task"], r["threads"]): r for r in results}
    unit = {"inference": "inference s/image", "train": "training s/iter (2 images)"}
    header = ["mode"] + [f"{unit[t]}, {n} thread{'s' if n > 1 else ''}" for t in tasks for n in threads]
    if "inference" in tasks:
        header.append("detections")
    header += [f"peak MB ({t})" for t in tasks]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for mode in modes:
        row = [mode] + [f"{by_key[(mode, t, n)]['seconds']:.3f}" if (mode, t, n) in by_key else "-"
                        for t in tasks for n in threads]
        if "inference" in tasks:
            row.append(str(by_key[(mode, "inference", threads[0])]["detections"]))
        for task in tasks:
            peaks = [by_key[(mode, task, n)]["peak_mb"] for n in threads if (mode, task, n) in by_key]
            row.append(f"{max(p for p in peaks if p is not None):.0f}" if any(p is not None for p in peaks) else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.iters < 1 or args.warmup < 0:
        raise UserError(f"--iters must be >= 1 and --warmup >= 0, got {args.iters}, {args.warmup}")
    if len(args.opts) % 2:
        raise UserError(f"--opts must be KEY VALUE pairs; {args.opts[-1]!r} has no value")
    logging.basicConfig(level=logging.WARNING)
    if args.cell:
        mode, task, threads = args.cell
        print(json.dumps(run_cell(args, mode, task, int(threads))))
        return 0
    modes = _split(args.modes, "modes", allowed=list(MODES))
    threads = _split(args.threads, "threads", convert=int)
    tasks = list(TASKS) if args.task == "both" else [args.task]
    get_backend(_config(args, modes[0]).MODEL.DEVICE)  # a bad config or device: one line, before any cell
    results = []
    for task in tasks:
        for mode in modes:
            for count in threads:
                if task == "train" and MODES[mode].get("inference_only"):
                    continue
                results.append(_run_cell_process(args, mode, task, count))
                print(f"{mode} {task} {count} thread(s): {results[-1]['seconds']:.3f} s", file=sys.stderr, flush=True)
    device = results[0]["device"]
    print(f"{args.config_file} on {device}, torch {torch.__version__}, {IMAGE_HEIGHT}x{IMAGE_WIDTH}, "
          f"random weights; median of {args.iters} after {args.warmup} warm-up")
    print(format_table(results, modes, tasks, threads))
    return 0


def cli() -> int:
    """Console entry point: a user error prints one line and exits with 2."""
    return run_main(main, prog="benchmark")


if __name__ == "__main__":
    sys.exit(cli())
