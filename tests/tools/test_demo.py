"""The demo CLI on two shared images with the shared checkpoint."""
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np


REPO_ROOT = Path(__file__).resolve().parents[2]


def test_demo_writes_drawn_images_and_logs(reference_dir, tmp_path):
    d2_dir = reference_dir / "d2_r18_shapes"
    inputs = [d2_dir / "images" / "val_00001.jpg", d2_dir / "images" / "val_00002.jpg"]
    output_dir = tmp_path / "out"
    command = [sys.executable, "-m", "maskrcnn_multi.tools.demo", "--config-file", str(d2_dir / "config.yaml"),
               "--input", str(inputs[0]), str(d2_dir / "images" / "val_0000[2].jpg"),
               "--output", str(output_dir) + os.sep, "--confidence-threshold", "0.3",
               "--opts", "MODEL.WEIGHTS", str(d2_dir / "model_final.pkl"), "MODEL.DEVICE", "cpu"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]

    for source in inputs:
        written = output_dir / source.name
        assert written.is_file(), f"missing {written}; log:\n{log[-2000:]}"
        drawn, original = cv2.imread(str(written)), cv2.imread(str(source))
        assert drawn.shape == original.shape
        assert np.abs(drawn.astype(int) - original.astype(int)).mean() > 1.0, f"{written} looks undrawn"
        assert re.search(re.escape(str(source)) + r": detected [1-9]\d* instances in \d+\.\d\ds", log), log[-2000:]


def test_demo_takes_trailing_key_value_pairs(reference_dir, tmp_path):
    d2_dir = reference_dir / "d2_r18_shapes"
    source = d2_dir / "images" / "val_00003.jpg"
    target = tmp_path / "drawn.jpg"
    command = [sys.executable, "-m", "maskrcnn_multi.tools.demo", "--config-file", str(d2_dir / "config.yaml"),
               "--input", str(source), "--output", str(target),
               "MODEL.WEIGHTS", str(d2_dir / "model_final.pkl"), "MODEL.DEVICE", "cpu"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert target.is_file()


def test_class_names_follow_the_dataset_then_the_class_count():
    from maskrcnn_multi.config import get_cfg
    from maskrcnn_multi.data.synthetic import register_synthetic  # noqa: F401  (registers shapes_*)
    from maskrcnn_multi.tools.demo import class_names_for

    cfg = get_cfg()
    assert len(class_names_for(cfg)) == 80 and class_names_for(cfg)[0] == "person"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    assert class_names_for(cfg) == ["class 0", "class 1", "class 2"]
    cfg.DATASETS.TEST = ("shapes_val",)
    assert class_names_for(cfg) == ["rectangle", "ellipse", "triangle"]


def test_output_names_keep_inputs_of_the_same_name_apart(tmp_path):
    from maskrcnn_multi.tools.demo import expand_inputs, output_names

    assert output_names(["a/x.jpg", "b/y.jpg"]) == ["x.jpg", "y.jpg"]
    same = [str(tmp_path / "a" / "x.jpg"), str(tmp_path / "b" / "c" / "x.jpg"), str(tmp_path / "y.jpg")]
    assert output_names(same) == [os.path.join("a", "x.jpg"), os.path.join("b", "c", "x.jpg"), "y.jpg"]
    (tmp_path / "one.jpg").write_bytes(b"")
    (tmp_path / "two.jpg").write_bytes(b"")
    # a file matched by two patterns is drawn once; folders are not inputs
    assert expand_inputs([str(tmp_path / "one.jpg"), str(tmp_path / "*")]) == [
        str(tmp_path / "one.jpg"), str(tmp_path / "two.jpg")]
