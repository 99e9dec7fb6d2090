"""NPU backend wiring against a recording fake torch_npu (no Ascend hardware here)."""
import pytest
import torch

from maskrcnn_multi.backends import BackendUnavailableError, get_backend
from maskrcnn_multi.backends.npu import NpuBackend


def _names(fake):
    return [name for name, _, _ in fake.calls]


def test_get_backend_npu_checks_the_device(fake_torch_npu):
    backend = get_backend("npu:1")
    assert _names(fake_torch_npu)[:2] == ["npu.is_available", "npu.device_count"]
    assert backend.device == torch.device("npu", 1) and backend.dist_backend == "hccl"
    assert backend.preferred_amp_dtype == torch.float16 and backend.wants_static_shapes
    assert backend.fixed_input_shape(()) == (1344, 1344)
    assert backend.fixed_input_shape((800, 1216)) == (800, 1216)


def test_runtime_calls_go_to_torch_npu_npu(fake_torch_npu):
    backend = get_backend("npu:0")
    fake_torch_npu.calls.clear()
    backend.set_device()
    backend.synchronize()
    stats = backend.memory_stats()
    backend.reset_peak_memory_stats()
    backend.manual_seed(7)
    calls = {name: args for name, args, _ in fake_torch_npu.calls}
    assert calls["npu.set_device"] == (0,)
    assert calls["npu.synchronize"] == (torch.device("npu", 0),)
    assert calls["npu.manual_seed_all"] == (7,)
    assert "npu.reset_peak_memory_stats" in calls
    assert stats == {"allocated_mb": 3.0, "max_allocated_mb": 5.0, "reserved_mb": 8.0}


def test_autocast_uses_torch_npu_amp(fake_torch_npu):
    backend = get_backend("npu")
    with backend.autocast("O0"):
        pass
    assert "npu.amp.autocast" not in _names(fake_torch_npu)
    with backend.autocast("O2"):
        pass
    with backend.autocast("O1", "bfloat16"):
        pass
    dtypes = [kwargs["dtype"] for name, _, kwargs in fake_torch_npu.calls if name == "npu.amp.autocast"]
    assert dtypes == [torch.float16, torch.bfloat16]


def test_no_visible_npu(fake_torch_npu):
    fake_torch_npu.npu.is_available = lambda: False
    with pytest.raises(BackendUnavailableError, match=r"^MODEL.DEVICE 'npu:0': no Ascend NPU is visible"):
        get_backend("npu:0")


def test_index_beyond_device_count(fake_torch_npu):
    with pytest.raises(BackendUnavailableError, match=r"MODEL.DEVICE 'npu:5': only 2 NPU device\(s\) are visible"):
        get_backend("npu:5")


def test_torch_npu_import_failure_is_reported_in_one_line(monkeypatch):
    def broken_import(name, *args, **kwargs):
        raise ImportError("libhccl.so: cannot open shared object file: No such file or directory\nmore")

    monkeypatch.setattr("maskrcnn_multi.backends.npu.importlib.import_module", broken_import)
    with pytest.raises(BackendUnavailableError) as info:
        NpuBackend(0).check_available()
    assert str(info.value) == (
        "MODEL.DEVICE 'npu:0': torch_npu failed to import: "
        "libhccl.so: cannot open shared object file: No such file or directory"
    )


@pytest.fixture
def keep_matmul_precision():
    """set_float32_precision also sets torch's process-wide matmul precision: put it back."""
    before = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(before)


@pytest.mark.parametrize("mode, matmul, conv", [
    ("high", True, True), ("medium", True, True), ("highest", False, False), ("", False, True),
])
def test_float32_precision_switches_torch_npu_flags(fake_torch_npu, keep_matmul_precision, mode, matmul, conv):
    """--hf32 / --fp32 reach the NPU as FLOAT32_PRECISION high / highest; "" leaves torch_npu's defaults."""
    get_backend("npu:0").set_float32_precision(mode)
    assert fake_torch_npu.npu.matmul.allow_hf32 is matmul
    assert fake_torch_npu.npu.conv.allow_hf32 is conv
    assert torch.get_float32_matmul_precision() == (mode or "highest")


def test_unknown_float32_precision_is_named():
    with pytest.raises(ValueError, match="unknown FLOAT32_PRECISION 'tf32'"):
        get_backend("cpu").set_float32_precision("tf32")
