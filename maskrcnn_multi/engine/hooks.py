"""The hooks a training run uses: iteration timing and FPS, the LR schedule, periodic checkpoints,
periodic evaluation, periodic metric writing.

Register them in this order (``DefaultTrainer.build_hooks``): IterationTimer first (so its timing
excludes the others' after_step), LRScheduler, PeriodicCheckpointer, EvalHook, PeriodicWriter last
(so it reports what the others put in the storage).
"""
import datetime
import logging
import math
import time
from collections import Counter
from typing import Callable, Dict, Mapping, Optional, Sequence

from ..config.errors import UserError
from .events import EventWriter
from .launch import is_main_process, synchronize
from .train_loop import HookBase

__all__ = ["IterationTimer", "LRScheduler", "PeriodicCheckpointer", "EvalHook", "PeriodicWriter", "flatten_results"]

logger = logging.getLogger(__name__)


class IterationTimer(HookBase):
    """Puts each iteration's time (``time``) in the storage and, after training, logs
    ``FPS = x.xxx``: ``ims_per_batch`` (the global batch) * iterations / seconds, counting only
    before_step + run_step (hooks' after_step excluded) of iterations after the first
    ``warmup_iter``. A run too short for that is measured after its first iteration instead.
    """

    def __init__(self, ims_per_batch: int, warmup_iter: int = 10):
        self._ims_per_batch = ims_per_batch
        self._warmup_iter = warmup_iter
        self._step_start = 0.0
        self._train_start = 0.0
        self._seconds: list = []  # per iteration of this run

    def before_train(self) -> None:
        self._train_start = time.perf_counter()
        self._seconds = []

    def before_step(self) -> None:
        self._step_start = time.perf_counter()

    def after_step(self) -> None:
        seconds = time.perf_counter() - self._step_start
        self._seconds.append(seconds)
        self.trainer.storage.put_scalar("time", seconds)

    def fps(self) -> Optional[float]:
        """Images per second over the timed iterations, or None before two iterations ran."""
        warmup = self._warmup_iter if len(self._seconds) > self._warmup_iter else 1
        timed = self._seconds[warmup:]
        total = sum(timed)
        if not timed or total <= 0:
            return None
        return self._ims_per_batch * len(timed) / total

    def after_train(self) -> None:
        total = time.perf_counter() - self._train_start
        stepping = sum(self._seconds)
        fps = self.fps()
        if fps is not None:
            timed = len(self._seconds) - (self._warmup_iter if len(self._seconds) > self._warmup_iter else 1)
            logger.info(
                "Overall training speed: %d iterations in %s (%.4f s / it)",
                timed, datetime.timedelta(seconds=int(stepping)), self._ims_per_batch / fps,
            )
            logger.info("FPS = {:.3f}".format(fps))
        logger.info(
            "Total training time: %s (%s on hooks)",
            datetime.timedelta(seconds=int(total)), datetime.timedelta(seconds=int(max(total - stepping, 0))),
        )


class LRScheduler(HookBase):
    """Records the learning rate of the largest parameter group and steps the schedule."""

    def __init__(self, optimizer, scheduler):
        self._optimizer = optimizer
        self._scheduler = scheduler
        self._group_index = self._representative_group(optimizer.param_groups)

    @staticmethod
    def _representative_group(param_groups: Sequence[dict]) -> int:
        sizes = [len(group["params"]) for group in param_groups]
        if max(sizes) > 1:
            return sizes.index(max(sizes))
        # one parameter per group: report the most common LR
        common_lr = Counter(group["lr"] for group in param_groups).most_common(1)[0][0]
        return next(i for i, group in enumerate(param_groups) if group["lr"] == common_lr)

    def after_step(self) -> None:
        lr = self._optimizer.param_groups[self._group_index]["lr"]
        self.trainer.storage.put_scalar("lr", lr, smoothing_hint=False)
        self._scheduler.step()


class PeriodicCheckpointer(HookBase):
    """Saves ``model_{iter:07d}`` every ``period`` iterations and ``model_final`` after the last.

    ``extra_state()`` (called on every rank: it may gather) returns what else a resume needs
    (iteration, RNG states, data position); the checkpointer writes on the main process only.
    """

    def __init__(self, checkpointer, period: int, extra_state: Callable[[], Dict] = dict, final_name="model_final"):
        if period <= 0:
            raise UserError(f"SOLVER.CHECKPOINT_PERIOD must be > 0, got {period}")
        self._checkpointer = checkpointer
        self._period = period
        self._extra_state = extra_state
        self._final_name = final_name

    def after_step(self) -> None:
        iteration = self.trainer.iter
        is_final = iteration + 1 >= self.trainer.max_iter
        if (iteration + 1) % self._period == 0 or is_final:
            extra = {"iteration": iteration, **self._extra_state()}
            if is_main_process():
                name = self._final_name if is_final else f"model_{iteration:07d}"
                self._checkpointer.save(name, **extra)
            synchronize()


def flatten_results(results: Mapping, prefix: str = "") -> Dict[str, float]:
    """``{"bbox": {"AP": 1.0}}`` -> ``{"bbox/AP": 1.0}``; a non-number leaf is an error naming it."""
    flat: Dict[str, float] = {}
    for key, value in results.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_results(value, name))
            continue
        try:
            flat[name] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"evaluation result '{name}' is {value!r}, not a number") from None
    return flat


class EvalHook(HookBase):
    """Runs ``eval_function()`` every ``period`` iterations (0: never) and after the last one.

    The global RNG states are restored afterwards, so evaluating never changes the training run
    (a run with evaluation draws the same random numbers as one without, and resumes identically).
    Must be registered on every rank or none.
    """

    def __init__(self, period: int, eval_function: Callable[[], Optional[Mapping]], rng_state=None):
        self._period = period
        self._func = eval_function
        self._rng_state = rng_state  # (capture, restore) pair; None: leave the RNGs alone
        self.last_results: Optional[Mapping] = None

    def _do_eval(self) -> None:
        saved = self._rng_state[0]() if self._rng_state else None
        try:
            results = self._func()
        finally:
            if saved is not None:
                self._rng_state[1](saved)
        if results:
            if not isinstance(results, Mapping):
                raise TypeError(f"the evaluation function returned {type(results).__name__}, not a dict")
            flat = {name: value for name, value in flatten_results(results).items() if math.isfinite(value)}
            self.trainer.storage.put_scalars(**flat, smoothing_hint=False)
        self.last_results = results
        synchronize()  # ranks evaluate for different times; start the next iteration together

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if next_iter >= self.trainer.max_iter or (self._period > 0 and next_iter % self._period == 0):
            self._do_eval()


class PeriodicWriter(HookBase):
    """Calls each writer's ``write()`` every ``period`` iterations and after the last one."""

    def __init__(self, writers: Sequence[EventWriter], period: int = 20):
        self._writers = list(writers)
        self._period = period

    def after_step(self) -> None:
        iteration = self.trainer.iter
        if (iteration + 1) % self._period == 0 or iteration + 1 >= self.trainer.max_iter:
            for writer in self._writers:
                writer.write()

    def after_train(self) -> None:
        for writer in self._writers:
            writer.close()
