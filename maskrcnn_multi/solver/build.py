"""Build the optimizer (SGD with per-parameter hyper-parameters, optional gradient clipping) and
the LR scheduler from a config, as detectron2 does.

Parameter groups: weights get ``SOLVER.WEIGHT_DECAY``; parameters of normalization layers get
``SOLVER.WEIGHT_DECAY_NORM``; biases get ``BASE_LR * SOLVER.BIAS_LR_FACTOR`` and
``SOLVER.WEIGHT_DECAY_BIAS``. A normalization layer is one of torch's norm classes or any module
whose class sets ``is_normalization = True`` (our FrozenBatchNorm2d, custom norms).
"""
import logging
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Type

import torch
from torch import nn

from maskrcnn_multi.backends import backend_class
from maskrcnn_multi.backends.amp import is_normalization  # one definition: O2 keeps the same layers fp32
from maskrcnn_multi.config.errors import UserError

from .lr_scheduler import WarmupCosineLR, WarmupMultiStepLR, WarmupStepWithFixedGammaLR

__all__ = [
    "build_optimizer",
    "build_lr_scheduler",
    "get_default_optimizer_params",
    "build_gradient_clipper",
    "is_normalization",
]

logger = logging.getLogger(__name__)

CLIP_TYPES = ("value", "norm", "full_model")
SCHEDULERS = ("WarmupMultiStepLR", "WarmupCosineLR", "WarmupStepWithFixedGammaLR")
OPTIMIZERS = ("SGD", "AdamW")


def get_default_optimizer_params(
    model: nn.Module,
    base_lr: float,
    weight_decay: float,
    weight_decay_norm: Optional[float] = None,
    bias_lr_factor: float = 1.0,
    weight_decay_bias: Optional[float] = None,
) -> List[Dict[str, Any]]:
    """Parameter groups ``[{"params": [...], "lr": ..., "weight_decay": ...}, ...]`` for ``model``.

    Each trainable parameter appears once (shared parameters are counted at their first owner);
    parameters with equal hyper-parameters share a group, in the order they were first met.
    ``None`` for ``weight_decay_norm`` / ``weight_decay_bias`` means "same as weight_decay".
    """
    if weight_decay_norm is None:
        weight_decay_norm = weight_decay
    if weight_decay_bias is None:
        weight_decay_bias = weight_decay
    seen: Set[int] = set()
    groups: Dict[tuple, List[nn.Parameter]] = {}
    for module in model.modules():
        norm = is_normalization(module)
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            lr, decay = base_lr, weight_decay
            if norm:
                decay = weight_decay_norm
            elif name == "bias":
                lr, decay = base_lr * bias_lr_factor, weight_decay_bias
            groups.setdefault((lr, decay), []).append(param)
    return [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()]


def build_gradient_clipper(cfg) -> Optional[Callable[[Iterable[torch.Tensor]], None]]:
    """A function clipping the gradients of the given parameters per SOLVER.CLIP_GRADIENTS, or None.

    ``value`` clamps each gradient element to ±CLIP_VALUE; ``norm`` rescales each parameter's
    gradient to a NORM_TYPE-norm of at most CLIP_VALUE; ``full_model`` does the same over all
    parameters at once. (detectron2: ``value`` and ``norm`` are per parameter.)
    """
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not clip.ENABLED:
        return None
    clip_type, clip_value = clip.CLIP_TYPE, float(clip.CLIP_VALUE)
    if clip_type not in CLIP_TYPES:
        raise UserError(
            f"unknown SOLVER.CLIP_GRADIENTS.CLIP_TYPE '{clip_type}' (choose from: {', '.join(CLIP_TYPES)})"
        )
    if clip_value <= 0:
        raise UserError(f"SOLVER.CLIP_GRADIENTS.CLIP_VALUE must be > 0, got {clip_value}")
    if clip_type == "value":
        return lambda params: torch.nn.utils.clip_grad_value_(list(params), clip_value)
    norm_type = float(clip.NORM_TYPE)
    return lambda params: torch.nn.utils.clip_grad_norm_(list(params), clip_value, norm_type)


