"""Time the detection ops, reference (pure PyTorch) against native kernels, on one device.

    python -m maskrcnn_multi.tools.benchmark_ops [--device cpu] [--repeat 5] [--skip-reference] [--only OP]

The "native" column times the public op (`maskrcnn_multi.ops.*`: input checks, the conversions the
wrapper makes, the kernel), i.e. what the model pays; "reference" times the pure-PyTorch twin in
`maskrcnn_multi.ops.reference` on the same inputs. Cases, all for an 800x1216 input image:
- nms: 2,000 and 12,000 RPN-like boxes (random centres and log-uniform sizes, clipped to the
  image), random scores, IoU threshold 0.7.
- roi_align: FPN features with 256 channels at strides 4, 8, 16, 32. Every level is pooled, each roi
  on the level detectron2's ROIPooler assigns it (canonical box 224 at level 4), so the timing is that
  of a box head (512 rois, 7x7) or mask head (100 rois, 14x14) pass: sampling_ratio 0, aligned.
  Features in fp32 or bf16 (what autocast gives), NCHW ("contiguous") or channels_last ("CL"); rois
  in fp32. "fwd" pools; "fwd+bwd" also back-propagates a gradient of ones to the features.
- paste: 100 masks of 28x28 pasted into the 800x1216 image and thresholded at 0.5 (bool masks, as
  detector_postprocess makes them).
- deform_conv: an R50 res4 DeformBottleneckBlock's conv2 on the stride-16 map (256 -> 256 channels,
  3x3, 50x76), fp32, offsets of about a pixel; DCN v1 and v2 (modulated), forward and forward+backward
  (gradients of ones to input, offset, mask and weight).
The table gives the median wall time of `--repeat` runs after one warm-up run.
"""
import argparse
import math
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch

from maskrcnn_multi import ops as public_ops
from maskrcnn_multi.backends import get_backend, native
from maskrcnn_multi.ops import reference
from maskrcnn_multi.config.errors import UserError
from maskrcnn_multi.tools._cli import run_main

IMAGE_HEIGHT, IMAGE_WIDTH = 800, 1216
FPN_STRIDES = (4, 8, 16, 32)
FPN_CHANNELS = 256
NATIVE_OPS = ("nms", "roi_align", "roi_align_backward", "paste_masks_in_image", "deform_conv2d",
              "deform_conv2d_backward")
DEFORM_CHANNELS = 256
# (label, dtype, memory format) of the features roi_align is timed on.
FEATURE_VARIANTS = (
    ("fp32", torch.float32, torch.contiguous_format),
    ("fp32 CL", torch.float32, torch.channels_last),
    ("bf16", torch.bfloat16, torch.contiguous_format),
    ("bf16 CL", torch.bfloat16, torch.channels_last),
)


def random_boxes(count: int, device: torch.device, min_size: float = 8.0, max_size: float = 512.0) -> torch.Tensor:
    """(count, 4) boxes inside the image: sqrt(area) log-uniform in [min_size, max_size] and aspect
    ratios in [1/2, 2], like anchors (elongated boxes would pool far more samples per bin)."""
    centres = torch.rand(count, 2, device=device) * torch.tensor([IMAGE_WIDTH, IMAGE_HEIGHT], device=device)
    sizes = torch.empty(count, device=device).uniform_(math.log(min_size), math.log(max_size)).exp()
    aspect_ratios = torch.empty(count, device=device).uniform_(math.log(0.5), math.log(2.0)).exp()
    half = torch.stack([sizes / aspect_ratios.sqrt(), sizes * aspect_ratios.sqrt()], dim=1) / 2
    boxes = torch.cat([centres - half, centres + half], dim=1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, IMAGE_WIDTH)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, IMAGE_HEIGHT)
    return boxes


