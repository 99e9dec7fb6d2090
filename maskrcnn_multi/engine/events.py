"""Training metrics: an in-memory store of scalars per iteration and the writers that report them.

``EventStorage`` collects ``put_scalar(name, value)`` calls during an iteration; writers read it
periodically: ``JSONWriter`` appends one JSON line per report to ``OUTPUT_DIR/metrics.json``,
``ConsoleWriter`` logs detectron2's one-line summary (with ``total_loss: x`` for the ModelZoo's
scripts), ``TensorboardWriter`` writes event files when ``torch.utils.tensorboard`` imports.
"""
import datetime
import json
import logging
import os
import time
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

import numpy as np

__all__ = [
    "EventStorage",
    "HistoryBuffer",
    "get_event_storage",
    "EventWriter",
    "JSONWriter",
    "ConsoleWriter",
    "TensorboardWriter",
    "make_tensorboard_writer",
]

_CURRENT_STORAGE: List["EventStorage"] = []


def get_event_storage() -> "EventStorage":
    """The storage of the training loop now running (raises outside one)."""
    if not _CURRENT_STORAGE:
        raise RuntimeError("get_event_storage() called outside a training loop (no EventStorage is open)")
    return _CURRENT_STORAGE[-1]


class HistoryBuffer:
    """The (value, iteration) pairs of one scalar, capped to the last ``max_length``."""

    def __init__(self, max_length: int = 1_000_000):
        self._max_length = max_length
        self._data: List[Tuple[float, int]] = []
        self._count = 0
        self._global_avg = 0.0

    def update(self, value: float, iteration: int) -> None:
        if len(self._data) == self._max_length:
            self._data.pop(0)
        self._data.append((value, iteration))
        self._count += 1
        self._global_avg += (value - self._global_avg) / self._count

    def latest(self) -> float:
        return self._data[-1][0]

    def median(self, window: int) -> float:
        return float(np.median([value for value, _ in self._data[-window:]]))

    def avg(self, window: int) -> float:
        return float(np.mean([value for value, _ in self._data[-window:]]))

    def global_avg(self) -> float:
        return self._global_avg

    def values(self) -> List[Tuple[float, int]]:
        return list(self._data)


class EventStorage:
    """Scalars put during training, keyed by name, with the iteration they belong to.

    ``smoothing_hint=True`` asks writers to report a windowed median instead of the last value.
    Use as a context manager so ``get_event_storage()`` finds it.
    """

    def __init__(self, start_iter: int = 0):
        self._history: Dict[str, HistoryBuffer] = defaultdict(HistoryBuffer)
        self._smoothing_hints: Dict[str, bool] = {}
        self._latest: Dict[str, Tuple[float, int]] = {}
        self.iter = start_iter

    def put_scalar(self, name: str, value, smoothing_hint: bool = True) -> None:
        value = float(value)
        self._history[name].update(value, self.iter)
        self._latest[name] = (value, self.iter)
        previous = self._smoothing_hints.get(name)
        if previous is not None and previous != smoothing_hint:
            raise ValueError(f"scalar '{name}' was put with smoothing_hint={previous}, now {smoothing_hint}")
        self._smoothing_hints[name] = smoothing_hint

    def put_scalars(self, *, smoothing_hint: bool = True, **scalars) -> None:
        for name, value in scalars.items():
            self.put_scalar(name, value, smoothing_hint=smoothing_hint)

    def history(self, name: str) -> HistoryBuffer:
        if name not in self._history:
            raise KeyError(f"no scalar named '{name}' in the event storage (has: {', '.join(sorted(self._history))})")
        return self._history[name]

    def histories(self) -> Dict[str, HistoryBuffer]:
        return dict(self._history)

    def latest(self) -> Dict[str, Tuple[float, int]]:
        """name -> (last value, iteration it was put at)."""
        return dict(self._latest)

    def latest_with_smoothing_hint(self, window: int = 20) -> Dict[str, Tuple[float, int]]:
        """Like ``latest`` but the median of the last ``window`` values for smoothed scalars."""
        result = {}
        for name, (value, iteration) in self._latest.items():
            if self._smoothing_hints[name]:
                value = self._history[name].median(window)
            result[name] = (value, iteration)
        return result

    def step(self) -> None:
        """Advance to the next iteration (the trainer calls this after every step's hooks)."""
        self.iter += 1

    def __enter__(self) -> "EventStorage":
        _CURRENT_STORAGE.append(self)
        return self

    def __exit__(self, *exc) -> None:
        assert _CURRENT_STORAGE[-1] is self, "EventStorage contexts closed out of order"
        _CURRENT_STORAGE.pop()


