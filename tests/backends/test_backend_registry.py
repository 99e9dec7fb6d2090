"""get_backend: device parsing, the registry, one-line errors for unknown and unavailable devices."""
import pytest
import torch

from maskrcnn_multi.backends import (
    BACKENDS, Backend, BackendUnavailableError, backend_class, get_backend, list_backends, parse_device,
    register_backend,
)
from maskrcnn_multi.backends.cpu import CpuBackend


@pytest.mark.parametrize("device, expected", [
    ("cpu", ("cpu", None)), ("cuda", ("cuda", None)), ("cuda:1", ("cuda", 1)),
    ("npu:0", ("npu", 0)), (" npu ", ("npu", None)), (torch.device("cpu"), ("cpu", None)),
    (torch.device("cuda", 2), ("cuda", 2)),
])
def test_parse_device(device, expected):
    assert parse_device(device) == expected


class _XpuLike(CpuBackend):
    """A device added by one file, as a new backend would be (it borrows the CPU's runtime)."""

    device_type = "xpu_like"


@pytest.fixture
def registered_xpu_like():
    register_backend(_XpuLike)
    yield _XpuLike
    del BACKENDS["xpu_like"]


def test_the_devices_this_project_ships_are_registered():
    assert {"cpu", "cuda", "npu"} <= set(list_backends())
    assert list_backends() == list(BACKENDS)


def test_a_registered_backend_is_a_valid_model_device(registered_xpu_like):
    assert "xpu_like" in list_backends()
    assert parse_device("xpu_like:0") == ("xpu_like", 0)
    assert isinstance(get_backend("xpu_like"), _XpuLike) and backend_class("xpu_like") is _XpuLike
    assert backend_class("meta") is Backend  # a tensor device without a backend gets the generic preferences


def test_unknown_device_names_it_and_every_registered_choice(registered_xpu_like):
    with pytest.raises(ValueError) as info:
        get_backend("gpu")
    assert str(info.value) == f"unknown MODEL.DEVICE 'gpu' (choose from: {', '.join(BACKENDS)})"
    assert "xpu_like" in str(info.value) and "\n" not in str(info.value)


def test_malformed_index():
    with pytest.raises(ValueError, match=r"MODEL.DEVICE 'cuda:x': the device index must be a non-negative integer"):
        parse_device("cuda:x")


def test_cpu_backend():
    backend = get_backend("cpu")
    assert backend.device == torch.device("cpu") and backend.device_type == "cpu"
    assert backend.is_available() and backend.dist_backend == "gloo"
    assert backend.preferred_amp_dtype == torch.bfloat16 and not backend.wants_static_shapes
    assert backend.fixed_input_shape(()) == () and backend.fixed_input_shape((800, 800)) == (800, 800)


@pytest.mark.skipif(torch.version.cuda is not None, reason="this torch has CUDA")
def test_cuda_unavailable_says_why():
    with pytest.raises(BackendUnavailableError) as info:
        get_backend("cuda:1")
    assert str(info.value) == f"MODEL.DEVICE 'cuda:1': torch {torch.__version__} was built without CUDA"


def test_npu_without_torch_npu_is_one_line(no_torch_npu):
    with pytest.raises(BackendUnavailableError) as info:
        get_backend("npu")
    message = str(info.value)
    assert message.startswith("MODEL.DEVICE 'npu': torch_npu is not installed") and "\n" not in message


def test_cuda_without_cuda_kernels_in_the_extension_warns_once(caplog):
    """A CUDA run on a `_C` built without CUDA silently used the slow reference ops; it must say so."""
    import logging

    from maskrcnn_multi.backends import native
    from maskrcnn_multi.backends.cuda import CudaBackend

    if native.extension() is None or native.has_kernel("nms", "cuda"):
        pytest.skip("needs a built _C without CUDA kernels (the CPU build on this machine)")
    with caplog.at_level(logging.WARNING, logger="maskrcnn_multi.backends.cuda"):
        CudaBackend(0).register_kernels()
        CudaBackend(1).register_kernels()
    messages = [record.getMessage() for record in caplog.records if "without CUDA kernels" in record.getMessage()]
    assert len(messages) == 1 and "FORCE_CUDA=1" in messages[0]


def test_op_preferences_are_backend_attributes():
    """batched_nms switches to one NMS per class above torchvision's crossover for the device."""
    from maskrcnn_multi.backends.cuda import CudaBackend
    from maskrcnn_multi.backends.npu import NpuBackend

    assert CpuBackend.batched_nms_per_class_above == 4000
    assert CudaBackend.batched_nms_per_class_above == NpuBackend.batched_nms_per_class_above == 100_000


def test_cudnn_benchmark_reaches_cudnn():
    from maskrcnn_multi.backends.cuda import CudaBackend

    before = torch.backends.cudnn.benchmark
    try:
        CudaBackend(0).set_autotuning(True)
        assert torch.backends.cudnn.benchmark is True
        CudaBackend(0).set_autotuning(False)
        assert torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = before
