"""LR schedules: values at known iterations, and state_dict round trips."""
import math

import pytest
import torch

from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.solver import WarmupCosineLR, WarmupMultiStepLR, WarmupStepWithFixedGammaLR, build_lr_scheduler


def _optimizer(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def _lrs(scheduler, optimizer, iterations):
    lrs = []
    for _ in range(iterations):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_multistep_with_linear_warmup():
    optimizer = _optimizer()
    scheduler = WarmupMultiStepLR(optimizer, [6, 8], gamma=0.1, warmup_factor=0.1, warmup_iters=4)
    lrs = _lrs(scheduler, optimizer, 10)
    expected = [0.1 * (0.1 * (1 - i / 4) + i / 4) for i in range(4)] + [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert lrs == pytest.approx(expected)


def test_multistep_with_constant_warmup():
    optimizer = _optimizer()
    scheduler = WarmupMultiStepLR(optimizer, [5], warmup_factor=0.25, warmup_iters=2, warmup_method="constant")
    assert _lrs(scheduler, optimizer, 6) == pytest.approx([0.025, 0.025, 0.1, 0.1, 0.1, 0.01])


def test_cosine_reaches_the_end_lr():
    optimizer = _optimizer()
    scheduler = WarmupCosineLR(optimizer, max_iter=10, warmup_iters=0, end_factor=0.1)
    lrs = _lrs(scheduler, optimizer, 11)
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[5] == pytest.approx(0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2))))
    assert lrs[10] == pytest.approx(0.01)


def test_state_dict_resumes_the_schedule():
    optimizer = _optimizer()
    scheduler = WarmupMultiStepLR(optimizer, [3], warmup_factor=0.5, warmup_iters=2)
    _lrs(scheduler, optimizer, 3)
    resumed_optimizer = _optimizer()
    resumed = WarmupMultiStepLR(resumed_optimizer, [3], warmup_factor=0.5, warmup_iters=2)
    resumed_optimizer.load_state_dict(optimizer.state_dict())
    resumed.load_state_dict(scheduler.state_dict())
    assert _lrs(resumed, resumed_optimizer, 3) == pytest.approx(_lrs(scheduler, optimizer, 3))


def test_build_from_config_and_errors_name_the_key():
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR, cfg.SOLVER.STEPS, cfg.SOLVER.MAX_ITER = 0.02, (10, 20), 30
    cfg.SOLVER.WARMUP_ITERS = 5
    optimizer = _optimizer(0.02)
    scheduler = build_lr_scheduler(cfg, optimizer)
    assert isinstance(scheduler, WarmupMultiStepLR)
    assert scheduler.lr_factor_at(15) == pytest.approx(0.1)
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupCosineLR"
    assert isinstance(build_lr_scheduler(cfg, _optimizer(0.02)), WarmupCosineLR)
    cfg.SOLVER.LR_SCHEDULER_NAME = "Poly"
    with pytest.raises(ValueError, match="SOLVER.LR_SCHEDULER_NAME 'Poly'"):
        build_lr_scheduler(cfg, _optimizer())
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
    cfg.SOLVER.STEPS = (20, 10)
    with pytest.raises(ValueError, match="SOLVER.STEPS must be increasing"):
        build_lr_scheduler(cfg, _optimizer())
    cfg.SOLVER.STEPS = (10,)
    cfg.SOLVER.WARMUP_METHOD = "exp"
    with pytest.raises(ValueError, match="SOLVER.WARMUP_METHOD 'exp'"):
        build_lr_scheduler(cfg, _optimizer())


def test_step_with_fixed_gamma_decays_at_equal_parts_of_the_run():
    optimizer = _optimizer(lr=1.0)
    scheduler = WarmupStepWithFixedGammaLR(optimizer, max_iter=100, gamma=0.1, num_decays=3, warmup_iters=0)
    lrs = _lrs(scheduler, optimizer, 101)
    assert lrs[:25] == pytest.approx([1.0] * 25) and lrs[25:50] == pytest.approx([0.1] * 25)
    assert lrs[50:75] == pytest.approx([0.01] * 25) and lrs[75:] == pytest.approx([0.001] * 26)


def test_warmup_ends_at_the_schedules_value_as_detectron2s_warmup_param_scheduler():
    """Linear from warmup_factor * decay(0) to decay(warmup_iters): for the cosine that is below 1."""
    optimizer = _optimizer(lr=1.0)
    scheduler = WarmupCosineLR(optimizer, max_iter=100, warmup_factor=0.001, warmup_iters=20)
    lrs = _lrs(scheduler, optimizer, 21)
    end = 0.5 * (1 + math.cos(math.pi * 0.2))
    assert lrs[10] == pytest.approx(0.001 + (end - 0.001) * 0.5)
    assert lrs[20] == pytest.approx(end)


def test_rescale_interval_runs_the_decay_over_the_iterations_after_warmup():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.LR_SCHEDULER_NAME", "WarmupStepWithFixedGammaLR", "SOLVER.MAX_ITER", "100",
                         "SOLVER.WARMUP_ITERS", "20", "SOLVER.NUM_DECAYS", "3", "SOLVER.BASE_LR", "1.0"])
    fixed = _lrs(build_lr_scheduler(cfg, optimizer := _optimizer(lr=1.0)), optimizer, 100)
    cfg.SOLVER.RESCALE_INTERVAL = True
    rescaled = _lrs(build_lr_scheduler(cfg, optimizer := _optimizer(lr=1.0)), optimizer, 100)
    assert fixed[30] == pytest.approx(0.1)  # 30 / 100 of the run: the second of four parts
    assert rescaled[30] == pytest.approx(1.0)  # (30 - 20) / 80: still the first part
    assert rescaled[40] == pytest.approx(0.1) and rescaled[99] == pytest.approx(0.001)
    assert rescaled[19] == pytest.approx(0.001 + (1.0 - 0.001) * 19 / 20)  # warmup ends at decay(0)
