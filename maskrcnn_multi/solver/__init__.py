"""Solver: the optimizer and the learning-rate schedule, built from ``cfg.SOLVER``."""
from .build import (
    build_gradient_clipper,
    build_lr_scheduler,
    build_optimizer,
    get_default_optimizer_params,
    is_normalization,
)
from .lr_scheduler import WarmupCosineLR, WarmupMultiStepLR, warmup_factor_at_iter

__all__ = [
    "build_optimizer",
    "build_lr_scheduler",
    "build_gradient_clipper",
    "get_default_optimizer_params",
    "is_normalization",
    "WarmupMultiStepLR",
    "WarmupCosineLR",
    "warmup_factor_at_iter",
]
