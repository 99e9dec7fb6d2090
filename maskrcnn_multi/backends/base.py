"""The Backend interface: everything the engine needs from a device, in one small class.

A backend answers for one device (`cpu`, `cuda:1`, `npu:0`): whether it is usable and why not, its
runtime (set_device, synchronize, memory, seeding and generator state), its process-group backend,
its precision policy (the preferred half type, the autocast context, float32 precision, cuDNN
autotuning), its static-shape and op-selection preferences, and the kernels it registers. The
generic implementation here uses PyTorch's device-generic API (`torch.get_device_module`,
`torch.amp`); a device file overrides only what differs on that device. What is the same on every
device (O2 casting, master weights, loss scaling) lives in `amp.py` and `loss_scaler.py`.
"""
from __future__ import annotations

import contextlib
import logging
import random
from typing import Callable, ClassVar, ContextManager, Optional, Tuple, Union

import numpy as np
import torch

from ..config.amp import FLOAT32_PRECISIONS
from ..config.errors import UserError
from . import amp

logger = logging.getLogger(__name__)

_MB = 1024.0 * 1024.0


_WARNED = set()  # messages already logged by warn_once (part of the backend layer's registry state)


def warn_once(log: logging.Logger, message: str) -> None:
    """Log `message` as a warning the first time only (per process)."""
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)


class BackendUnavailableError(UserError, RuntimeError):
    """The requested device cannot be used here; the message (one line) says what is missing."""


