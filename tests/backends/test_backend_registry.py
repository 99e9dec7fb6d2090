"""get_backend: device parsing, the registry, one-line errors for unknown and unavailable devices."""
import pytest
import torch

from maskrcnn_multi.backends import (
    BackendUnavailableError, get_backend, list_backends, parse_device,
)


@pytest.mark.parametrize("device, expected", [
    ("cpu", ("cpu", None)), ("cuda", ("cuda", None)), ("cuda:1", ("cuda", 1)),
    ("npu:0", ("npu", 0)), (" npu ", ("npu", None)), (torch.device("cpu"), ("cpu", None)),
    (torch.device("cuda", 2), ("cuda", 2)),
])
def test_parse_device(device, expected):
    assert parse_device(device) == expected


def test_list_backends():
    assert list_backends() == ["cpu", "cuda", "npu"]


def test_unknown_device_names_it_and_the_choices():
    with pytest.raises(ValueError) as info:
        get_backend("gpu")
    assert str(info.value) == "unknown MODEL.DEVICE 'gpu' (choose from: cpu, cuda, npu)"


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