def fpn_levels(boxes: torch.Tensor) -> torch.Tensor:
    """detectron2's assign_boxes_to_levels: level index 0..3 for strides 4..32."""
    sizes = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
    levels = torch.floor(4 + torch.log2(sizes / 224 + 1e-8))
    return (levels.clamp(2, 5) - 2).to(torch.int64)


def multilevel_pool(pool: Callable, features: Sequence[torch.Tensor], boxes: torch.Tensor,
                    output_size: int) -> torch.Tensor:
    """Pool each box on its FPN level with `pool(features, rois, output_size, scale, sampling, aligned)`."""
    levels = fpn_levels(boxes)
    rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
    pooled = features[0].new_zeros((boxes.shape[0], FPN_CHANNELS, output_size, output_size))
    for level, (level_features, stride) in enumerate(zip(features, FPN_STRIDES)):
        members = torch.where(levels == level)[0]
        if members.numel():
            pooled[members] = pool(level_features, rois[members], output_size, 1.0 / stride, 0, True)
    return pooled


def time_median(run: Callable[[], object], synchronize: Callable[[], None], repeat: int) -> float:
    """Median seconds of `repeat` runs after one warm-up."""
    run()
    synchronize()
    durations = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        synchronize()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def _reference_roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    return reference.roi_align(features, rois, spatial_scale, output_size, output_size, sampling_ratio, aligned)


def _reference_paste(masks, boxes, image_shape, threshold):
    return reference.paste_masks_in_image(masks, boxes, image_shape[0], image_shape[1], threshold)


def _reference_deform_conv(input, offset, weight, bias, stride, padding, dilation, mask):
    return reference.deform_conv2d(input, offset, weight, bias, (stride, stride), (padding, padding),
                                   (dilation, dilation), 1, 1, mask)


def implementations(device_type: str, skip_reference: bool) -> Dict[str, Optional[Dict[str, Callable]]]:
    """{"reference": twins or None when skipped, "native": public ops or None when no kernel serves
    this device}. Both take the public ops' arguments."""
    found: Dict[str, Optional[Dict[str, Callable]]] = {"reference": None, "native": None}
    if not skip_reference:
        found["reference"] = {"nms": reference.nms, "roi_align": _reference_roi_align, "paste": _reference_paste,
                              "deform_conv": _reference_deform_conv}
    if all(native.has_kernel(op, device_type) for op in NATIVE_OPS):
        found["native"] = {"nms": public_ops.nms, "roi_align": public_ops.roi_align,
                           "paste": public_ops.paste_masks_in_image, "deform_conv": public_ops.deform_conv2d}
    return found


def benchmark_cases(device: torch.device) -> List[tuple]:
    """(op, case, callable(ops) -> runner) rows in table order."""
    torch.manual_seed(0)
    rows = []
    for count in (2000, 12000):
        boxes, scores = random_boxes(count, device), torch.rand(count, device=device)
        rows.append(("nms", f"{count} boxes, thr 0.7", lambda ops, b=boxes, s=scores: (lambda: ops["nms"](b, s, 0.7))))
    fp32_features = [torch.randn(1, FPN_CHANNELS, math.ceil(IMAGE_HEIGHT / stride), math.ceil(IMAGE_WIDTH / stride),
                                 device=device) for stride in FPN_STRIDES]
    for head, count, size in (("box", 512, 7), ("mask", 100, 14)):
        boxes = random_boxes(count, device, min_size=16.0)
        for label, dtype, memory_format in FEATURE_VARIANTS:
            features = [level.to(dtype).contiguous(memory_format=memory_format) for level in fp32_features]
            case = f"{head} {count}x{size}x{size} {label}"
            for backward in (False, True):
                rows.append(("roi_align", f"{case} {'fwd+bwd' if backward else 'fwd'}",
                             lambda ops, f=features, b=boxes, s=size, bw=backward: _pool_runner(ops, f, b, s, bw)))
    masks = torch.rand(100, 28, 28, device=device)
    mask_boxes = random_boxes(100, device, min_size=16.0)
    rows.append(("paste", "100 masks 28x28 -> 800x1216 >= 0.5",
                 lambda ops: (lambda: ops["paste"](masks, mask_boxes, (IMAGE_HEIGHT, IMAGE_WIDTH), 0.5))))
    height, width = math.ceil(IMAGE_HEIGHT / 16), math.ceil(IMAGE_WIDTH / 16)
    deform_input = torch.randn(1, DEFORM_CHANNELS, height, width, device=device)
    deform_weight = torch.randn(DEFORM_CHANNELS, DEFORM_CHANNELS, 3, 3, device=device) * 0.02
    deform_offset = torch.randn(1, 18, height, width, device=device)
    deform_mask = torch.rand(1, 9, height, width, device=device)
    for version, mask in (("v1", None), ("v2", deform_mask)):
        for backward in (False, True):
            case = f"{version} 256x{height}x{width} 3x3 fp32 {'fwd+bwd' if backward else 'fwd'}"
            tensors = (deform_input, deform_offset, deform_weight, mask)
            rows.append(("deform_conv", case, lambda ops, t=tensors, bw=backward: _deform_runner(ops, t, bw)))
    return rows


