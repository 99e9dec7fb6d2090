"""Run a trained model on images or a video and write them with boxes, class names, scores and masks drawn.

    python -m maskrcnn_multi.tools.demo --config-file CFG --input a.jpg 'dir/*.jpg' --output out/ \\
        [--confidence-threshold 0.5] [--opts KEY VALUE ...]   (or trailing KEY VALUE pairs)
    python -m maskrcnn_multi.tools.demo --config-file CFG --video-input in.mp4 --output out.mp4 ...
    python -m maskrcnn_multi.tools.demo --config-file CFG --webcam --output cam.mp4 [--max-frames N] ...

A video (``--video-input``, or the camera with ``--webcam``, until Ctrl-C or ``--max-frames``) is
written frame by frame with cv2.VideoWriter to ``--output`` (a .mp4 / .avi / .mkv file, or a folder:
``<folder>/<video name>.mp4``), at the source's frame rate and size (``tools._video``). On a terminal a
progress bar shows the time per image or frame; the log has each image's time and a video's mean.

Images are read as training reads them (``data.read_image``: any bit depth, EXIF orientation). Each
drawn image keeps its input's file name in the output folder; when two inputs share a name
(``a/x.jpg``, ``b/x.jpg``) every output keeps its path below the inputs' common folder instead
(``out/a/x.jpg``, ``out/b/x.jpg``), so none overwrites another. An input that cannot be read is
skipped with a warning and the run ends with exit code 2 naming it; a user error is one line.
"""
import argparse
import glob
import logging
import os
import sys
import time
from typing import List, Sequence

import cv2
import numpy as np
import tqdm

from maskrcnn_multi.config import UserError, get_cfg
from maskrcnn_multi.data import BadImageError, read_image
from maskrcnn_multi.engine import DefaultPredictor
from maskrcnn_multi.tools._coco_names import COCO_CLASS_NAMES
from maskrcnn_multi.tools._cli import ArgumentParser, prepare_output_dir, run_main
from maskrcnn_multi.tools._video import annotate_frames, open_video, open_webcam, plan_video_output

logger = logging.getLogger("maskrcnn_multi.demo")

# distinct BGR colours, cycled over instances
_PALETTE = np.array([
    [0, 114, 189], [217, 83, 25], [237, 177, 32], [126, 47, 142], [119, 172, 48], [77, 190, 238],
    [162, 20, 47], [255, 128, 0], [0, 200, 120], [200, 0, 200], [60, 60, 255], [255, 60, 60],
], dtype=np.float32)[:, ::-1]


def get_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="demo", description="maskrcnn_multi demo: draw detections on images")
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to the config file")
    parser.add_argument("--input", nargs="+", default=[], help="images or glob patterns ('dir/*.jpg')")
    parser.add_argument("--video-input", default=None, metavar="FILE", help="a video file to annotate")
    parser.add_argument("--webcam", action="store_true", help="annotate the camera's frames (device 0)")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N",
                        help="stop a video or the webcam after N frames (default: the whole video; the "
                             "webcam until Ctrl-C)")
    parser.add_argument("--output", required=True,
                        help="a directory (created) for the drawn images, or a file name for a single input")
    parser.add_argument("--confidence-threshold", type=float, default=0.5,
                        help="minimum score of the detections drawn (MODEL.ROI_HEADS.SCORE_THRESH_TEST)")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                        help="config overrides as KEY VALUE pairs (may also trail the command line)")
    return parser


def setup_cfg(args, extra_opts: Sequence[str] = ()):
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    opts = list(args.opts) + list(extra_opts)
    if len(opts) % 2:
        raise UserError(f"config overrides must be KEY VALUE pairs; {opts[-1]!r} has no value")
    cfg.merge_from_list(opts)
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.confidence_threshold
    cfg.freeze()
    return cfg


