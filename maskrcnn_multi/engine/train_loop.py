"""The training loop: ``TrainerBase`` runs hooks around ``run_step``; ``SimpleTrainer.run_step`` is
one forward / backward / optimizer step, with mixed precision when given an autocast context and a
loss scaler (both come from the backend; this file never names a device).

Order of one iteration::

    hook.before_step() for each hook
    run_step(): next batch -> [autocast] model(batch) -> backward -> finite check -> step
    hook.after_step() for each hook; storage.step()
"""
import contextlib
import logging
import math
import time
import weakref
from typing import Callable, ContextManager, Dict, List, Mapping, Optional, Sequence

import torch

from ..config.errors import UserError
from .debug_checks import check_batch, first_non_finite_gradient
from .events import EventStorage
from .launch import get_world_size, reduce_mean

__all__ = ["HookBase", "TrainerBase", "SimpleTrainer", "format_loss_terms"]

logger = logging.getLogger(__name__)

# AMP: this many optimizer steps skipped in a row for non-finite gradients stops the run. A dynamic
# scale halves at each skip, so 32 skips take it from its initial 2**16 down to 2**-16: no scale
# makes such gradients finite, the loss itself is broken. A static scale cannot adapt, so a shorter
# run of skips already says the same.
MAX_CONSECUTIVE_SKIPS = {"dynamic": 32, "static": 10}


class HookBase:
    """Something done around every iteration. ``self.trainer`` is a weak proxy set at registration.

    ``before_step`` should be cheap: its time counts into the iteration time (and FPS); put slow
    work (checkpointing, evaluation) in ``after_step``.
    """

    trainer: "TrainerBase"

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}


class TrainerBase:
    """Iterations ``start_iter .. max_iter - 1`` with hooks; subclasses implement ``run_step``.

    Attributes: ``iter`` (the current iteration; ``max_iter`` once training finished normally),
    ``start_iter``, ``max_iter``, ``storage`` (the EventStorage of this run).
    """

    def __init__(self):
        self._hooks: List[HookBase] = []
        self.iter = 0
        self.start_iter = 0
        self.max_iter = 0
        self.storage: Optional[EventStorage] = None

    def register_hooks(self, hooks: Sequence[Optional[HookBase]]) -> None:
        """Append hooks (None entries are dropped); they run in registration order."""
        for hook in hooks:
            if hook is None:
                continue
            if not isinstance(hook, HookBase):
                raise TypeError(f"hooks must derive from HookBase, got {type(hook).__name__}")
            # a weak proxy: hook and trainer must not own each other
            hook.trainer = weakref.proxy(self)
            self._hooks.append(hook)

    def train(self, start_iter: int, max_iter: int) -> None:
        """Run iterations ``start_iter`` to ``max_iter - 1``.

        Logs ``step_time = x.xxxx`` (seconds, hooks included) for the first two iterations of this
        run, which the ModelZoo's scripts sum into CompileTime.
        """
        logger.info("Starting training from iteration %d", start_iter)
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        with EventStorage(start_iter) as self.storage:
            try:
                self.before_train()
                for self.iter in range(start_iter, max_iter):
                    step_start = time.perf_counter()
                    self.before_step()
                    self.run_step()
                    self.after_step()
                    if self.iter - start_iter < 2:
                        logger.info("step_time = %.4f", time.perf_counter() - step_start)
                self.iter += 1  # so that after_train sees iter == max_iter after a complete run
                self.check_steps_taken()
            except (FloatingPointError, UserError):
                raise  # its one-line message says it all; no traceback in the log
            except Exception:
                logger.exception("Exception during training at iteration %d:", self.iter)
                raise
            finally:
                self.after_train()

    def before_train(self) -> None:
        for hook in self._hooks:
            hook.before_train()

    def after_train(self) -> None:
        self.storage.iter = self.iter
        for hook in self._hooks:
            hook.after_train()

    def before_step(self) -> None:
        self.storage.iter = self.iter
        for hook in self._hooks:
            hook.before_step()

    def after_step(self) -> None:
        for hook in self._hooks:
            hook.after_step()

    def run_step(self) -> None:
        raise NotImplementedError

    def check_steps_taken(self) -> None:
        """Called after the last iteration of a complete run; subclasses raise when it learned nothing."""


def format_loss_terms(loss_terms: Mapping[str, float]) -> str:
    """``loss_box_reg=nan, loss_cls=0.6931`` for an error message."""
    return ", ".join(f"{name}={value:.4g}" for name, value in loss_terms.items())


