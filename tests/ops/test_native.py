"""backends.native: which kernels the dispatcher has, as the ops package asks it, and the compiled
extension's own facts (its CUDA build, its CPU ISA variants)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maskrcnn_multi.backends import native


def test_has_kernel_is_false_for_unknown_ops_and_devices():
    assert native.has_kernel("no_such_op", "cpu") is False
    # No kernel is ever registered for Apple's MPS key. (PrivateUse1 is not a safe example: the NPU
    # backend's contract tests register its kernels for the rest of the process, as a real run does.)
    assert native.has_kernel("nms", "mps") is False


OPS = ("nms", "box_iou", "roi_align", "roi_align_backward", "paste_masks", "paste_masks_in_image", "deform_conv2d",
       "deform_conv2d_backward")


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


# The CPU kernels' hot loops are compiled for AVX-512, AVX2 and the baseline ISA and picked at run
# time by ATen's capability (ATEN_CPU_CAPABILITY overrides it, read once per process).
_ISA_ORDER = ["default", "avx2", "avx512"]


def _isa_inputs() -> dict:
    """Fixed inputs (made once, in this process: torch.randn itself varies with the capability)."""
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(60, 2, generator=generator) * 25 - 2
    boxes = torch.cat([corners * 20, corners * 20 + torch.rand(60, 2, generator=generator) * 200], dim=1).repeat(20, 1)
    return {
        "features": torch.randn(2, 40, 24, 30, generator=generator).contiguous(memory_format=torch.channels_last),
        "rois": torch.cat([torch.randint(0, 2, (60, 1), generator=generator).float(), corners,
                           corners + torch.rand(60, 2, generator=generator) * 12], dim=1),
        "grad": torch.randn(60, 40, 7, 7, generator=generator).contiguous(memory_format=torch.channels_last),
        "boxes": boxes + torch.rand(boxes.shape, generator=generator),
        "scores": torch.rand(len(boxes), generator=generator),
        "masks": torch.rand(60, 28, 28, generator=generator),
    }


def _isa_outputs(inputs_path, outputs_path) -> None:
    """Native outputs on the saved inputs, saved to `outputs_path`; paste values are checked against
    F.grid_sample here, since ATen's own roundings (fused or not) follow the capability too."""
    from maskrcnn_multi.ops import reference

    inputs = torch.load(inputs_path, weights_only=True)
    rois, ops = inputs["rois"], torch.ops.maskrcnn_multi
    outputs = {}
    for dtype in (torch.float32, torch.bfloat16):
        outputs[f"roi_align {dtype}"] = ops.roi_align(inputs["features"].to(dtype), rois, 0.5, 7, 7, 0, True)
        outputs[f"roi_align_backward {dtype}"] = ops.roi_align_backward(
            inputs["grad"].to(dtype), rois, 0.5, 7, 7, 2, 40, 24, 30, 0, True)
    outputs["nms"] = ops.nms(inputs["boxes"], inputs["scores"], 0.5)
    masks, mask_boxes = inputs["masks"], inputs["boxes"][:60] / 4
    values = ops.paste_masks(masks, mask_boxes, 150, 180)
    assert torch.equal(values, reference.paste_masks(masks, mask_boxes, 150, 180)), "paste_masks != grid_sample"
    assert torch.equal(ops.paste_masks_in_image(masks, mask_boxes, 150, 180, 0.5),
                       reference.paste_masks_in_image(masks, mask_boxes, 150, 180, 0.5)), "thresholded masks"
    torch.save(outputs, outputs_path)


@pytest.mark.slow
@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_every_cpu_isa_gives_the_same_bits(tmp_path, capability):
    _built_extension()
    host = torch.backends.cpu.get_cpu_capability().lower()
    if host not in _ISA_ORDER or _ISA_ORDER.index(capability) >= _ISA_ORDER.index(host):
        pytest.skip(f"host capability {host!r}: {capability} is what this process already runs, or not x86")
    inputs, this_process, other = tmp_path / "inputs.pt", tmp_path / "host.pt", tmp_path / f"{capability}.pt"
    torch.save(_isa_inputs(), inputs)
    _isa_outputs(inputs, this_process)
    project_root = Path(__file__).resolve().parents[2]
    script = (f"import runpy; runpy.run_path({str(Path(__file__).resolve())!r})['_isa_outputs']"
              f"({str(inputs)!r}, {str(other)!r})")
    environment = dict(os.environ, ATEN_CPU_CAPABILITY=capability, OMP_NUM_THREADS="1",
                       PYTHONPATH=os.pathsep.join(filter(None, [str(project_root), os.environ.get("PYTHONPATH")])))
    completed = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    expected = torch.load(this_process, weights_only=True)
    outputs = torch.load(other, weights_only=True)
    assert outputs.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(outputs[name], value), name
