"""engine.runtime: float32 precision from the config (or the launch scripts' environment), the static
input shape resolved through the backend, and RNG states a checkpoint can carry."""
import random

import numpy as np
import pytest
import torch

from maskrcnn_multi.backends import get_backend
from maskrcnn_multi.backends.cpu import CpuBackend
from maskrcnn_multi.backends.npu import NpuBackend
from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.engine.runtime import (
    apply_device_settings, capture_rng_states, float32_precision, resolve_input_shape, restore_rng_states,
)


@pytest.fixture
def keep_matmul_precision():
    before = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(before)


@pytest.mark.parametrize("environ, mode", [
    ({}, ""), ({"ALLOW_HF32": "True"}, "high"), ({"ALLOW_FP32": "1"}, "highest"), ({"ALLOW_HF32": "False"}, ""),
])
def test_launch_script_precision_flags_map_to_float32_precision(environ, mode):
    assert float32_precision(get_cfg(), environ) == mode


def test_the_config_key_wins_over_the_environment():
    cfg = get_cfg()
    cfg.FLOAT32_PRECISION = "medium"
    assert float32_precision(cfg, {"ALLOW_FP32": "True"}) == "medium"


def test_launch_script_precision_flags_conflict():
    with pytest.raises(ValueError, match="ALLOW_HF32 and ALLOW_FP32"):
        float32_precision(get_cfg(), {"ALLOW_HF32": "True", "ALLOW_FP32": "True"})


def test_float32_precision_takes_effect(keep_matmul_precision):
    cfg = get_cfg()
    cfg.FLOAT32_PRECISION = "medium"
    apply_device_settings(cfg, get_backend("cpu"))
    assert torch.get_float32_matmul_precision() == "medium"
    cfg.FLOAT32_PRECISION = "highest"
    apply_device_settings(cfg, get_backend("cpu"))
    assert torch.get_float32_matmul_precision() == "highest"


def test_cudnn_benchmark_on_a_device_without_cudnn_says_it_does_nothing(caplog):
    cfg = get_cfg()
    cfg.CUDNN_BENCHMARK = True
    with caplog.at_level("WARNING"):
        apply_device_settings(cfg, CpuBackend())
    assert any("CUDNN_BENCHMARK True has no effect on MODEL.DEVICE 'cpu'" in r.getMessage() for r in caplog.records)


def test_a_device_that_wants_static_shapes_gets_its_default_fix_shape():
    """NPU pads to its (1344, 1344) unless INPUT.FIX_SHAPE says otherwise; the CPU keeps dynamic shapes.
    (NpuBackend.fixed_input_shape needs no torch_npu: it is the backend's preference, not its runtime.)"""
    cfg = get_cfg()
    cfg.freeze()
    resolved = resolve_input_shape(cfg, NpuBackend(0))
    assert resolved.INPUT.FIX_SHAPE == (1344, 1344) and resolved.is_frozen()
    assert cfg.INPUT.FIX_SHAPE == ()  # the caller's config is not modified
    assert resolve_input_shape(cfg, CpuBackend()) is cfg
    cfg.defrost()
    cfg.INPUT.FIX_SHAPE = (256, 320)
    assert resolve_input_shape(cfg, NpuBackend(0)) is cfg


def test_rng_states_round_trip_and_load_weights_only(tmp_path):
    backend = get_backend("cpu")
    states = capture_rng_states(backend)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    torch.save(states, tmp_path / "rng.pth")
    restore_rng_states(torch.load(tmp_path / "rng.pth", weights_only=True), backend)
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])


class _GeneratorBackend(CpuBackend):
    """A device with its own generator: the backend hands its state to the checkpoint and back."""

    def __init__(self):
        super().__init__()
        self.state = torch.tensor([1, 2, 3], dtype=torch.uint8)

    def get_rng_state(self):
        return self.state.clone()

    def set_rng_state(self, state):
        self.state = state.clone()


def test_the_device_generator_state_travels_through_the_backend():
    backend = _GeneratorBackend()
    states = capture_rng_states(backend)
    assert torch.equal(states["device"], torch.tensor([1, 2, 3], dtype=torch.uint8))
    backend.state = torch.zeros(3, dtype=torch.uint8)
    restore_rng_states(states, backend)
    assert torch.equal(backend.state, torch.tensor([1, 2, 3], dtype=torch.uint8))
    assert "device" not in capture_rng_states(get_backend("cpu"))
