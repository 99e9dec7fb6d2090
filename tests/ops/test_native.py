"""backends.native: which kernels the dispatcher has, as the ops package asks it."""
import torch

from maskrcnn_multi.backends import native


def test_has_kernel_is_false_for_unknown_ops_and_devices():
    assert native.has_kernel("no_such_op", "cpu") is False
    # No kernel is ever registered for Apple's MPS key. (PrivateUse1 is not a safe example: the NPU
    # backend's contract tests register its kernels for the rest of the process, as a real run does.)
    assert native.has_kernel("nms", "mps") is False


def test_built_extension_registers_every_cpu_kernel():
    if native.extension() is None:
        import pytest

        pytest.skip("maskrcnn_multi._C is not built")
    for op_name in ("nms", "box_iou", "roi_align", "roi_align_backward", "paste_masks"):
        assert native.has_kernel(op_name, "cpu"), op_name
    assert native.has_kernel("nms", "cuda") is (torch.version.cuda is not None and native.has_kernel("nms", "cuda"))
