"""Time inference (seconds per image, batch 1) or training (seconds per iteration, 2 images) on random data.

    python -m maskrcnn_multi.tools.benchmark --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml \\
        --task inference|train [--device DEVICE] [--iters N] [--warmup W] [--opts KEY VALUE ...]

Random weights (MODEL.WEIGHTS ""), 800x1216 inputs; warm-up iterations are excluded; prints the median.
"""
import argparse
import logging
import statistics
import sys
import time
from typing import Callable, Dict, List

import numpy as np
import torch

from maskrcnn_multi.config import UserError, get_cfg
from maskrcnn_multi.engine.defaults import prepare_device
from maskrcnn_multi.modeling import build_model
from maskrcnn_multi.structures import Boxes, Instances, PolygonMasks
from maskrcnn_multi.tools._cli import ArgumentParser, run_main

logger = logging.getLogger("maskrcnn_multi.benchmark")

IMAGE_HEIGHT, IMAGE_WIDTH = 800, 1216


def get_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="benchmark", description="maskrcnn_multi benchmark on random data and random weights")
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--task", choices=("inference", "train"), required=True)
    parser.add_argument("--device", default=None, help="MODEL.DEVICE (default: the config's)")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE", help="config overrides")
    return parser


def _synchronizer(device: str) -> Callable[[], None]:
    """A callable waiting for the device's queued work, from the backend registry when it exists."""
    try:
        from maskrcnn_multi.backends import get_backend
        return get_backend(device).synchronize
    except ImportError:
        accelerator = getattr(torch, "accelerator", None)
        if accelerator is not None and accelerator.is_available():
            return accelerator.synchronize
        return lambda: None


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


def time_iterations(step: Callable[[], None], synchronize: Callable[[], None], iters: int, warmup: int) -> List[float]:
    seconds = []
    for index in range(warmup + iters):
        synchronize()
        start = time.perf_counter()
        step()
        synchronize()
        if index >= warmup:
            seconds.append(time.perf_counter() - start)
    return seconds


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.iters < 1 or args.warmup < 0:
        raise UserError(f"--iters must be >= 1 and --warmup >= 0, got {args.iters}, {args.warmup}")
    logging.basicConfig(level=logging.WARNING)
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    if len(args.opts) % 2:
        raise UserError(f"--opts must be KEY VALUE pairs; {args.opts[-1]!r} has no value")
    cfg.merge_from_list(args.opts)
    cfg.MODEL.WEIGHTS = ""
    if args.device is not None:
        cfg.MODEL.DEVICE = args.device
    cfg.freeze()

    prepare_device(cfg.MODEL.DEVICE)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = build_model(cfg)
    synchronize = _synchronizer(cfg.MODEL.DEVICE)

    if args.task == "inference":
        model.eval()
        inputs = random_inputs(1, cfg.MODEL.ROI_HEADS.NUM_CLASSES, False, generator)

        def step():
            with torch.no_grad():
                model(inputs)
    else:
        model.train()
        inputs = random_inputs(2, cfg.MODEL.ROI_HEADS.NUM_CLASSES, True, generator)
        # lr 0: random weights (no BN statistics behind FrozenBN) diverge after a real step; SGD's work is the same
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0, momentum=0.9)

        def step():
            losses = model(inputs)
            total = sum(losses.values())
            optimizer.zero_grad()
            total.backward()
            optimizer.step()

    seconds = time_iterations(step, synchronize, args.iters, args.warmup)
    unit = "s/image (batch 1)" if args.task == "inference" else "s/iteration (2 images)"
    print(f"{args.task} on {cfg.MODEL.DEVICE}, {args.config_file}, {IMAGE_HEIGHT}x{IMAGE_WIDTH}, "
          f"{torch.get_num_threads()} threads: median {statistics.median(seconds):.3f} {unit} "
          f"over {len(seconds)} iterations (min {min(seconds):.3f}, max {max(seconds):.3f}; {args.warmup} warm-up)")
    return 0


def cli() -> int:
    """Console entry point: a user error prints one line and exits with 2."""
    return run_main(main, prog="benchmark")


if __name__ == "__main__":
    sys.exit(cli())
