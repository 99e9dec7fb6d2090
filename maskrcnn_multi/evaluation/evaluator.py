"""The evaluator protocol and ``inference_on_dataset``: run a model over a loader, feed an evaluator."""
import contextlib
import datetime
import logging
import time
from collections import OrderedDict
from typing import Callable, Iterable, List, Optional

import torch
from torch import nn

__all__ = ["DatasetEvaluator", "DatasetEvaluators", "inference_context", "inference_on_dataset"]

logger = logging.getLogger(__name__)


class DatasetEvaluator:
    """Accumulates (inputs, outputs) pairs with ``process`` and turns them into metrics in ``evaluate``."""

    def reset(self) -> None:
        """Forget everything processed so far (called before inference)."""

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        """inputs: the loader's batch; outputs: the model's return value for it."""

    def evaluate(self) -> dict:
        """{task: {metric: value}}; in distributed runs only the main process returns a non-empty dict."""
        return {}


class DatasetEvaluators(DatasetEvaluator):
    """Several evaluators run side by side; their results are merged (task names must not clash)."""

    def __init__(self, evaluators: Iterable[DatasetEvaluator]):
        self._evaluators = list(evaluators)

    def reset(self) -> None:
        for evaluator in self._evaluators:
            evaluator.reset()

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        for evaluator in self._evaluators:
            evaluator.process(inputs, outputs)

    def evaluate(self) -> dict:
        results = OrderedDict()
        for evaluator in self._evaluators:
            for task, metrics in (evaluator.evaluate() or {}).items():
                if task in results:
                    raise KeyError(f"two evaluators returned results for the same task '{task}'")
                results[task] = metrics
        return results


@contextlib.contextmanager
def inference_context(model: nn.Module):
    """Put ``model`` in eval mode for the block and restore its previous training mode after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def inference_on_dataset(
    model: Callable,
    data_loader: Iterable,
    evaluator: Optional[DatasetEvaluator],
    synchronize: Optional[Callable[[], None]] = None,
) -> dict:
    """Run ``model`` on every batch of ``data_loader`` under ``torch.no_grad()`` (and eval mode for an
    ``nn.Module``), feed ``evaluator`` and return ``evaluator.evaluate()`` ({} without an evaluator).

    ``synchronize``: the backend's synchronize(), called around timed regions so device time is counted.
    """
    evaluator = evaluator if evaluator is not None else DatasetEvaluator()
    sync = synchronize if synchronize is not None else (lambda: None)
    total = len(data_loader) if hasattr(data_loader, "__len__") else None
    logger.info("Start inference on %s batches", total if total is not None else "an unknown number of")
    evaluator.reset()
    num_warmup = min(5, total - 1) if total else 0
    start_time = time.perf_counter()
    compute_time = 0.0
    num_batches = 0
    last_log = start_time
    with contextlib.ExitStack() as stack:
        if isinstance(model, nn.Module):
            stack.enter_context(inference_context(model))
        stack.enter_context(torch.no_grad())
        for index, inputs in enumerate(data_loader):
            if index == num_warmup:
                start_time, compute_time = time.perf_counter(), 0.0
            compute_start = time.perf_counter()
            outputs = model(inputs)
            sync()
            compute_time += time.perf_counter() - compute_start
            evaluator.process(inputs, outputs)
            num_batches = index + 1
            if time.perf_counter() - last_log > 5.0:
                last_log = time.perf_counter()
                timed = max(num_batches - num_warmup, 1)
                logger.info("Inference done %d/%s. %.4f s / batch", num_batches, total, compute_time / timed)
    timed_batches = max(num_batches - num_warmup, 1)
    total_seconds = time.perf_counter() - start_time
    logger.info(
        "Total inference time: %s (%.6f s / batch); pure compute time: %s (%.6f s / batch), %d batches",
        datetime.timedelta(seconds=int(total_seconds)), total_seconds / timed_batches,
        datetime.timedelta(seconds=int(compute_time)), compute_time / timed_batches, num_batches,
    )
    results = evaluator.evaluate()
    return results if results is not None else {}
