"""InferenceTiming: latency percentiles of the timed batches, throughput, the merge over ranks."""
import numpy as np
import pytest

from maskrcnn_multi.evaluation import InferenceTiming, gather_timings


def _timing(seconds, images_per_batch=2, total_seconds=None):
    timing = InferenceTiming(batch_seconds=list(seconds), batch_images=[images_per_batch] * len(seconds),
                             num_batches=len(seconds), num_images=images_per_batch * len(seconds))
    timing.compute_seconds = sum(seconds)
    timing.finish(total_seconds if total_seconds is not None else sum(seconds))
    return timing


def test_latency_percentiles_are_numpys_over_the_timed_batches_in_ms():
    seconds = np.random.default_rng(0).uniform(0.05, 0.2, size=37)
    latency = _timing(seconds).latency_ms()
    assert list(latency) == ["avg", "p50", "p90", "p95", "p99"]
    assert latency["avg"] == pytest.approx(seconds.mean() * 1000)
    for p in (50, 90, 95, 99):
        assert latency[f"p{p}"] == pytest.approx(np.percentile(seconds, p) * 1000)
    assert latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"] <= seconds.max() * 1000


def test_images_per_s_counts_the_timed_images_over_the_wall_time():
    timing = _timing([0.1, 0.1, 0.1, 0.1], images_per_batch=4, total_seconds=0.8)
    assert timing.images_per_s == pytest.approx(16 / 0.8)
    assert InferenceTiming().latency_ms() == {"avg": 0.0, "p50": 0.0, "p90": 0.0, "p95": 0.0, "p99": 0.0}


def test_ranks_rates_add_up_and_latencies_pool():
    fast, slow = _timing([0.1] * 4, total_seconds=0.5), _timing([0.3] * 4, total_seconds=1.5)
    merged = InferenceTiming.merged([fast, slow])
    assert merged.num_devices == 2 and merged.num_images == 16 and merged.num_batches == 8
    assert merged.images_per_s == pytest.approx(8 / 0.5 + 8 / 1.5)
    assert merged.total_seconds == 1.5 and merged.latency_ms()["avg"] == pytest.approx(200.0)
    with pytest.raises(ValueError, match="no timings"):
        InferenceTiming.merged([])


def test_gather_in_a_single_process_is_the_timing_itself():
    timing = _timing([0.1])
    assert gather_timings(timing) is timing
