"""tools/schedule.py: the SOLVER pairs the launch scripts pass (LR scaled with the batch, run length)."""
import pytest

from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.tools.schedule import accuracy_schedule, main, performance_schedule

MASK_3X = "configs/COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml"


@pytest.fixture
def solver():
    cfg = get_cfg()
    cfg.merge_from_file(MASK_3X)
    return cfg.SOLVER  # MAX_ITER 270000, STEPS (210000, 250000), WARMUP_ITERS 1000


def test_performance_runs_scale_the_modelzoo_lr_and_never_decay(solver):
    one = performance_schedule(solver, 8, 400, reference_batch=8, reference_lr=0.0025)
    eight = performance_schedule(solver, 64, 200, reference_batch=8, reference_lr=0.0025)
    assert (one.base_lr, one.max_iter, one.steps, one.warmup_iters) == (0.0025, 400, (), 400)
    assert eight.base_lr == pytest.approx(0.02) and eight.max_iter == 200
    with pytest.raises(ValueError, match="train_steps must be positive, got 0"):
        performance_schedule(solver, 8, 0, 8, 0.0025)


def test_accuracy_runs_keep_the_images_seen_and_decay_at_the_config_fractions(solver):
    modelzoo = accuracy_schedule(solver, 64, 0, default_steps=10250, default_batch=64, reference_batch=8,
                                 reference_lr=0.0025)
    assert modelzoo.as_opts() == ["SOLVER.IMS_PER_BATCH", "64", "SOLVER.BASE_LR", "0.02", "SOLVER.MAX_ITER", "10250",
                                  "SOLVER.STEPS", "(7972,9491)", "SOLVER.WARMUP_ITERS", "1000"]
    half = accuracy_schedule(solver, 32, 0, 10250, 64, 8, 0.0025)
    assert half.max_iter == 20500 and half.base_lr == pytest.approx(0.01)
    tiny = accuracy_schedule(solver, 2, 4, 10250, 64, 8, 0.0025)
    assert (tiny.max_iter, tiny.steps, tiny.warmup_iters) == (4, (3,), 4)


def test_cli_prints_pairs_or_names_the_bad_value(capsys):
    assert main(["--config-file", MASK_3X, "--mode", "perf", "--batch-size", "2", "--train-steps", "6"]) == 0
    assert capsys.readouterr().out.split() == ["SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.000625",
                                               "SOLVER.MAX_ITER", "6", "SOLVER.STEPS", "()",
                                               "SOLVER.WARMUP_ITERS", "6"]
    assert main(["--config-file", MASK_3X, "--mode", "acc", "--batch-size", "0"]) == 2
    assert "batch_size must be positive, got 0" in capsys.readouterr().err
