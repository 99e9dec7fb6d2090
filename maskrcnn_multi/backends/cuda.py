"""CUDA backend: torch's generic device API for "cuda"; NCCL; AMP in float16."""
from __future__ import annotations

import torch

from .base import Backend


class CudaBackend(Backend):
    """An NVIDIA GPU. The kernels come from `_C` (built with CUDA); nothing to register here."""

    device_type = "cuda"
    dist_backend = "nccl"
    preferred_amp_dtype = torch.float16

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

    def set_float32_precision(self, mode: str) -> None:
        """TF32 tensor cores for float32 matmuls/convolutions on "hf32", exact float32 on "fp32"."""
        super().set_float32_precision(mode)
        if mode:
            torch.backends.cuda.matmul.allow_tf32 = mode == "hf32"
            torch.backends.cudnn.allow_tf32 = mode == "hf32"