def _deform_runner(ops, tensors, backward: bool) -> Callable[[], object]:
    if not backward:
        features, offset, weight, mask = tensors
        return lambda: ops["deform_conv"](features, offset, weight, None, 1, 1, 1, mask)
    leaves = [None if tensor is None else tensor.detach().requires_grad_(True) for tensor in tensors]

    def forward_backward():
        features, offset, weight, mask = leaves
        output = ops["deform_conv"](features, offset, weight, None, 1, 1, 1, mask)
        output.backward(torch.ones_like(output))
        for leaf in leaves:
            if leaf is not None:
                leaf.grad = None

    return forward_backward


def _pool_runner(ops, features, boxes, output_size: int, backward: bool) -> Callable[[], object]:
    if not backward:
        return lambda: multilevel_pool(ops["roi_align"], features, boxes, output_size)
    leaves = [level.detach().requires_grad_(True) for level in features]

    def forward_backward():
        pooled = multilevel_pool(ops["roi_align"], leaves, boxes, output_size)
        pooled.backward(torch.ones_like(pooled))
        for leaf in leaves:
            leaf.grad = None

    return forward_backward


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="MODEL.DEVICE-style device (default: cpu)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per row (default: 5)")
    parser.add_argument("--skip-reference", action="store_true", help="time the native ops only")
    parser.add_argument("--only", choices=("nms", "roi_align", "paste", "deform_conv"), help="time one op's rows only")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        raise UserError(f"--repeat must be at least 1, got {args.repeat}")

    backend = get_backend(args.device)
    device = backend.device
    found = implementations(device.type, args.skip_reference)
    print(f"device: {device}   torch {torch.__version__}   torch.get_num_threads() = {torch.get_num_threads()}")
    print(f"native kernels: {'yes' if found['native'] else 'no (maskrcnn_multi._C not built for this device)'}")
    header = f"{'op':<11} {'case':<36} {'reference ms':>13} {'native ms':>10} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    for op, case, make_runner in benchmark_cases(device):
        if args.only and op != args.only:
            continue
        times = {name: time_median(make_runner(ops), backend.synchronize, args.repeat) * 1e3
                 for name, ops in found.items() if ops is not None}
        cells = [f"{times[name]:{width}.2f}" if name in times else f"{'-':>{width}}"
                 for name, width in (("reference", 13), ("native", 10))]
        speed_up = (f"{times['reference'] / times['native']:8.1f}x" if len(times) == 2 else f"{'-':>9}")
        print(f"{op:<11} {case:<36} {cells[0]} {cells[1]} {speed_up}")


def cli() -> int:
    """Console entry point: a user error prints one line and exits with 2."""
    return run_main(main)


if __name__ == "__main__":
    sys.exit(cli())