class Backend:
    """One device's runtime, AMP policy and kernels. Subclasses set the class attributes below.

    Attributes:
        device_type: "cpu", "cuda", "npu": the torch device type and the MODEL.DEVICE prefix.
        dist_backend: the torch.distributed backend for this device ("gloo", "nccl", "hccl").
        preferred_amp_dtype: the half type AMP uses when the config does not name one.
        wants_static_shapes: True when the device compiles graphs per input shape, so the data
            layer should pad every image to one fixed shape (see `fixed_input_shape`).
        default_static_shape: the (H, W) used when static shapes are wanted and INPUT.FIX_SHAPE is ().
        batched_nms_per_class_above: `boxes.numel()` above which `ops.batched_nms` runs one NMS per
            class instead of one NMS over class-offset coordinates. torchvision's measured crossovers
            (torchvision/ops/boxes.py, pytorch/vision#1311 and #8925): 4,000 on the CPU, 100,000 on
            accelerators. Keeping its rule also keeps its results, because the offset changes the
            rounding of IoUs.
        fused_conv2d: the device's fused inference convolution for `ops.conv2d` (conv + bias +
            residual + ReLU in one kernel; returns None where it cannot serve), or None: the
            unfused reference runs.
        fused_linear: the same for `ops.linear` (matmul + bias + ReLU), or None.
        fused_optimizers: build SGD / AdamW with torch's fused kernel (``fused=True``): one kernel over
            all parameters instead of several small ops per parameter.
    """

    device_type: ClassVar[str] = ""
    dist_backend: ClassVar[str] = "gloo"
    preferred_amp_dtype: ClassVar[torch.dtype] = torch.float16
    wants_static_shapes: ClassVar[bool] = False
    default_static_shape: ClassVar[Tuple[int, ...]] = ()
    batched_nms_per_class_above: ClassVar[int] = 100_000
    fused_conv2d: ClassVar[Optional[Callable[..., Optional[torch.Tensor]]]] = None
    fused_linear: ClassVar[Optional[Callable[..., Optional[torch.Tensor]]]] = None
    fused_optimizers: ClassVar[bool] = False

    def __init__(self, index: Optional[int] = None):
        """index: the device ordinal from "cuda:1" / "npu:0", or None for the current device."""
        self.index = index

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @property
    def name(self) -> str:
        """The device as MODEL.DEVICE spells it ("cuda", "npu:0"); safe before the runtime loads."""
        return self.device_type if self.index is None else f"{self.device_type}:{self.index}"

    @property
    def device(self) -> torch.device:
        """The torch.device. For out-of-tree devices (npu) valid only once the runtime is loaded."""
        return torch.device(self.device_type, self.index)

    def with_index(self, index: Optional[int]) -> "Backend":
        """The same kind of backend for another device of this kind (a rank's own device); no checks
        are repeated: the kind was validated when this one was made, the index by `device_count`."""
        return type(self)(index)

    # ------------------------------------------------------------------ availability
    def check_available(self) -> None:
        """Return if the device is usable, else raise BackendUnavailableError saying why."""
        raise NotImplementedError

    def is_available(self) -> bool:
        """True if `check_available()` passes."""
        try:
            self.check_available()
        except BackendUnavailableError:
            return False
        return True

    def unavailable(self, reason: str) -> BackendUnavailableError:
        """The error to raise: "MODEL.DEVICE 'cuda:1': <reason>"."""
        return BackendUnavailableError(f"MODEL.DEVICE '{self.name}': {reason}")

    # ------------------------------------------------------------------ runtime
    def runtime(self):
        """The device's runtime module (torch.cuda, torch_npu.npu, ...)."""
        return torch.get_device_module(self.device_type)

    def set_device(self) -> None:
        """Make this device the current one of this process (no-op without an index)."""
        if self.index is not None:
            self.runtime().set_device(self.index)

    def device_count(self) -> int:
        """How many devices of this kind this process sees."""
        return int(self.runtime().device_count())

    def set_float32_precision(self, mode: str) -> None:
        """FLOAT32_PRECISION (detectron2's values): "highest" exact float32, "high" the device's
        reduced-mantissa float32 (TF32 on CUDA, HF32 on Ascend), "medium" also bfloat16 internally
        where offered, "" the device's default (nothing changed).

        The generic part is torch's matmul precision; devices add their convolution switches.
        """
        if mode not in FLOAT32_PRECISIONS:
            raise ValueError(
                f"unknown FLOAT32_PRECISION {mode!r} (choose from: {', '.join(map(repr, FLOAT32_PRECISIONS))})")
        if mode:
            torch.set_float32_matmul_precision(mode)

    def set_autotuning(self, enabled: bool) -> None:
        """CUDNN_BENCHMARK: let the device time its convolution algorithms per input shape. Only
        cuDNN does that; elsewhere the request is logged as having no effect."""
        if enabled:
            warn_once(logger, f"CUDNN_BENCHMARK True has no effect on MODEL.DEVICE '{self.device_type}' (cuDNN only)")

    def synchronize(self) -> None:
        """Wait for all work queued on the device (for timing)."""
        self.runtime().synchronize(self.device)

    def memory_stats(self) -> dict:
        """{"allocated_mb", "max_allocated_mb", "reserved_mb"}: the caching allocator's counters."""
        runtime = self.runtime()
        return {
            "allocated_mb": runtime.memory_allocated(self.device) / _MB,
            "max_allocated_mb": runtime.max_memory_allocated(self.device) / _MB,
            "reserved_mb": runtime.memory_reserved(self.device) / _MB,
        }

    def reset_peak_memory_stats(self) -> None:
        """Restart `max_allocated_mb` from the current allocation."""
        self.runtime().reset_peak_memory_stats(self.device)

    def manual_seed(self, seed: Optional[int] = None) -> int:
        """Seed Python, NumPy, torch and this device's generators; return the seed used.

        None or a negative seed (SEED -1) draws a fresh one, which is logged so a run can be repeated.
        """
        if seed is None or seed < 0:
            seed = random.SystemRandom().randrange(2**31)
            logger.info("Using a random seed: %d", seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        self._seed_device(seed)
        return seed

    def _seed_device(self, seed: int) -> None:
        self.runtime().manual_seed_all(seed)

    def get_rng_state(self) -> Optional[torch.Tensor]:
        """The state of this device's own random generator (a CPU uint8 tensor), or None where the
        device draws from torch's CPU generator (the CPU itself)."""
        return self.runtime().get_rng_state(self.device).cpu()

    def set_rng_state(self, state: Optional[torch.Tensor]) -> None:
        """Restore `get_rng_state()`'s result; None (a checkpoint from a device without one) is ignored."""
        if state is not None:
            self.runtime().set_rng_state(state, self.device)

    def register_kernels(self) -> None:
        """Register this device's kernels for the maskrcnn_multi ops not built into `_C` (default: none)."""

    def preferred_memory_format(self, dtype: torch.dtype) -> torch.memory_format:
        """The layout this device's convolutions run fastest in, for `dtype` (MODEL.MEMORY_FORMAT "auto")."""
        return torch.contiguous_format

    def fixed_input_shape(self, requested: Tuple[int, ...] = ()) -> Tuple[int, ...]:
        """The (H, W) every image is padded to, or () for dynamic shapes.

        requested: INPUT.FIX_SHAPE. A non-empty request wins; else the device's default when it
        wants static shapes.
        """
        if len(requested):
            return tuple(requested)
        return tuple(self.default_static_shape) if self.wants_static_shapes else ()

    # ------------------------------------------------------------------ mixed precision
    def amp_dtype(self, dtype: Union[None, str, torch.dtype] = None) -> torch.dtype:
        """The half dtype for AMP: `dtype` (a torch.dtype or "float16"/"bfloat16") or the preferred one."""
        return amp.resolve_dtype(dtype, self.preferred_amp_dtype)

    def autocast(self, opt_level: str, dtype: Union[None, str, torch.dtype] = None) -> ContextManager:
        """The forward-pass context: nothing for O0, autocast to the AMP dtype for O1 and O2."""
        if amp.check_opt_level(opt_level) == "O0":
            return contextlib.nullcontext()
        return self._autocast(self.amp_dtype(dtype))

    def _autocast(self, dtype: torch.dtype) -> ContextManager:
        return torch.amp.autocast(self.device_type, dtype=dtype)
