"""Mixed precision shared by every backend: opt levels, O2 model casting, fp32 master weights.

Opt levels (apex's names, as the Ascend ModelZoo port passes them; the rules live in `config.amp`):
- O0: full precision; no autocast, no casting.
- O1: autocast in the forward pass (`Backend.autocast`); weights stay fp32.
- O2: the model's weights cast to half except normalization layers, autocast in the forward pass,
  and the optimizer steps fp32 master copies (`MasterWeightOptimizer`); `apply_opt_level` does both.
The loss scaler (static or dynamic) is `LossScaler` from `loss_scaler.py`, re-exported here.
What is device-specific (the autocast context, the preferred half type) is `Backend`'s; what is
the same on every device is here.
"""
from __future__ import annotations

import logging
from typing import List, Tuple, Union

import torch
from torch import nn

from ..config.amp import AMP_DTYPES, OPT_LEVELS
from ..config.errors import UserError
from .loss_scaler import LossScaler

__all__ = [
    "OPT_LEVELS", "LossScaler", "MasterWeightOptimizer", "apply_opt_level", "cast_model_for_o2",
    "check_opt_level", "is_normalization", "resolve_dtype",
]

logger = logging.getLogger(__name__)

_DTYPES = {name: getattr(torch, name) for name in AMP_DTYPES if name}  # "float16" -> torch.float16
# torch's own normalization classes; a project class opts in with `is_normalization = True`.
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def check_opt_level(opt_level: str) -> str:
    """Return `opt_level` if it is O0/O1/O2, else raise ValueError naming it."""
    if opt_level not in OPT_LEVELS:
        raise UserError(f"unknown OPT_LEVEL {opt_level!r} (choose from: {', '.join(OPT_LEVELS)})")
    return opt_level


def resolve_dtype(dtype: Union[None, str, torch.dtype], default: torch.dtype) -> torch.dtype:
    """AMP_DTYPE ("" / None = `default`, "float16", "bfloat16") or a torch half dtype -> torch.dtype."""
    if dtype is None or dtype == "":
        return default
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ValueError(f"AMP dtype must be torch.float16 or torch.bfloat16, got {dtype}")
        return dtype
    if dtype not in _DTYPES:
        raise UserError(f"unknown AMP_DTYPE {dtype!r} (choose from: {', '.join(map(repr, AMP_DTYPES))})")
    return _DTYPES[dtype]


def apply_opt_level(model: nn.Module, optimizer: torch.optim.Optimizer, opt_level: str, dtype: torch.dtype):
    """Prepare a fresh (model, optimizer) pair for `opt_level`; returns the optimizer to step.

    O2 casts the model to `dtype` in place (normalization layers stay fp32) and returns a
    `MasterWeightOptimizer` over fp32 masters (give LR schedulers its `.optimizer`); O0 and O1
    return `optimizer` unchanged.
    """
    if check_opt_level(opt_level) != "O2":
        return optimizer
    cast_model_for_o2(model, dtype)
    return MasterWeightOptimizer(optimizer)


def is_normalization(module: nn.Module) -> bool:
    """True for layers O2 keeps in fp32: torch's BatchNorm/GroupNorm/LayerNorm family, and any class
    with `is_normalization = True` (e.g. modeling's FrozenBatchNorm2d); no modeling import needed."""
    return isinstance(module, _NORM_TYPES) or bool(getattr(type(module), "is_normalization", False))


