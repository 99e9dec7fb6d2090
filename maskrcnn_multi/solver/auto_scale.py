"""SOLVER.REFERENCE_WORLD_SIZE: a config tuned for N workers, run on M (detectron2's auto_scale_workers).

The batch grows by M / N and the learning rate with it (the linear scaling rule); the schedule in
iterations (MAX_ITER, WARMUP_ITERS, STEPS, EVAL_PERIOD, CHECKPOINT_PERIOD) shrinks by the same
factor, so a run sees the same number of images at the same points of its schedule.
"""
import logging

from ..config.errors import UserError

__all__ = ["auto_scale_workers"]

logger = logging.getLogger(__name__)


def auto_scale_workers(cfg, num_workers: int):
    """``cfg`` itself when SOLVER.REFERENCE_WORLD_SIZE is 0 or ``num_workers``, else a scaled copy
    (frozen if ``cfg`` was) whose REFERENCE_WORLD_SIZE is ``num_workers``."""
    reference = cfg.SOLVER.REFERENCE_WORLD_SIZE
    if reference == 0 or reference == num_workers:
        return cfg
    if reference < 0 or cfg.SOLVER.IMS_PER_BATCH % reference:
        raise UserError(
            f"SOLVER.IMS_PER_BATCH ({cfg.SOLVER.IMS_PER_BATCH}) must be a multiple of SOLVER.REFERENCE_WORLD_SIZE "
            f"({reference}) to scale the config to {num_workers} workers"
        )
    cfg = cfg.clone()
    frozen = cfg.is_frozen()
    cfg.defrost()
    scale = num_workers / reference
    solver = cfg.SOLVER
    solver.IMS_PER_BATCH = int(round(solver.IMS_PER_BATCH * scale))
    solver.BASE_LR = solver.BASE_LR * scale
    solver.MAX_ITER = int(round(solver.MAX_ITER / scale))
    solver.WARMUP_ITERS = int(round(solver.WARMUP_ITERS / scale))
    solver.STEPS = tuple(int(round(step / scale)) for step in solver.STEPS)
    cfg.TEST.EVAL_PERIOD = int(round(cfg.TEST.EVAL_PERIOD / scale))
    solver.CHECKPOINT_PERIOD = int(round(solver.CHECKPOINT_PERIOD / scale))
    solver.REFERENCE_WORLD_SIZE = num_workers
    logger.info(
        "SOLVER.REFERENCE_WORLD_SIZE %d -> %d workers: batch %d, learning rate %g, max_iter %d, warmup %d",
        reference, num_workers, solver.IMS_PER_BATCH, solver.BASE_LR, solver.MAX_ITER, solver.WARMUP_ITERS,
    )
    if frozen:
        cfg.freeze()
    return cfg
