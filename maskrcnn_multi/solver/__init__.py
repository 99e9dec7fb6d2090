"""Solver: the optimizer and the learning-rate schedule, built from ``cfg.SOLVER``."""
from .auto_scale import auto_scale_workers
from .build import (
    build_gradient_clipper,
    build_lr_scheduler,
    build_optimizer,
    get_default_optimizer_params,
    is_normalization,
)
from .lr_scheduler import WarmupCosineLR, WarmupMultiStepLR, WarmupStepWithFixedGammaLR, warmup_factor_at_iter

__all__ = [
    "auto_scale_workers",
    "build_optimizer",
    "build_lr_scheduler",
    "build_gradient_clipper",
    "get_default_optimizer_params",
    "is_normalization",
    "WarmupMultiStepLR",
    "WarmupCosineLR",
    "WarmupStepWithFixedGammaLR",
    "warmup_factor_at_iter",
]