def cast_model_for_o2(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast floating parameters and persistent buffers to `dtype` in place, except in normalization
    layers. Non-persistent buffers are constants (anchors, pixel mean and std): they stay fp32, as
    anchor corners near 1000 px would move by up to 4 px in bfloat16.

    Parameters keep their identity (only `.data` changes), so references held elsewhere stay valid.
    """
    for module in model.modules():
        if is_normalization(module):
            continue
        for param in module.parameters(recurse=False):
            if param.is_floating_point():
                param.data = param.data.to(dtype)
        for name, buffer in list(module.named_buffers(recurse=False)):
            if name in module._non_persistent_buffers_set:
                continue
            if buffer is not None and buffer.is_floating_point():
                module._buffers[name] = buffer.to(dtype)
    return model


class MasterWeightOptimizer:
    """O2's optimizer: the wrapped optimizer steps fp32 master copies of the half parameters.

    At construction every half parameter in `optimizer.param_groups` is replaced by an fp32 master
    copy (fp32 parameters, e.g. normalization layers', are used as they are). `step()` copies the
    model's half gradients to the masters (once per iteration: `sync_master_grads`), steps the wrapped
    optimizer, and writes the masters back into the half parameters. So momentum and weight decay
    accumulate in fp32 while the forward and backward passes run in half.

    Contract for the engine: gradient clipping and unscaling act on the masters, i.e. on the
    parameters in `self.param_groups` after `sync_master_grads()` (`LossScaler` calls it). LR
    schedulers take `self.optimizer` (torch schedulers require a torch Optimizer).
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        if len(optimizer.state):
            raise ValueError("MasterWeightOptimizer needs a fresh optimizer (its state is not empty)")
        self.optimizer = optimizer
        self._pairs: List[Tuple[torch.Tensor, torch.Tensor]] = []  # (model param, fp32 master)
        for group in optimizer.param_groups:
            params = []
            for param in group["params"]:
                if param.is_floating_point() and param.dtype != torch.float32:
                    master = param.detach().clone().float().requires_grad_(param.requires_grad)
                    self._pairs.append((param, master))
                    params.append(master)
                else:
                    params.append(param)
            group["params"] = params
        self._grads_synced = False

    @property
    def param_groups(self) -> list:
        return self.optimizer.param_groups

    @property
    def state(self):
        return self.optimizer.state

    def sync_master_grads(self) -> None:
        """Copy the model's half gradients into the fp32 masters (no-op if done this iteration)."""
        if self._grads_synced:
            return
        for param, master in self._pairs:
            master.grad = None if param.grad is None else param.grad.detach().float()
        self._grads_synced = True

    @torch.no_grad()
    def step(self, closure=None):
        """Step the masters and copy them into the model's half parameters."""
        if closure is not None:
            raise ValueError("MasterWeightOptimizer.step does not take a closure")
        self.sync_master_grads()
        result = self.optimizer.step()
        for param, master in self._pairs:
            param.copy_(master)
        self._grads_synced = False
        return result

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of the model's parameters and of the masters."""
        self.optimizer.zero_grad(set_to_none=set_to_none)
        for param, _ in self._pairs:
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad.zero_()
        self._grads_synced = False

    def full_precision_state_dict(self, model: nn.Module) -> dict:
        """``model.state_dict()`` in fp32: each half parameter replaced by its master, other half
        tensors widened. What a checkpoint's "model" should hold, so that evaluating or fine-tuning
        it in fp32 sees the weights that were trained, not their half roundings."""
        masters = {id(param): master for param, master in self._pairs}
        master_by_name = {name: masters[id(param)] for name, param in model.named_parameters() if id(param) in masters}
        state = model.state_dict()
        for name, value in state.items():
            if name in master_by_name:
                state[name] = master_by_name[name].detach()
            elif value.is_floating_point() and value.dtype != torch.float32:
                state[name] = value.float()
        return state

    def state_dict(self) -> dict:
        """The wrapped optimizer's state plus the fp32 masters (the half model loses precision)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "master_params": [master.detach().clone() for _, master in self._pairs],
        }

    @torch.no_grad()
    def load_state_dict(self, state_dict: dict) -> None:
        masters = state_dict["master_params"]
        if len(masters) != len(self._pairs):
            raise ValueError(
                f"MasterWeightOptimizer state holds {len(masters)} master params, this one {len(self._pairs)}"
            )
        self.optimizer.load_state_dict(state_dict["optimizer"])
        for (param, master), saved in zip(self._pairs, masters):
            master.copy_(saved)
            param.copy_(master)

    def __repr__(self) -> str:
        return f"MasterWeightOptimizer({len(self._pairs)} fp32 masters, {self.optimizer!r})"

