"""Ascend NPU backend, through torch_npu (imported lazily, only when an npu device is requested).

Runtime calls go to `torch_npu.npu` (set_device, synchronize, memory counters, seeding), autocast to
`torch_npu.npu.amp.autocast`, processes talk over HCCL, and the maskrcnn_multi ops get PrivateUse1
kernels from `npu_kernels` (torch_npu's npu_nms_v4 / npu_roi_align / npu_roi_alignbk). The NPU's
graph compiler wants static shapes, so the data layer pads images to a fixed size.
"""
from __future__ import annotations

import importlib
import logging

import torch

from . import npu_kernels
from .base import Backend

logger = logging.getLogger(__name__)


class NpuBackend(Backend):
    """An Ascend NPU ("npu", "npu:0")."""

    device_type = "npu"
    dist_backend = "hccl"
    preferred_amp_dtype = torch.float16
    wants_static_shapes = True
    # The Ascend ModelZoo port's INPUT.FIX_SHAPE: 1333 rounded up to a multiple of 32 (FPN's stride).
    default_static_shape = (1344, 1344)

    def torch_npu(self):
        """The torch_npu module (imported on first use), or BackendUnavailableError saying why not."""
        try:
            return importlib.import_module("torch_npu")
        except ModuleNotFoundError as error:
            if error.name != "torch_npu":
                raise self.unavailable(f"torch_npu failed to import: {_first_line(error)}") from error
            raise self.unavailable(
                f"torch_npu is not installed (install the torch-npu release matching torch "
                f"{torch.__version__}; it needs the Ascend CANN toolkit)"
            ) from error
        except Exception as error:  # e.g. ImportError: libhccl.so: cannot open shared object file
            raise self.unavailable(f"torch_npu failed to import: {_first_line(error)}") from error

    def runtime(self):
        return self.torch_npu().npu

    def check_available(self) -> None:
        runtime = self.runtime()
        if not runtime.is_available():
            raise self.unavailable(
                "no Ascend NPU is visible (torch_npu.npu.is_available() is False: "
                "check the driver, the CANN environment (set_env.sh) and ASCEND_RT_VISIBLE_DEVICES)"
            )
        count = runtime.device_count()
        if self.index is not None and self.index >= count:
            raise self.unavailable(f"only {count} NPU device(s) are visible (indices 0..{count - 1})")

    def set_float32_precision(self, mode: str) -> None:
        """HF32 for float32 matmuls and convolutions unless "highest", which is exact float32
        (torch_npu's `npu.matmul.allow_hf32` / `npu.conv.allow_hf32`; the ModelZoo's --hf32 / --fp32
        set FLOAT32_PRECISION "high" / "highest")."""
        super().set_float32_precision(mode)
        if mode:
            runtime = self.runtime()
            runtime.matmul.allow_hf32 = mode != "highest"
            runtime.conv.allow_hf32 = mode != "highest"

    def preferred_memory_format(self, dtype: torch.dtype) -> torch.memory_format:
        """contiguous: torch_npu converts to its private formats (NC1HWC0, ...) itself; channels_last
        is not one of them. Unverified on hardware."""
        return torch.contiguous_format

    def _autocast(self, dtype: torch.dtype):
        return self.runtime().amp.autocast(dtype=dtype)

    def register_kernels(self) -> None:
        npu_kernels.register_kernels()


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
