"""What an inference run measured: per-batch latency, throughput, and their summary over ranks.

``inference_on_dataset`` fills an ``InferenceTiming`` when given one. The first batches are warm-up
(detectron2's rule: ``min(5, batches - 1)``) and are left out of every number. Definitions:
- latency of a batch: the model's call on it, device synchronised (no data loading, no evaluator);
- images/s: images after the warm-up divided by the wall time after the warm-up (loading and the
  evaluator's ``process`` included, as a user of the loader sees it); over several ranks the ranks'
  rates add up (each runs its own share of the images).
"""
import logging
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np
import torch.distributed as dist

__all__ = ["InferenceTiming", "LATENCY_PERCENTILES", "gather_timings"]

logger = logging.getLogger(__name__)

LATENCY_PERCENTILES = (50, 90, 95, 99)


@dataclass
class InferenceTiming:
    """One rank's measurements (or, after ``merged``, every rank's).

    batch_seconds / batch_images: each timed (post-warm-up) batch's latency and image count;
    total_seconds / compute_seconds: wall and model time after the warm-up; num_batches / num_images:
    everything run, warm-up included; images_per_s: the timed images' rate (summed over ranks)."""

    batch_seconds: List[float] = field(default_factory=list)
    batch_images: List[int] = field(default_factory=list)
    total_seconds: float = 0.0
    compute_seconds: float = 0.0
    num_warmup: int = 0
    num_batches: int = 0
    num_images: int = 0
    num_devices: int = 1
    images_per_s: float = 0.0

    def finish(self, total_seconds: float) -> None:
        """Record the wall time after the warm-up and derive the rate."""
        self.total_seconds = total_seconds
        timed_images = sum(self.batch_images)
        self.images_per_s = timed_images / total_seconds if total_seconds > 0 and timed_images else 0.0

    @property
    def timed_batches(self) -> int:
        return len(self.batch_seconds)

    def latency_ms(self) -> Dict[str, float]:
        """{"avg", "p50", "p90", "p95", "p99"} of the timed batches' latency in milliseconds (0 when none)."""
        if not self.batch_seconds:
            return {"avg": 0.0, **{f"p{p}": 0.0 for p in LATENCY_PERCENTILES}}
        milliseconds = np.asarray(self.batch_seconds, dtype=np.float64) * 1000.0
        summary = {"avg": float(milliseconds.mean())}
        summary.update({f"p{p}": float(np.percentile(milliseconds, p)) for p in LATENCY_PERCENTILES})
        return summary

    @classmethod
    def merged(cls, timings: Sequence["InferenceTiming"]) -> "InferenceTiming":
        """Every rank's timing as one: latencies pooled, rates summed, the slowest rank's wall time."""
        if not timings:
            raise ValueError("InferenceTiming.merged: no timings to merge")
        merged = cls(num_devices=len(timings), num_warmup=max(t.num_warmup for t in timings))
        for timing in timings:
            merged.batch_seconds += timing.batch_seconds
            merged.batch_images += timing.batch_images
            merged.num_batches += timing.num_batches
            merged.num_images += timing.num_images
        merged.total_seconds = max(t.total_seconds for t in timings)
        merged.compute_seconds = max(t.compute_seconds for t in timings)
        merged.images_per_s = sum(t.images_per_s for t in timings)
        return merged


def gather_timings(timing: InferenceTiming) -> InferenceTiming:
    """``timing`` merged with every other rank's (a collective: every rank calls it); itself when alone."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return timing
    gathered: List = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, timing)
    return InferenceTiming.merged(gathered)
