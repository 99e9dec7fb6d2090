"""CPU backend runtime: memory stats from the process RSS, seeding."""
import random

import numpy as np
import torch

from maskrcnn_multi.backends import get_backend


def test_memory_stats_report_process_memory():
    backend = get_backend("cpu")
    backend.reset_peak_memory_stats()
    stats = backend.memory_stats()
    assert set(stats) == {"allocated_mb", "max_allocated_mb", "reserved_mb"}
    assert 0 < stats["allocated_mb"] <= stats["max_allocated_mb"]
    backend.synchronize()
    backend.set_device()


def _draw():
    return random.random(), float(np.random.rand()), torch.rand(3)


def test_manual_seed_makes_python_numpy_and_torch_repeat():
    backend = get_backend("cpu")
    assert backend.manual_seed(1234) == 1234
    first = _draw()
    backend.manual_seed(1234)
    second = _draw()
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])


def test_negative_seed_draws_a_fresh_one():
    seed = get_backend("cpu").manual_seed(-1)
    assert 0 <= seed < 2**31
