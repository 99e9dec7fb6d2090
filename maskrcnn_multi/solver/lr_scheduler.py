"""Learning-rate schedules stepped once per iteration: warmup, then multi-step decay, cosine, or
steps of a fixed gamma (detectron2's three ``SOLVER.LR_SCHEDULER_NAME``s).

The factor is detectron2's ``WarmupParamScheduler`` over its fvcore schedule: during warmup it
goes from ``warmup_factor * decay(0)`` to ``decay(warmup_iters)`` (linearly, or stays at the start
for "constant"); after it, ``decay(iteration)``, or with ``rescale_interval`` the decay is stretched
over the iterations after warmup (SOLVER.RESCALE_INTERVAL). The schedule is a pure function of the
iteration (``last_epoch`` counts iterations), so a resumed run that loads ``state_dict()`` continues
with exactly the rates of an uninterrupted one.
"""
import bisect
import logging
import math
from typing import List, Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler

from ..config.errors import UserError

__all__ = ["WarmupMultiStepLR", "WarmupCosineLR", "WarmupStepWithFixedGammaLR", "warmup_factor_at_iter"]

logger = logging.getLogger(__name__)

WARMUP_METHODS = ("linear", "constant")


def warmup_factor_at_iter(method: str, iteration: int, warmup_iters: int, warmup_factor: float) -> float:
    """The multiplier applied to the base LR at ``iteration`` during warmup (1.0 once it is over).

    ``linear`` ramps from ``warmup_factor`` at iteration 0 to 1.0 at ``warmup_iters``;
    ``constant`` holds ``warmup_factor`` for ``warmup_iters`` iterations.
    """
    if iteration >= warmup_iters:
        return 1.0
    if method == "constant":
        return warmup_factor
    if method == "linear":
        alpha = iteration / warmup_iters
        return warmup_factor * (1.0 - alpha) + alpha
    raise UserError(f"unknown SOLVER.WARMUP_METHOD '{method}' (choose from: {', '.join(WARMUP_METHODS)})")


def _check_warmup(method: str, warmup_iters: int, warmup_factor: float) -> None:
    if method not in WARMUP_METHODS:
        raise UserError(f"unknown SOLVER.WARMUP_METHOD '{method}' (choose from: {', '.join(WARMUP_METHODS)})")
    if warmup_iters < 0:
        raise UserError(f"SOLVER.WARMUP_ITERS must be >= 0, got {warmup_iters}")
    if not 0.0 <= warmup_factor <= 1.0:
        raise UserError(f"SOLVER.WARMUP_FACTOR must be in [0, 1], got {warmup_factor}")


class _WarmupLR(LRScheduler):
    """``base_lr * warmup(it) * decay(it)``: the warmup and the LR bookkeeping shared by the schedules;
    a subclass sets its own fields, then calls this ``__init__``, and defines ``decay_at``."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_factor: float, warmup_iters: int,
                 warmup_method: str, last_epoch: int, max_iter: int = 0, rescale_interval: bool = False):
        _check_warmup(warmup_method, warmup_iters, warmup_factor)
        if rescale_interval and max_iter <= warmup_iters:
            raise UserError(f"SOLVER.RESCALE_INTERVAL needs SOLVER.MAX_ITER ({max_iter}) > SOLVER.WARMUP_ITERS "
                            f"({warmup_iters})")
        self.warmup_factor = warmup_factor
        self.warmup_iters = warmup_iters
        self.warmup_method = warmup_method
        self.schedule_length = max_iter
        self.rescale_interval = rescale_interval
        super().__init__(optimizer, last_epoch)

    def decay_at(self, iteration: float) -> float:
        """The schedule without warmup at ``iteration`` (fractional when the interval is rescaled)."""
        raise NotImplementedError

    def lr_factor_at(self, iteration: int) -> float:
        """The factor by which every group's initial LR is multiplied at ``iteration``."""
        if iteration < self.warmup_iters:
            start = self.warmup_factor * self.decay_at(0)
            if self.warmup_method == "constant":
                return start
            end = self.decay_at(0 if self.rescale_interval else self.warmup_iters)
            return start + (end - start) * iteration / self.warmup_iters
        if self.rescale_interval:  # the decay runs over the iterations after warmup only
            length = self.schedule_length
            iteration = (iteration - self.warmup_iters) * length / (length - self.warmup_iters)
        return self.decay_at(iteration)

    def get_lr(self) -> List[float]:
        factor = self.lr_factor_at(self.last_epoch)
        return [base_lr * factor for base_lr in self.base_lrs]

    def _get_closed_form_lr(self) -> List[float]:
        return self.get_lr()