def class_names_for(cfg) -> List[str]:
    """The DATASETS.TEST[0] dataset's thing_classes when it is registered, else COCO's 80 names for an
    80-class model, else "class 0", "class 1", ... (COCO's names on another model would mislabel)."""
    if len(cfg.DATASETS.TEST):
        try:
            from maskrcnn_multi.data import MetadataCatalog
            names = MetadataCatalog.get(cfg.DATASETS.TEST[0]).get("thing_classes")
        except (ImportError, KeyError, AttributeError):
            names = None
        if names:
            return list(names)
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if num_classes == len(COCO_CLASS_NAMES):
        return list(COCO_CLASS_NAMES)
    logger.warning("the model has %d classes and DATASETS.TEST names no registered dataset: labels are "
                   "'class <index>' (pass DATASETS.TEST '(\"name\",)' for the dataset's names)", num_classes)
    return [f"class {index}" for index in range(num_classes)]


def expand_inputs(patterns: Sequence[str]) -> List[str]:
    """The files the --input patterns match, in order, each once (a file two patterns match is
    drawn once); a pattern matching no file is a UserError naming it."""
    paths, seen = [], set()
    for pattern in patterns:
        matched = sorted(path for path in glob.glob(os.path.expanduser(pattern)) if not os.path.isdir(path))
        if not matched:
            raise UserError(f"--input '{pattern}' matches no file")
        for path in matched:
            if os.path.realpath(path) not in seen:
                seen.add(os.path.realpath(path))
                paths.append(path)
    return paths


