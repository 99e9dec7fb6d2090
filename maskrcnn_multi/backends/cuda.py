"""CUDA backend: torch's generic device API for "cuda"; NCCL; AMP in float16."""
from __future__ import annotations

import logging

import torch

from .base import Backend, warn_once

logger = logging.getLogger(__name__)


class CudaBackend(Backend):
    """An NVIDIA GPU. The kernels come from `_C` (built with CUDA); nothing to register here."""

    device_type = "cuda"
    dist_backend = "nccl"
    preferred_amp_dtype = torch.float16
    fused_optimizers = True  # torch's fused CUDA Adam(W) / SGD (unverified here: no GPU was lent)

    def check_available(self) -> None:
        if torch.version.cuda is None and torch.version.hip is None:
            raise self.unavailable(f"torch {torch.__version__} was built without CUDA")
        if not torch.cuda.is_available():
            raise self.unavailable(
                "no CUDA device is visible (torch.cuda.is_available() is False: "
                "check the driver and CUDA_VISIBLE_DEVICES)"
            )
        count = torch.cuda.device_count()
        if self.index is not None and self.index >= count:
            raise self.unavailable(f"only {count} CUDA device(s) are visible (indices 0..{count - 1})")

    def register_kernels(self) -> None:
        """Nothing to register (CUDA kernels are built into `_C`), but say so once when they are absent:
        the reference ops then run on the GPU, correct but far slower (NMS syncs with the host per box)."""
        from . import native

        if native.extension() is not None and not native.has_kernel("nms", self.device_type):
            warn_once(logger, "maskrcnn_multi._C was built without CUDA kernels (no CUDA toolkit at build time?): "
                              "the ops use the slow pure-PyTorch reference on the GPU; rebuild with CUDA_HOME set "
                              "(FORCE_CUDA=1 pip install --no-build-isolation -e .)")

    def set_float32_precision(self, mode: str) -> None:
        """TF32 tensor cores for float32 convolutions unless "highest" (matmuls follow torch's
        matmul precision, set by the base class), as detectron2 does."""
        super().set_float32_precision(mode)
        if mode:
            torch.backends.cudnn.allow_tf32 = mode != "highest"

    def preferred_memory_format(self, dtype: torch.dtype) -> torch.memory_format:
        """channels_last for half precision (cuDNN's tensor-core kernels are NHWC, as NVIDIA's recipe
        runs), contiguous for float32. Not yet measured here (no GPU was lent)."""
        return torch.channels_last if dtype in (torch.float16, torch.bfloat16) else torch.contiguous_format

    def set_autotuning(self, enabled: bool) -> None:
        """CUDNN_BENCHMARK: cuDNN times its algorithms per input shape (pays off for fixed sizes)."""
        torch.backends.cudnn.benchmark = bool(enabled)
