"""SOLVER.REFERENCE_WORLD_SIZE: detectron2's auto_scale_workers (linear scaling of batch and LR)."""
import pytest

from maskrcnn_multi.config import UserError, get_cfg
from maskrcnn_multi.solver import auto_scale_workers


def _cfg(*pairs):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.IMS_PER_BATCH", "16", "SOLVER.BASE_LR", "0.02", "SOLVER.MAX_ITER", "90000",
                         "SOLVER.WARMUP_ITERS", "1000", "SOLVER.STEPS", "(60000, 80000)",
                         "SOLVER.CHECKPOINT_PERIOD", "5000", "TEST.EVAL_PERIOD", "10000", *pairs])
    return cfg


def test_off_or_at_the_reference_size_the_config_is_unchanged():
    cfg = _cfg()
    assert auto_scale_workers(cfg, 4) is cfg
    cfg = _cfg("SOLVER.REFERENCE_WORLD_SIZE", "8")
    assert auto_scale_workers(cfg, 8) is cfg


def test_a_config_for_8_workers_run_on_2_sees_the_same_images_at_the_same_points():
    cfg = _cfg("SOLVER.REFERENCE_WORLD_SIZE", "8")
    cfg.freeze()
    scaled = auto_scale_workers(cfg, 2)
    solver = scaled.SOLVER
    assert (solver.IMS_PER_BATCH, solver.MAX_ITER, solver.WARMUP_ITERS) == (4, 360000, 4000)
    assert solver.BASE_LR == pytest.approx(0.005)
    assert tuple(solver.STEPS) == (240000, 320000) and solver.CHECKPOINT_PERIOD == 20000
    assert scaled.TEST.EVAL_PERIOD == 40000 and solver.REFERENCE_WORLD_SIZE == 2
    assert scaled.is_frozen() and cfg.SOLVER.IMS_PER_BATCH == 16  # a scaled copy; the original kept


def test_a_batch_that_the_reference_size_does_not_divide_is_one_line():
    with pytest.raises(UserError, match=r"SOLVER.IMS_PER_BATCH \(16\) must be a multiple of SOLVER.REFERENCE_WORLD_SIZE \(3\)"):
        auto_scale_workers(_cfg("SOLVER.REFERENCE_WORLD_SIZE", "3"), 2)