class WarmupMultiStepLR(_WarmupLR):
    """``base_lr * warmup(it) * gamma ** (number of milestones <= it)`` (detectron2's schedule)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        milestones: Sequence[int],
        gamma: float = 0.1,
        warmup_factor: float = 0.001,
        warmup_iters: int = 1000,
        warmup_method: str = "linear",
        max_iter: int = 0,
        last_epoch: int = -1,
        rescale_interval: bool = False,
    ):
        milestones = [int(m) for m in milestones]
        if milestones != sorted(milestones):
            raise UserError(f"SOLVER.STEPS must be increasing, got {tuple(milestones)}")
        if max_iter > 0 and any(m > max_iter for m in milestones):
            logger.warning(
                "SOLVER.STEPS %s has milestones beyond SOLVER.MAX_ITER %d; they are never reached",
                tuple(milestones), max_iter,
            )
        self.milestones = milestones
        self.gamma = gamma
        super().__init__(optimizer, warmup_factor, warmup_iters, warmup_method, last_epoch, max_iter, rescale_interval)

    def decay_at(self, iteration: float) -> float:
        return self.gamma ** bisect.bisect_right(self.milestones, int(iteration + 1e-6))


class WarmupCosineLR(_WarmupLR):
    """Warmup, then half a cosine from ``base_lr`` at 0 to ``base_lr * end_factor`` at ``max_iter``."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iter: int,
        warmup_factor: float = 0.001,
        warmup_iters: int = 1000,
        warmup_method: str = "linear",
        end_factor: float = 0.0,
        last_epoch: int = -1,
        rescale_interval: bool = False,
    ):
        if max_iter <= 0:
            raise UserError(f"SOLVER.MAX_ITER must be > 0 for the cosine schedule, got {max_iter}")
        self.max_iter = max_iter
        self.end_factor = end_factor
        super().__init__(optimizer, warmup_factor, warmup_iters, warmup_method, last_epoch, max_iter, rescale_interval)

    def decay_at(self, iteration: float) -> float:
        progress = min(iteration, self.max_iter) / self.max_iter
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.end_factor + (1.0 - self.end_factor) * cosine


class WarmupStepWithFixedGammaLR(_WarmupLR):
    """Warmup, then ``num_decays`` equal steps: ``base_lr * gamma ** k`` in the k-th of ``num_decays + 1``
    equal parts of ``max_iter`` (fvcore's StepWithFixedGammaParamScheduler, as detectron2 uses it)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iter: int,
        gamma: float = 0.1,
        num_decays: int = 3,
        warmup_factor: float = 0.001,
        warmup_iters: int = 1000,
        warmup_method: str = "linear",
        last_epoch: int = -1,
        rescale_interval: bool = False,
    ):
        if max_iter <= 0:
            raise UserError(f"SOLVER.MAX_ITER must be > 0 for WarmupStepWithFixedGammaLR, got {max_iter}")
        if num_decays < 1:
            raise UserError(f"SOLVER.NUM_DECAYS must be >= 1, got {num_decays}")
        self.max_iter = max_iter
        self.gamma = gamma
        self.num_decays = num_decays
        super().__init__(optimizer, warmup_factor, warmup_iters, warmup_method, last_epoch, max_iter, rescale_interval)

    def decay_at(self, iteration: float) -> float:
        part = int((iteration / self.max_iter + 1e-6) * (self.num_decays + 1))  # fvcore's WHERE_EPSILON
        return self.gamma ** min(part, self.num_decays)
