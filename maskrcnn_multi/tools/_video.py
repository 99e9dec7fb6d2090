"""Video for the demo: open a video file or the webcam, write the annotated frames with
cv2.VideoWriter, and run a predictor over the frames with a progress bar showing per-frame time.

Every failure a user can cause (no such video, not a video, no camera, an output OpenCV cannot write)
is a UserError naming it; OpenCV's own warnings are silenced while opening, so the error is one line.
"""
import contextlib
import logging
import os
import sys
import time
from typing import Callable, Iterator, Optional, Tuple

import cv2
import numpy as np
import tqdm

from maskrcnn_multi.config import UserError

__all__ = ["FOURCC", "annotate_frames", "open_video", "open_webcam", "plan_video_output", "video_writer"]

logger = logging.getLogger("maskrcnn_multi.demo")

# codec per container: mp4v is in every OpenCV build with FFmpeg, MJPG in every build
FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}
_DEFAULT_FPS = 30.0


@contextlib.contextmanager
def _quiet_opencv():
    """OpenCV logs a warning per backend it tries when a camera or file does not open: keep stderr
    to our one line."""
    utils = getattr(cv2, "utils", None)
    opencv_logging = getattr(utils, "logging", None)
    if opencv_logging is None:
        yield
        return
    previous = opencv_logging.getLogLevel()
    opencv_logging.setLogLevel(opencv_logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        opencv_logging.setLogLevel(previous)


def open_video(path: str) -> cv2.VideoCapture:
    """``path`` opened for reading frames; a UserError when it is missing or not a readable video."""
    if not os.path.exists(path):
        raise UserError(f"--video-input '{path}' does not exist")
    if os.path.isdir(path):
        raise UserError(f"--video-input '{path}' is a folder, not a video file")
    with _quiet_opencv():
        capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise UserError(f"--video-input '{path}' cannot be read as a video by OpenCV")
    return capture


def open_webcam(index: int = 0) -> cv2.VideoCapture:
    """Camera ``index``; a UserError when this machine has no camera there (or it cannot be opened)."""
    with _quiet_opencv():
        capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise UserError(f"--webcam: no camera could be opened (device {index}); use --video-input FILE instead")
    return capture


def plan_video_output(output: str, source_name: str) -> str:
    """The annotated video's file: ``output`` when it names a .mp4 / .avi / .mkv file, else
    ``output/<source_name>.mp4`` (``output`` a folder, created). Other extensions are a UserError."""
    extension = os.path.splitext(output)[1].lower()
    if output.endswith(os.sep) or os.path.isdir(output) or not extension:
        os.makedirs(output, exist_ok=True)
        return os.path.join(output, os.path.splitext(os.path.basename(source_name))[0] + ".mp4")
    if extension not in FOURCC:
        raise UserError(f"--output '{output}': a video needs a {', '.join(FOURCC)} file or a folder")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise UserError(f"--output '{output}': folder {folder} does not exist")
    return output


def video_writer(path: str, fps: float, frame_size: Tuple[int, int]) -> cv2.VideoWriter:
    """cv2.VideoWriter for ``path`` (codec from its extension) at ``fps`` (30 when the source has none)
    and ``frame_size`` (width, height); a UserError when OpenCV cannot open it."""
    extension = os.path.splitext(path)[1].lower()
    fps = fps if fps and np.isfinite(fps) and fps > 0 else _DEFAULT_FPS
    with _quiet_opencv():
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*FOURCC.get(extension, "mp4v")), fps, frame_size)
    if not writer.isOpened():
        raise UserError(f"cannot write the video '{path}' (no permission, or OpenCV lacks the {extension} codec)")
    return writer


def _frames(capture: cv2.VideoCapture, max_frames: Optional[int]) -> Iterator[np.ndarray]:
    count = 0
    while max_frames is None or count < max_frames:
        ok, frame = capture.read()
        if not ok:
            return
        count += 1
        yield frame


def annotate_frames(capture: cv2.VideoCapture, output: str, annotate: Callable[[np.ndarray], np.ndarray],
                    max_frames: Optional[int] = None) -> int:
    """Read ``capture`` to its end (or ``max_frames``), write ``annotate(frame)`` for each frame to the
    video ``output`` (the source's frame rate and size); returns the number of frames written. A
    progress bar on a terminal shows the time per frame; the log gets the total and the mean.
    Ctrl-C stops at the current frame and keeps what was written (a webcam runs until then)."""
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    writer = video_writer(output, capture.get(cv2.CAP_PROP_FPS), (width, height))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    if max_frames is not None and total is not None:
        total = min(total, max_frames)
    written, seconds = 0, 0.0
    bar = tqdm.tqdm(total=total, desc="video", unit="frame", disable=not sys.stderr.isatty())
    try:
        for frame in _frames(capture, max_frames):
            start = time.perf_counter()
            drawn = annotate(frame)
            elapsed = time.perf_counter() - start
            seconds += elapsed
            writer.write(drawn)
            written += 1
            bar.set_postfix_str(f"{elapsed * 1000:.0f} ms/frame")
            bar.update(1)
    except KeyboardInterrupt:
        logger.info("interrupted: keeping the %d frames written", written)
    finally:
        bar.close()
        writer.release()
        capture.release()
    if written == 0:
        if os.path.exists(output):
            os.remove(output)  # an empty container is not a result
        raise UserError("the video has no frame that could be read (nothing written)")
    logger.info("wrote %s: %d frames, %.1f ms / frame (model and drawing)", output, written, seconds / written * 1000)
    return written
