"""backends.native: which kernels the dispatcher has, as the ops package asks it."""
import pytest
import torch

from maskrcnn_multi.backends import native


def test_has_kernel_is_false_for_unknown_ops_and_devices():
    assert native.has_kernel("no_such_op", "cpu") is False
    # No kernel is ever registered for Apple's MPS key. (PrivateUse1 is not a safe example: the NPU
    # backend's contract tests register its kernels for the rest of the process, as a real run does.)
    assert native.has_kernel("nms", "mps") is False


OPS = ("nms", "box_iou", "roi_align", "roi_align_backward", "paste_masks")


def _built_extension():
    extension = native.extension()
    if extension is None:
        pytest.skip("maskrcnn_multi._C is not built")
    return extension


def test_built_extension_registers_every_cpu_kernel():
    _built_extension()
    for op_name in OPS:
        assert native.has_kernel(op_name, "cpu"), op_name


def test_cuda_kernels_are_registered_exactly_when_the_extension_was_built_with_cuda():
    extension = _built_extension()
    assert isinstance(extension.built_with_cuda, bool)
    registered = {op_name: native.has_kernel(op_name, "cuda") for op_name in OPS}
    assert registered == {op_name: extension.built_with_cuda for op_name in OPS}
    if extension.built_with_cuda:
        # CUDA kernels can only have been compiled against a CUDA build of torch.
        assert torch.version.cuda is not None
