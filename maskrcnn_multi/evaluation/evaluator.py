"""The evaluator protocol and ``inference_on_dataset``: run a model over a loader, feed an evaluator."""
import contextlib
import datetime
import logging
import time
from collections import OrderedDict
from typing import Callable, Iterable, List, Optional

import torch
from torch import nn

from .inference_timing import InferenceTiming, gather_timings

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
    max_batches: Optional[int] = None,
    timing: Optional[InferenceTiming] = None,
) -> dict:
    """Run ``model`` on every batch of ``data_loader`` under ``torch.no_grad()`` (and eval mode for an
    ``nn.Module``), feed ``evaluator`` and return ``evaluator.evaluate()`` ({} without an evaluator).

    ``synchronize``: the backend's synchronize(), called around timed regions so device time is counted.
    ``max_batches``: stop after that many batches (a throughput run); ``timing``: filled with what was
    measured, merged over ranks (``inference_timing``). Logs detectron2's "Total inference time" and
    "Total inference pure compute time" lines, then the throughput and latency percentiles.
    """
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"inference_on_dataset: max_batches must be >= 1, got {max_batches}")
    evaluator = evaluator if evaluator is not None else DatasetEvaluator()
    sync = synchronize if synchronize is not None else (lambda: None)
    total = len(data_loader) if hasattr(data_loader, "__len__") else None
    if max_batches is not None:
        total = min(total, max_batches) if total is not None else max_batches
    logger.info("Start inference on %s batches", total if total is not None else "an unknown number of")
    evaluator.reset()
    measured = InferenceTiming()
    measured.num_warmup = min(5, total - 1) if total else 0
    start_time = time.perf_counter()
    last_log = start_time
    with contextlib.ExitStack() as stack:
        if isinstance(model, nn.Module):
            stack.enter_context(inference_context(model))
        stack.enter_context(torch.no_grad())
        for index, inputs in enumerate(data_loader):
            if index == measured.num_warmup:
                start_time = time.perf_counter()
            compute_start = time.perf_counter()
            outputs = model(inputs)
            sync()
            if index >= measured.num_warmup:
                measured.batch_seconds.append(time.perf_counter() - compute_start)
                measured.batch_images.append(len(inputs))
            evaluator.process(inputs, outputs)
            measured.num_batches, measured.num_images = index + 1, measured.num_images + len(inputs)
            if time.perf_counter() - last_log > 5.0:
                last_log = time.perf_counter()
                logger.info("Inference done %d/%s. %.4f s / batch", measured.num_batches, total,
                            sum(measured.batch_seconds) / max(measured.timed_batches, 1))
            if max_batches is not None and measured.num_batches >= max_batches:
                break
    measured.compute_seconds = sum(measured.batch_seconds)
    measured.finish(time.perf_counter() - start_time if measured.timed_batches else 0.0)
    merged = gather_timings(measured)
    _log_timing(merged, measured)
    if timing is not None:
        timing.__dict__.update(vars(merged))  # the caller's object holds every rank's numbers
    results = evaluator.evaluate()
    return results if results is not None else {}


def _log_timing(merged: InferenceTiming, local: InferenceTiming) -> None:
    """detectron2's two lines (this rank's times per batch; detectron2 says "iter"), then the
    throughput and latency over every rank."""
    timed = max(local.timed_batches, 1)
    logger.info("Total inference time: %s (%.6f s / iter per device, on %d devices)",
                datetime.timedelta(seconds=int(local.total_seconds)), local.total_seconds / timed, merged.num_devices)
    logger.info("Total inference pure compute time: %s (%.6f s / iter per device, on %d devices)",
                datetime.timedelta(seconds=int(local.compute_seconds)), local.compute_seconds / timed,
                merged.num_devices)
    latency = merged.latency_ms()
    logger.info("Total inference throughput: %.2f images/s (%d images in %d batches, %d warm-up batches per "
                "device left out, on %d devices)", merged.images_per_s, merged.num_images, merged.num_batches,
                merged.num_warmup, merged.num_devices)
    logger.info("Inference latency (ms / batch): avg %.2f, p50 %.2f, p90 %.2f, p95 %.2f, p99 %.2f",
                latency["avg"], latency["p50"], latency["p90"], latency["p95"], latency["p99"])