class EventWriter:
    def write(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class JSONWriter(EventWriter):
    """Appends ``{"iteration": i, name: value, ...}`` lines to a file (one line per iteration seen)."""

    def __init__(self, json_file: str, window_size: int = 20):
        os.makedirs(os.path.dirname(os.path.abspath(json_file)), exist_ok=True)
        self._file = open(json_file, "a")
        self._window_size = window_size
        self._last_written = -1

    def write(self) -> None:
        storage = get_event_storage()
        by_iter: Dict[int, Dict[str, float]] = defaultdict(dict)
        for name, (value, iteration) in storage.latest_with_smoothing_hint(self._window_size).items():
            if iteration > self._last_written:
                by_iter[iteration][name] = value
        for iteration in sorted(by_iter):
            self._file.write(json.dumps({"iteration": iteration, **by_iter[iteration]}, sort_keys=True) + "\n")
        if by_iter:
            self._last_written = max(by_iter)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


class ConsoleWriter(EventWriter):
    """Logs ``eta  iter  <losses>  total_loss  time  data_time  lr  loss_scale  max_mem`` lines."""

    def __init__(self, max_iter: int, window_size: int = 20):
        self._logger = logging.getLogger(__name__)
        self._max_iter = max_iter
        self._window_size = window_size
        self._last: Optional[Tuple[int, float]] = None  # (iteration, wall time) for a rough ETA

    def _eta(self, storage: EventStorage) -> str:
        iteration = storage.iter
        histories = storage.histories()
        if "time" in histories:
            seconds = histories["time"].median(1000) * (self._max_iter - iteration - 1)
            return str(datetime.timedelta(seconds=int(seconds)))
        now = time.perf_counter()
        eta = ""
        if self._last is not None and iteration > self._last[0]:
            per_iter = (now - self._last[1]) / (iteration - self._last[0])
            eta = str(datetime.timedelta(seconds=int(per_iter * (self._max_iter - iteration - 1))))
        self._last = (iteration, now)
        return eta

    def write(self) -> None:
        storage = get_event_storage()
        histories = storage.histories()
        window = self._window_size

        def fmt(name: str, spec: str, how: str = "median") -> str:
            if name not in histories:
                return ""
            value = getattr(histories[name], how)(window) if how != "latest" else histories[name].latest()
            return f"{name}: {value:{spec}}  "

        losses = "".join(
            fmt(name, ".4g") for name in sorted(histories) if name.startswith("loss_") and name != "loss_scale"
        )
        eta = self._eta(storage)
        self._logger.info(
            "%siter: %d  %s%s%s%s%s%s%s%s",
            f"eta: {eta}  " if eta else "",
            storage.iter,
            losses,
            fmt("total_loss", ".4g"),
            fmt("time", ".4f", "avg"),
            fmt("data_time", ".4f", "avg"),
            fmt("lr", ".6g", "latest"),
            fmt("loss_scale", "g", "latest"),
            fmt("skipped_steps", ".0f", "latest"),
            f"max_mem: {histories['max_mem'].latest():.0f}M" if "max_mem" in histories else "",
        )


class TensorboardWriter(EventWriter):
    """Writes every new scalar to TensorBoard event files in ``log_dir``."""

    def __init__(self, log_dir: str, summary_writer_type, window_size: int = 20):
        self._writer = summary_writer_type(log_dir)
        self._window_size = window_size
        self._last_written = -1

    def write(self) -> None:
        storage = get_event_storage()
        newest = self._last_written
        for name, (value, iteration) in storage.latest_with_smoothing_hint(self._window_size).items():
            if iteration > self._last_written:
                self._writer.add_scalar(name, value, iteration)
                newest = max(newest, iteration)
        self._last_written = newest
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def make_tensorboard_writer(log_dir: str, window_size: int = 20) -> Optional[TensorboardWriter]:
    """A TensorboardWriter when ``torch.utils.tensorboard`` imports (tensorboard installed), else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard missing or broken: TensorBoard output is optional
        return None
    return TensorboardWriter(log_dir, SummaryWriter, window_size)
