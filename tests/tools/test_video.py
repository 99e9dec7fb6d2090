"""The demo's video path (tools/_video.py, demo --video-input / --webcam): a video the test writes
itself is annotated frame by frame; a missing video, a missing camera and a bad output are one line."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskrcnn_multi.config import UserError
from maskrcnn_multi.tools._video import annotate_frames, open_video, open_webcam, plan_video_output

REPO = Path(__file__).resolve().parents[2]


def _write_video(path: Path, frames: int = 4, size=(96, 64), fps: float = 5.0) -> Path:
    """A moving white square on grey, ``frames`` frames of ``size`` (width, height)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for index in range(frames):
        frame = np.full((size[1], size[0], 3), 90, dtype=np.uint8)
        frame[10:40, 5 + 10 * index:35 + 10 * index] = 255
        writer.write(frame)
    writer.release()
    return path


def test_frames_are_annotated_into_a_video_of_the_same_size_and_rate(tmp_path):
    source = _write_video(tmp_path / "in.avi")
    seen = []

    def annotate(frame):
        seen.append(frame.shape)
        drawn = frame.copy()
        drawn[:, :8] = (0, 0, 255)
        return drawn

    output = str(tmp_path / "out.avi")
    assert annotate_frames(open_video(str(source)), output, annotate) == 4
    assert seen == [(64, 96, 3)] * 4
    written = cv2.VideoCapture(output)
    assert written.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0) and int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    ok, frame = written.read()
    assert ok and frame.shape == (64, 96, 3) and frame[:, :8, 2].mean() > 200 and frame[:, :8, 0].mean() < 60
    assert annotate_frames(open_video(str(source)), str(tmp_path / "two.avi"), annotate, max_frames=2) == 2


def test_output_is_a_video_file_or_a_folder(tmp_path):
    assert plan_video_output(str(tmp_path / "a.mp4"), "in.avi") == str(tmp_path / "a.mp4")
    assert plan_video_output(str(tmp_path / "folder") + os.sep, "clips/in.avi") == str(tmp_path / "folder" / "in.mp4")
    with pytest.raises(UserError, match=r"a video needs a \.mp4, \.avi, \.mkv file or a folder"):
        plan_video_output(str(tmp_path / "a.gif"), "in.avi")
    with pytest.raises(UserError, match="does not exist"):
        plan_video_output(str(tmp_path / "no" / "a.mp4"), "in.avi")


def test_a_missing_or_unreadable_video_is_named(tmp_path):
    with pytest.raises(UserError, match="--video-input '.*nope.mp4' does not exist"):
        open_video(str(tmp_path / "nope.mp4"))
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(UserError, match="cannot be read as a video"):
        open_video(str(tmp_path / "text.mp4"))


def test_no_camera_is_one_clear_error():
    try:
        capture = open_webcam(0)
    except UserError as error:
        assert str(error).startswith("--webcam: no camera could be opened (device 0)")
    else:  # a machine with a camera
        capture.release()


def _demo(tmp_path, reference_dir, *args):
    d2_dir = reference_dir / "d2_r18_shapes"
    command = [sys.executable, "-m", "maskrcnn_multi.tools.demo", "--config-file", str(d2_dir / "config.yaml"),
               *args, "MODEL.WEIGHTS", str(d2_dir / "model_final.pkl"), "MODEL.DEVICE", "cpu",
               "DATASETS.TEST", "('shapes_val',)"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("MASKRCNN_DEBUG", None)
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_demo_annotates_a_video_the_test_wrote(reference_dir, tmp_path):
    """Frames of a shared val image (the model detects its shapes) made into a 3-frame video."""
    image = cv2.imread(str(reference_dir / "d2_r18_shapes" / "images" / "val_00001.jpg"))
    source = tmp_path / "shapes.avi"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 2.0, (image.shape[1], image.shape[0]))
    for _ in range(3):
        writer.write(image)
    writer.release()
    done = _demo(tmp_path, reference_dir, "--video-input", str(source), "--output", str(tmp_path / "out") + os.sep)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "wrote " in done.stdout and "3 frames" in done.stdout and " ms / frame" in done.stdout
    written = cv2.VideoCapture(str(tmp_path / "out" / "shapes.mp4"))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    ok, frame = written.read()
    assert ok and frame.shape == image.shape
    assert np.abs(frame.astype(int) - image.astype(int)).mean() > 1.0  # detections were drawn


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--webcam", "--output", "cam.mp4"], "--webcam: no camera could be opened"),
    (["--video-input", "nope.mp4", "--output", "o.mp4"], "--video-input 'nope.mp4' does not exist"),
    (["--output", "o.mp4"], "give exactly one of --input, --video-input FILE, --webcam (got: none)"),
    (["--webcam", "--video-input", "a.mp4", "--output", "o.mp4"], "(got: --video-input, --webcam)"),
])
def test_demo_video_errors_are_one_line(reference_dir, tmp_path, args, message):
    done = _demo(tmp_path, reference_dir, *args)
    if "--webcam" in args and len(args) == 3 and done.returncode == 0:
        pytest.skip("this machine has a camera")
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert lines[0].startswith("demo: error: ") and message in lines[0]
