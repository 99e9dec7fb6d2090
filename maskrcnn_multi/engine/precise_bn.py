"""TEST.PRECISE_BN: recompute BatchNorm's running statistics before each evaluation (detectron2's
``PreciseBN`` hook over fvcore's ``update_bn_stats``).

During training the running mean and variance are an exponential average over changing weights; the
precise statistics are the plain average of NUM_ITER fresh training batches' statistics under the
current weights. Only trainable BatchNorm layers (BN, SyncBN) take part; FrozenBN and GN have none.
"""
import itertools
import logging
from typing import Callable, Iterable, List

import torch
from torch import nn

from .train_loop import HookBase

__all__ = ["PreciseBN", "get_bn_modules", "update_bn_stats"]

logger = logging.getLogger(__name__)


def get_bn_modules(model: nn.Module) -> List[nn.Module]:
    """The BatchNorm layers of ``model`` that are in training mode (fvcore's rule)."""
    return [m for m in model.modules() if m.training and isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def update_bn_stats(forward: Callable[[object], object], batches: Iterable, bn_layers: List[nn.Module],
                    num_iter: int) -> None:
    """Set each layer's running mean / var to the average of its batch statistics over ``num_iter``
    calls of ``forward(batch)`` (momentum 1.0 makes each forward write its batch's statistics)."""
    momenta = [bn.momentum for bn in bn_layers]
    means = [torch.zeros_like(bn.running_mean) for bn in bn_layers]
    variances = [torch.zeros_like(bn.running_var) for bn in bn_layers]
    for bn in bn_layers:
        bn.momentum = 1.0
    done = 0
    try:
        for done, batch in enumerate(itertools.islice(batches, num_iter), start=1):
            forward(batch)
            for bn, mean, variance in zip(bn_layers, means, variances):
                mean += (bn.running_mean - mean) / done
                variance += (bn.running_var - variance) / done
    finally:
        for bn, momentum in zip(bn_layers, momenta):
            bn.momentum = momentum
    if done != num_iter:
        raise RuntimeError(f"precise BN: the data ran out after {done} of {num_iter} batches")
    for bn, mean, variance in zip(bn_layers, means, variances):
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(variance)


class PreciseBN(HookBase):
    """Every ``period`` iterations and after the last one, recompute the statistics from ``num_iter``
    batches of ``data_loader`` (register before the checkpointer and the evaluation, on every rank).

    ``forward(batch)`` runs the training model on a batch (under the run's autocast); ``rng_state``
    is a (capture, restore) pair so the extra forwards draw no random numbers from the training run.
    """

    def __init__(self, period: int, model: nn.Module, data_loader, num_iter: int,
                 forward: Callable[[object], object], rng_state=None):
        self._period = period
        self._bn_layers = get_bn_modules(model)
        self._data_loader = data_loader
        self._num_iter = num_iter
        self._forward = forward
        self._rng_state = rng_state
        self._batches = None

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if next_iter >= self.trainer.max_iter or (self._period > 0 and next_iter % self._period == 0):
            self.update_stats()

    def update_stats(self) -> None:
        if not self._bn_layers:
            return
        saved = self._rng_state[0]() if self._rng_state else None
        logger.info("Running precise-BN for %d iterations (%d BatchNorm layers)", self._num_iter, len(self._bn_layers))
        try:
            if self._batches is None:
                self._batches = iter(self._data_loader)  # draws the loader's base seed: inside the saved states
            update_bn_stats(self._forward, self._batches, self._bn_layers, self._num_iter)
        finally:
            if saved is not None:
                self._rng_state[1](saved)