def _with_gradient_clipping(optimizer_type: Type[torch.optim.Optimizer], clipper, full_model: bool):
    """A subclass of ``optimizer_type`` whose ``step`` clips gradients first (after AMP unscaling,
    since the loss scaler unscales before it calls ``step``)."""

    def step(self, closure=None):
        params = [p for group in self.param_groups for p in group["params"]]
        if full_model:
            clipper(params)
        else:  # each parameter on its own, as detectron2: a large gradient in one layer does not
            for param in params:  # shrink the updates of all the others
                clipper([param])
        return optimizer_type.step(self, closure)

    name = optimizer_type.__name__ + "WithGradientClip"
    return type(name, (optimizer_type,), {"step": step})


def _fused_on(param_groups: List[Dict[str, Any]]) -> bool:
    """Whether the parameters' device prefers torch's fused optimizer kernels (Backend.fused_optimizers)."""
    devices = {param.device.type for group in param_groups for param in group["params"]}
    return len(devices) == 1 and backend_class(devices.pop()).fused_optimizers


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """SOLVER.OPTIMIZER over ``model``'s trainable parameters, per-group weight decay and LR: SGD
    (MOMENTUM, NESTEROV) or AdamW (betas (MOMENTUM, 0.999), decoupled weight decay)."""
    solver = cfg.SOLVER
    params = get_default_optimizer_params(
        model,
        base_lr=solver.BASE_LR,
        weight_decay=solver.WEIGHT_DECAY,
        weight_decay_norm=solver.WEIGHT_DECAY_NORM,
        bias_lr_factor=solver.BIAS_LR_FACTOR,
        weight_decay_bias=solver.WEIGHT_DECAY_BIAS,
    )
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters to optimize")
    name = solver.get("OPTIMIZER", "SGD")
    if name not in OPTIMIZERS:
        raise UserError(f"unknown SOLVER.OPTIMIZER '{name}' (choose from: {', '.join(OPTIMIZERS)})")
    if name == "SGD":
        optimizer_type: Type[torch.optim.Optimizer] = torch.optim.SGD
        arguments = {"momentum": solver.MOMENTUM, "nesterov": bool(solver.get("NESTEROV", False))}
    else:
        optimizer_type, arguments = torch.optim.AdamW, {"betas": (solver.MOMENTUM, 0.999)}
    if _fused_on(params):
        arguments["fused"] = True  # one kernel over every parameter instead of a loop of small ops
    clipper = build_gradient_clipper(cfg)
    if clipper is not None:
        full_model = solver.CLIP_GRADIENTS.CLIP_TYPE == "full_model"
        optimizer_type = _with_gradient_clipping(optimizer_type, clipper, full_model)
    return optimizer_type(params, lr=solver.BASE_LR, **arguments)


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule named by SOLVER.LR_SCHEDULER_NAME (see ``SCHEDULERS``), with its warmup and
    SOLVER.RESCALE_INTERVAL."""
    solver = cfg.SOLVER
    name = solver.get("LR_SCHEDULER_NAME", "WarmupMultiStepLR")
    warmup = dict(
        warmup_factor=solver.WARMUP_FACTOR,
        warmup_iters=solver.WARMUP_ITERS,
        warmup_method=solver.WARMUP_METHOD,
        rescale_interval=solver.RESCALE_INTERVAL,
    )
    if name == "WarmupMultiStepLR":
        return WarmupMultiStepLR(optimizer, solver.STEPS, solver.GAMMA, max_iter=solver.MAX_ITER, **warmup)
    if name == "WarmupCosineLR":
        end_lr = float(solver.get("BASE_LR_END", 0.0))
        end_factor = end_lr / solver.BASE_LR if solver.BASE_LR > 0 else 0.0
        return WarmupCosineLR(optimizer, solver.MAX_ITER, end_factor=end_factor, **warmup)
    if name == "WarmupStepWithFixedGammaLR":
        return WarmupStepWithFixedGammaLR(optimizer, solver.MAX_ITER, solver.GAMMA, solver.NUM_DECAYS, **warmup)
    raise UserError(f"unknown SOLVER.LR_SCHEDULER_NAME '{name}' (choose from: {', '.join(SCHEDULERS)})")