def _host(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def draw_instances(image_bgr: np.ndarray, instances, class_names: Sequence[str], alpha: float = 0.5) -> np.ndarray:
    """Draw translucent masks, boxes and "name score%" labels on a copy of ``image_bgr`` (HxWx3 uint8)."""
    canvas = image_bgr.astype(np.float32)
    boxes = _host(instances.pred_boxes.tensor) if instances.has("pred_boxes") else np.zeros((0, 4))
    scores = _host(instances.scores) if instances.has("scores") else np.ones(len(boxes))
    classes = _host(instances.pred_classes) if instances.has("pred_classes") else np.zeros(len(boxes), int)
    masks = _host(instances.pred_masks) if instances.has("pred_masks") else None

    # largest first, so small objects stay visible on top
    order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
    colors = [_PALETTE[i % len(_PALETTE)] for i in range(len(boxes))]
    if masks is not None:
        for i in order:
            region = masks[i].astype(bool)
            canvas[region] = canvas[region] * (1 - alpha) + colors[i] * alpha
    drawn = np.clip(canvas, 0, 255).astype(np.uint8)
    for i in order:
        x0, y0, x1, y1 = (int(round(v)) for v in boxes[i])
        color = tuple(int(c) for c in colors[i])
        cv2.rectangle(drawn, (x0, y0), (x1, y1), color, 2)
        name = class_names[classes[i]] if 0 <= classes[i] < len(class_names) else str(int(classes[i]))
        label = f"{name} {scores[i] * 100:.0f}%"
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = max(y0 - text_h - baseline, 0)
        cv2.rectangle(drawn, (x0, top), (x0 + text_w, top + text_h + baseline), color, -1)
        cv2.putText(drawn, label, (x0, top + text_h), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return drawn


def output_names(input_paths: Sequence[str]) -> List[str]:
    """Each input's name inside the output folder: its file name, or, when two inputs share a file
    name, every input's path relative to the inputs' common folder."""
    names = [os.path.basename(path) for path in input_paths]
    if len(set(names)) == len(names):
        return names
    folders = [os.path.dirname(os.path.abspath(path)) for path in input_paths]
    common = os.path.commonpath(folders)
    logger.info("inputs share file names: outputs keep their paths below %s", common)
    return [os.path.relpath(os.path.abspath(path), common) for path in input_paths]


def plan_outputs(output: str, input_paths: Sequence[str]) -> List[str]:
    """Where each drawn input goes: ``output`` itself for one input (unless it is a folder or ends
    with a separator), else ``output/<output_names>``. Folders are created; an ``output`` that is a
    file where a folder is needed, or a file type OpenCV cannot write, is a UserError naming it."""
    if len(input_paths) == 1 and not output.endswith(os.sep) and not os.path.isdir(output):
        prepare_output_dir(os.path.dirname(os.path.abspath(output)), "the folder of --output")
        if not cv2.haveImageWriter(output):
            raise UserError(f"--output '{output}': OpenCV cannot write this file type (use .jpg or .png)")
        return [output]
    if os.path.exists(output) and not os.path.isdir(output):
        raise UserError(f"--output '{output}' is a file, but {len(input_paths)} inputs need a folder")
    prepare_output_dir(output, "--output")
    targets = [os.path.join(output, name) for name in output_names(input_paths)]
    for target in targets:
        prepare_output_dir(os.path.dirname(target), "--output")
    return targets


def _write(target: str, image: np.ndarray) -> None:
    try:
        written = cv2.imwrite(target, image)
    except cv2.error as error:
        raise UserError(f"cannot write '{target}': {' '.join(str(error).split())}") from None
    if not written:
        raise UserError(f"cannot write '{target}' (disk full, no permission, or a type OpenCV cannot write?)")


def _check_source(args) -> None:
    given = [name for name, value in (("--input", bool(args.input)), ("--video-input", args.video_input is not None),
                                      ("--webcam", args.webcam)) if value]
    if len(given) != 1:
        raise UserError(f"give exactly one of --input, --video-input FILE, --webcam (got: {', '.join(given) or 'none'})")
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames must be a positive number of frames, got {args.max_frames}")


def _run_images(args, cfg) -> int:
    paths = expand_inputs(args.input)
    targets = plan_outputs(args.output, paths)  # before the model loads: a wrong --output fails fast
    predictor = DefaultPredictor(cfg)
    class_names = class_names_for(cfg)
    unreadable = []
    # the bar is for a terminal; piped, stderr keeps only the error line
    bar = tqdm.tqdm(paths, desc="demo", unit="image", disable=not sys.stderr.isatty())
    for path, target in zip(bar, targets):
        try:
            image = np.ascontiguousarray(read_image(path, "BGR"))  # cv2 draws on contiguous arrays only
        except BadImageError as error:
            logger.warning("skipping %s", error)
            unreadable.append(error)
            continue
        start = time.perf_counter()
        predictions = predictor(image)
        elapsed = time.perf_counter() - start
        instances = predictions["instances"]
        bar.set_postfix_str(f"{elapsed * 1000:.0f} ms/image")
        logger.info("%s: detected %d instances in %.2fs", path, len(instances), elapsed)
        _write(target, draw_instances(image, instances, class_names))
    if unreadable:
        raise UserError(f"{len(unreadable)} of {len(paths)} inputs could not be read (the others were drawn): "
                        f"{unreadable[0]}")
    return 0


def _run_video(args, cfg) -> int:
    # the source and the output are checked before the model loads
    capture = open_video(args.video_input) if args.video_input is not None else open_webcam(0)
    target = plan_video_output(args.output, args.video_input or "webcam")
    predictor = DefaultPredictor(cfg)
    class_names = class_names_for(cfg)

    def annotate(frame: np.ndarray) -> np.ndarray:
        return draw_instances(frame, predictor(np.ascontiguousarray(frame))["instances"], class_names)

    annotate_frames(capture, target, annotate, max_frames=args.max_frames)
    return 0


def main(argv=None) -> int:
    args, extra = get_parser().parse_known_args(argv)
    unknown_flags = [item for item in extra if item.startswith("--")]
    if unknown_flags:
        raise UserError(f"unknown option(s) {' '.join(unknown_flags)} (see demo --help)")
    _check_source(args)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s]: %(message)s", stream=sys.stdout)
    cfg = setup_cfg(args, extra)
    return _run_images(args, cfg) if args.input else _run_video(args, cfg)


def cli() -> int:
    """Console entry point: a user error prints one line and exits with 2."""
    return run_main(main, prog="demo")


if __name__ == "__main__":
    sys.exit(cli())