class SimpleTrainer(TrainerBase):
    """One data source, one loss dict, one optimizer.

    Args:
        model: in training mode, ``model(batch)`` returns a dict of scalar losses.
        data_loader: an iterable of batches (iterated once, endlessly: use an infinite sampler).
        optimizer: a torch optimizer (or the backend's O2 master-weight wrapper).
        autocast: zero-argument callable returning the mixed-precision context (None: fp32).
        loss_scaler: the backend's LossScaler (``scale``, ``unscale_``, ``step``, ``update``,
            ``get_scale``, ``skipped_steps``); None means plain fp32 training, where a non-finite loss is fatal.
        memory_stats: zero-argument callable returning the backend's memory dict; its
            ``max_allocated_mb`` is logged as ``max_mem``.
        debug: DEBUG_MODE's extra checks (``debug_checks``): each batch's inputs, the first
            parameter with a non-finite gradient named, autograd anomaly detection.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data_loader,
        optimizer: torch.optim.Optimizer,
        autocast: Optional[Callable[[], ContextManager]] = None,
        loss_scaler=None,
        memory_stats: Optional[Callable[[], Dict[str, float]]] = None,
        debug: bool = False,
    ):
        super().__init__()
        model.train()
        self.model = model
        self.data_loader = data_loader
        self._data_loader_iter_obj = None
        self.optimizer = optimizer
        self.autocast = autocast or contextlib.nullcontext
        self.loss_scaler = loss_scaler
        self.memory_stats = memory_stats
        self.debug = debug
        self._consecutive_skips = 0
        self._steps_taken = 0

    @property
    def _data_loader_iter(self):
        # created lazily so that a resumed trainer can reposition the loader before the first batch
        if self._data_loader_iter_obj is None:
            self._data_loader_iter_obj = iter(self.data_loader)
        return self._data_loader_iter_obj

    def run_step(self) -> None:
        if not self.model.training:
            raise RuntimeError(f"iteration {self.iter}: the model was switched to eval mode during training")
        start = time.perf_counter()
        batch = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        if self.debug:
            check_batch(batch, self.iter)

        with self.autocast(), torch.autograd.set_detect_anomaly(self.debug):
            loss_dict = self.model(batch)
        if not isinstance(loss_dict, Mapping) or not loss_dict:
            raise TypeError(f"the model returned {type(loss_dict).__name__} in training, not a dict of losses")
        losses = sum(value.float() for value in loss_dict.values())

        self.optimizer.zero_grad(set_to_none=True)
        if self.loss_scaler is None:
            with torch.autograd.set_detect_anomaly(self.debug):
                losses.backward()
            # averaged over ranks before the check, so that every rank stops at the same iteration
            metrics = reduce_mean(dict(loss_dict))
            self._check_finite(metrics)
            self._check_gradients()
            self.optimizer.step()
            self._steps_taken += 1
        else:
            self._scaled_step(losses)
            metrics = reduce_mean(dict(loss_dict))
        self._write_metrics(metrics, data_time)

    def _check_finite(self, metrics: Mapping[str, float]) -> None:
        """fp32 training: a non-finite loss is fatal (AMP skips such steps instead)."""
        if all(math.isfinite(value) for value in metrics.values()):
            return
        world_size = get_world_size()
        averaged = f" (averaged over {world_size} processes)" if world_size > 1 else ""
        raise FloatingPointError(
            f"loss became infinite or NaN at iteration {self.iter}: {format_loss_terms(metrics)}{averaged}"
        )

    def _check_gradients(self) -> None:
        """DEBUG_MODE, fp32: a finite loss with a non-finite gradient names the parameter."""
        if not self.debug:
            return
        culprit = first_non_finite_gradient(self.model.named_parameters())
        if culprit:
            raise FloatingPointError(f"non-finite gradient at iteration {self.iter} in {culprit}")

    def _scaled_step(self, losses: torch.Tensor) -> bool:
        """Backward and step through the loss scaler; True when the step was skipped (the scaler
        counts it in ``skipped_steps`` and logs a warning naming the iteration)."""
        scaler = self.loss_scaler
        skipped_before = scaler.skipped_steps
        with torch.autograd.set_detect_anomaly(self.debug):
            scaler.scale(losses).backward()
        if self.debug:  # before unscaling: the scaled gradients are the ones that overflow
            culprit = first_non_finite_gradient(self.model.named_parameters())
            if culprit:
                logger.warning("iteration %d: the first non-finite (scaled) gradient is in %s", self.iter, culprit)
        scaler.unscale_(self.optimizer)
        scaler.step(self.optimizer, iteration=self.iter)
        scaler.update()
        if scaler.skipped_steps == skipped_before:
            self._consecutive_skips = 0
            self._steps_taken += 1
            return False
        self._consecutive_skips += 1
        limit = MAX_CONSECUTIVE_SKIPS["dynamic" if scaler.dynamic else "static"]
        if self._consecutive_skips >= limit:
            raise FloatingPointError(
                f"{self._consecutive_skips} optimizer steps in a row skipped for non-finite gradients, "
                f"the last at iteration {self.iter} (loss scale {scaler.get_scale():g}, "
                f"total_loss={float(losses.detach()):.4g}): the loss or the data is broken, not the scale"
            )
        return True

    def check_steps_taken(self) -> None:
        """After a run: every step skipped (a run shorter than the skip limit) is a failure, not a result."""
        iterations = self.iter - self.start_iter
        if iterations > 0 and self._steps_taken == 0:
            raise FloatingPointError(
                f"no optimizer step was taken in {iterations} iteration(s) (up to iteration {self.iter - 1}): "
                f"every step was skipped for non-finite gradients"
            )

    def current_loss_scale(self) -> float:
        """The loss scale now in use (1.0 without a scaler)."""
        return 1.0 if self.loss_scaler is None else float(self.loss_scaler.get_scale())

    def _write_metrics(self, metrics: Mapping[str, float], data_time: float) -> None:
        """Put this iteration's losses (averaged over ranks), timings and AMP state in the storage."""
        storage = self.storage
        storage.put_scalar("total_loss", sum(metrics.values()))
        storage.put_scalars(**metrics)
        storage.put_scalar("data_time", data_time)
        if self.loss_scaler is not None:
            storage.put_scalar("loss_scale", self.current_loss_scale(), smoothing_hint=False)
            storage.put_scalar("skipped_steps", self.loss_scaler.skipped_steps, smoothing_hint=False)
        if self.memory_stats is not None:
            peak_mb = (self.memory_stats() or {}).get("max_allocated_mb")
            if peak_mb:
                storage.put_scalar("max_mem", peak_mb, smoothing_hint=False)
