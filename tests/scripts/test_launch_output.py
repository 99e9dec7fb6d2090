"""Real runs of the launch scripts on the CPU: the ModelZoo defaults apply when --train_steps/--batch_size
are omitted, and an earlier run's test/output/<id> is kept aside (test/output/<id>.<timestamp>), never
deleted, whether the new run succeeds or stops on a user error."""
import re

import pytest

from launch_helpers import (TINY, one_error_line, output_root, plant_earlier_output, read_summary, run_script,
                            train_log, tree_bytes)

MASK = "Faster_Mask_RCNN_ID0101_for_PyTorch"
SMALL_INPUT = ["INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64"]  # after TINY: wins over its sizes


def _ok(done):
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout[-2000:]}\nstderr:\n{done.stderr[-4000:]}"
    return done.stdout


def _kept_folders(checkout):
    return sorted(path for path in output_root(checkout).iterdir() if re.fullmatch(r"0\.\d{8}-\d{6}(-\d+)?", path.name))


@pytest.mark.slow
def test_omitted_train_steps_trains_the_modelzoo_default_400_iterations(checkout, coco_root):
    # batch 1 and 64-pixel inputs keep the ModelZoo's 400 iterations to about half a minute on one core
    stdout = _ok(run_script(checkout, "train_performance_1p.sh", f"--data_path={coco_root}", "--device=cpu",
                            "--batch_size=1", "--", *TINY, *SMALL_INPUT))
    assert "batch 1, 400 iterations (default)" in stdout
    log = train_log(checkout)
    assert "SOLVER.IMS_PER_BATCH 1 SOLVER.BASE_LR 0.0003125 SOLVER.MAX_ITER 400" in log
    assert "Overall training speed: 390 iterations" in log  # 400 run, the first 10 not timed
    summary = read_summary(checkout, f"{MASK}_bs1_1p_perf")
    assert summary["BatchSize"] == "1" and float(summary["ActualFPS"]) > 0 and float(summary["ActualLoss"]) > 0


@pytest.mark.slow
def test_a_second_run_keeps_the_first_runs_output(checkout, coco_root):
    # first run: --batch_size omitted, so the ModelZoo's 8 images per iteration
    _ok(run_script(checkout, "train_performance_1p.sh", f"--data_path={coco_root}", "--device=cpu",
                   "--train_steps=2", "--", *TINY))
    assert read_summary(checkout, f"{MASK}_bs8_1p_perf")["BatchSize"] == "8"
    assert "SOLVER.IMS_PER_BATCH 8 SOLVER.BASE_LR 0.0025 SOLVER.MAX_ITER 2" in train_log(checkout)
    first = tree_bytes(output_root(checkout) / "0")
    assert "train_dir/model_final.pth" in first

    stdout = _ok(run_script(checkout, "train_performance_1p.sh", f"--data_path={coco_root}", "--device=cpu",
                            "--train_steps=2", "--batch_size=2", "--", *TINY))
    [kept] = _kept_folders(checkout)
    assert f"the earlier run's output is kept as test/output/{kept.name}" in stdout
    assert tree_bytes(kept) == first  # every byte of the first run, checkpoint included
    assert read_summary(checkout, f"{MASK}_bs2_1p_perf")["BatchSize"] == "2"
    assert not (output_root(checkout) / "0" / f"{MASK}_bs8_1p_perf.log").exists()
    assert f"kept as test/output/{kept.name}" in train_log(checkout)


def test_a_user_error_found_by_train_net_is_one_line_and_keeps_the_earlier_output(checkout, coco_root, tmp_path):
    earlier = plant_earlier_output(checkout)
    missing = tmp_path / "no_such_weights.pth"
    done = run_script(checkout, "train_performance_1p.sh", f"--data_path={coco_root}", "--device=cpu",
                      "--train_steps=2", "--batch_size=2", "--", *TINY, "MODEL.WEIGHTS", str(missing), timeout=180)
    assert done.returncode == 2, done.stderr[-3000:]
    line = one_error_line(done.stderr, "train_performance_1p.sh")
    assert str(missing) in line and "(log: test/output/0/train_0.log)" in line
    [kept] = _kept_folders(checkout)
    assert tree_bytes(kept) == {path[len("0/"):]: data for path, data in earlier.items()}
    assert str(missing) in train_log(checkout)
