"""LossScaler: static or dynamic loss scaling that skips the optimizer step on inf/nan gradients.

One implementation for every device. Dynamic scaling follows torch.amp.GradScaler's schedule
(init 2**16, x2 after 2000 finite steps in a row, x0.5 on an overflow) and uses the same fused
kernel to unscale and find non-finite gradients (`torch._amp_foreach_non_finite_check_and_unscale_`,
implemented by cpu, cuda and torch_npu). GradScaler itself is not used because it has no static
scale (apex's and the Ascend port's `loss_scale=64`) and does not say publicly whether it skipped a
step. Unlike apex's static scaling, a static scale here also skips steps with inf/nan gradients.

Use per iteration:
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)      # optional, before gradient clipping
    scaler.step(optimizer)          # skipped (and counted) if any gradient is inf/nan
    scaler.update()
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Union

import torch

from ..config.amp import DYNAMIC_LOSS_SCALE, describe_loss_scale_rule, is_valid_loss_scale
from ..config.errors import UserError

logger = logging.getLogger(__name__)


class LossScaler:
    """Scales the loss, unscales gradients, skips non-finite steps, adapts the scale if dynamic.

    Args:
        loss_scale: a positive number (static scale) or "dynamic".
        init_scale, growth_factor, backoff_factor, growth_interval: the dynamic schedule.

    Attributes:
        skipped_steps: how many `step()` calls were skipped for inf/nan gradients.
        iteration: how many `update()` calls so far (the iteration named in the warning).
    """

    def __init__(
        self,
        loss_scale: Union[float, int, str] = DYNAMIC_LOSS_SCALE,
        *,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ):
        if not is_valid_loss_scale(loss_scale):
            raise UserError(f"LOSS_SCALE_VALUE must be {describe_loss_scale_rule()}, got {loss_scale!r}")
        self.dynamic = loss_scale == DYNAMIC_LOSS_SCALE
        self._scale = float(init_scale) if self.dynamic else float(loss_scale)
        if not (growth_factor > 1.0 and 0.0 < backoff_factor < 1.0 and growth_interval > 0):
            raise ValueError(
                "dynamic loss scaling needs growth_factor > 1, 0 < backoff_factor < 1, growth_interval > 0"
            )
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = int(growth_interval)
        self._growth_tracker = 0
        self.skipped_steps = 0
        self.iteration = 0
        self._unscaled = False
        self._found_inf = False

    def get_scale(self) -> float:
        """The current loss scale."""
        return self._scale

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """loss * scale (backpropagate this)."""
        return loss * self._scale

    def unscale_(self, optimizer) -> None:
        """Divide the gradients of `optimizer`'s parameters by the scale, in place, and note whether
        any is inf/nan. At most once per iteration (before clipping); `step` calls it if needed."""
        if self._unscaled:
            raise RuntimeError("LossScaler.unscale_() was already called this iteration; call update() first")
        sync = getattr(optimizer, "sync_master_grads", None)
        if sync is not None:
            sync()
        # one flag per device, shared by its dtype groups: a single host sync per device
        found_by_device, inv_scale_by_device = {}, {}
        for (device, _), grads in _grads_by_device_and_dtype(optimizer).items():
            if device not in found_by_device:
                found_by_device[device] = torch.zeros(1, dtype=torch.float32, device=device)
                inv_scale_by_device[device] = torch.full((1,), 1.0 / self._scale, dtype=torch.float32, device=device)
            torch._amp_foreach_non_finite_check_and_unscale_(grads, found_by_device[device], inv_scale_by_device[device])
        self._found_inf = any(bool(found.item()) for found in found_by_device.values())
        self._unscaled = True

    def step(self, optimizer, iteration: int = None):
        """`optimizer.step()` unless a gradient is inf/nan; then skip it, count it and log a warning.

        Returns what `optimizer.step()` returns, or None when skipped.
        """
        if not self._unscaled:
            self.unscale_(optimizer)
        if self._found_inf:
            self.skipped_steps += 1
            logger.warning(
                "inf/nan gradients at iteration %d with loss scale %g: optimizer step skipped "
                "(%d skipped so far)",
                self.iteration if iteration is None else iteration, self._scale, self.skipped_steps,
            )
            return None
        return optimizer.step()

    def update(self) -> None:
        """End the iteration: back off after an overflow, grow after `growth_interval` good steps."""
        if self.dynamic:
            if self._found_inf:
                self._scale *= self.backoff_factor
                self._growth_tracker = 0
            else:
                self._growth_tracker += 1
                if self._growth_tracker == self.growth_interval:
                    self._scale *= self.growth_factor
                    self._growth_tracker = 0
        self._unscaled = False
        self._found_inf = False
        self.iteration += 1

    def state_dict(self) -> dict:
        return {
            "scale": self._scale,
            "dynamic": self.dynamic,
            "growth_factor": self.growth_factor,
            "backoff_factor": self.backoff_factor,
            "growth_interval": self.growth_interval,
            "growth_tracker": self._growth_tracker,
            "skipped_steps": self.skipped_steps,
            "iteration": self.iteration,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()`. A static scaler keeps its own scale (the config decides it)."""
        if self.dynamic:
            self._scale = float(state["scale"])
            self._growth_tracker = int(state["growth_tracker"])
        self.skipped_steps = int(state["skipped_steps"])
        self.iteration = int(state["iteration"])

    def __repr__(self) -> str:
        kind = "dynamic" if self.dynamic else "static"
        return f"LossScaler({kind}, scale={self._scale:g}, skipped_steps={self.skipped_steps})"


def _grads_by_device_and_dtype(optimizer) -> dict:
    """{(device, dtype): [grad, ...]} over the optimizer's parameters that have a gradient."""
    groups: dict = defaultdict(list)
    for group in optimizer.param_groups:
        for param in group["params"]:
            grad = param.grad
            if grad is None:
                continue
            if grad.is_sparse:
                param.grad = grad = grad.coalesce()  # _values() of a coalesced grad shares storage
                grad = grad._values()
            groups[(grad.device, grad.dtype)].append(grad)
    return groups
