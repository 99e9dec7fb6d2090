"""tools/schedule.py: the SOLVER pairs the launch scripts pass (LR scaled with the batch, run length), and
the check of the config pairs and the device it makes before a script touches anything."""
import pytest
import torch

from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.tools.schedule import accuracy_schedule, cli, performance_schedule

MASK_3X = "configs/COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml"
PERF = ["--config-file", MASK_3X, "--mode", "perf", "--batch-size", "8", "--default-steps", "400"]


@pytest.fixture
def solver():
    cfg = get_cfg()
    cfg.merge_from_file(MASK_3X)
    return cfg.SOLVER  # MAX_ITER 270000, STEPS (210000, 250000), WARMUP_ITERS 1000


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert captured.out == "" and len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_performance_runs_scale_the_modelzoo_lr_and_never_decay(solver):
    one = performance_schedule(solver, 8, 400, reference_batch=8, reference_lr=0.0025)
    eight = performance_schedule(solver, 64, 200, reference_batch=8, reference_lr=0.0025)
    assert (one.base_lr, one.max_iter, one.steps, one.warmup_iters) == (0.0025, 400, (), 400)
    assert eight.base_lr == pytest.approx(0.02) and eight.max_iter == 200
    with pytest.raises(ValueError, match="train_steps must be positive, got 0"):
        performance_schedule(solver, 8, 0, 8, 0.0025)


def test_performance_runs_without_train_steps_take_the_default_whatever_the_batch(solver):
    default = performance_schedule(solver, 2, None, 8, 0.0025, default_steps=400)
    assert (default.ims_per_batch, default.max_iter, default.warmup_iters) == (2, 400, 400)
    assert default.base_lr == pytest.approx(0.000625)
    assert performance_schedule(solver, 2, 7, 8, 0.0025, default_steps=400).max_iter == 7
    with pytest.raises(ValueError, match="train_steps is required"):
        performance_schedule(solver, 2, None, 8, 0.0025)


def test_accuracy_runs_keep_the_images_seen_and_decay_at_the_config_fractions(solver):
    modelzoo = accuracy_schedule(solver, 64, None, default_steps=10250, default_batch=64, reference_batch=8,
                                 reference_lr=0.0025)
    assert modelzoo.as_opts() == ["SOLVER.IMS_PER_BATCH", "64", "SOLVER.BASE_LR", "0.02", "SOLVER.MAX_ITER", "10250",
                                  "SOLVER.STEPS", "(7972,9491)", "SOLVER.WARMUP_ITERS", "1000"]
    half = accuracy_schedule(solver, 32, None, 10250, 64, 8, 0.0025)
    assert half.max_iter == 20500 and half.base_lr == pytest.approx(0.01)
    tiny = accuracy_schedule(solver, 2, 4, 10250, 64, 8, 0.0025)
    assert (tiny.max_iter, tiny.steps, tiny.warmup_iters) == (4, (3,), 4)
    with pytest.raises(ValueError, match="train_steps must be positive, got 0"):
        accuracy_schedule(solver, 2, 0, 10250, 64, 8, 0.0025)


def test_cli_prints_pairs_or_names_the_bad_value(capsys):
    assert cli(["--config-file", MASK_3X, "--mode", "perf", "--batch-size", "2", "--train-steps", "6"]) == 0
    assert capsys.readouterr().out.split() == ["SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.000625",
                                               "SOLVER.MAX_ITER", "6", "SOLVER.STEPS", "()",
                                               "SOLVER.WARMUP_ITERS", "6"]
    assert cli(["--config-file", MASK_3X, "--mode", "acc", "--batch-size", "0", "--default-steps", "9"]) == 2
    assert "batch_size must be positive, got 0" in _one_error_line(capsys)
    with pytest.raises(SystemExit) as exit_info:
        cli(["--config-file", MASK_3X, "--mode", "perf", "--batch-size", "two"])
    assert exit_info.value.code == 2
    assert "argument --batch-size: invalid int value: 'two'" in _one_error_line(capsys)


def test_cli_merges_the_pairs_first_so_the_config_decides_the_warmup(capsys):
    assert cli([*PERF, "SOLVER.WARMUP_ITERS", "10", "MODEL.DEVICE", "cpu", "AMP", "1"]) == 0
    assert "SOLVER.MAX_ITER 400 SOLVER.STEPS () SOLVER.WARMUP_ITERS 10" in capsys.readouterr().out


@pytest.mark.parametrize("pairs, culprit", [
    (["MODEL.BOGUS", "1"], "unknown config key 'MODEL.BOGUS'"),
    (["SOLVER.MAX_ITER", "abc"], "'SOLVER.MAX_ITER' in command-line overrides expects int"),
    (["OPT_LEVEL", "O5"], "'OPT_LEVEL'"),
    (["MODEL.DEVICE"], "KEY VALUE pairs"),
])
def test_cli_names_a_bad_config_pair_in_one_line(capsys, pairs, culprit):
    assert cli([*PERF, *pairs]) == 2
    assert culprit in _one_error_line(capsys)


def test_check_device_refuses_an_unknown_or_unusable_device(capsys):
    assert cli([*PERF, "--check-device", "MODEL.DEVICE", "cpu"]) == 0
    capsys.readouterr()
    assert cli([*PERF, "--check-device", "MODEL.DEVICE", "gpu"]) == 2
    assert "unknown MODEL.DEVICE 'gpu'" in _one_error_line(capsys)
    if not torch.cuda.is_available():
        assert cli([*PERF, "--check-device", "MODEL.DEVICE", "cuda:0"]) == 2
        assert "MODEL.DEVICE 'cuda:0'" in _one_error_line(capsys)
