"""CPU backend: always available; memory is the process's resident set; AMP in bfloat16."""
from __future__ import annotations

import logging
import os
import resource
import sys

import torch

from . import cpu_kernels
from .base import Backend

logger = logging.getLogger(__name__)

_MB = 1024.0 * 1024.0


class CpuBackend(Backend):
    """The host CPU. Memory stats report the process RSS (there is no caching allocator to ask)."""

    device_type = "cpu"
    dist_backend = "gloo"
    # float16 matmuls are slow or unsupported on most CPUs; bfloat16 is what CPU autocast is for.
    preferred_amp_dtype = torch.bfloat16
    batched_nms_per_class_above = 4000  # torchvision's CPU crossover (see Backend)
    fused_conv2d = staticmethod(cpu_kernels.onednn_conv2d)
    fused_linear = staticmethod(cpu_kernels.onednn_linear)
    # torch's fused CPU SGD / AdamW: an R18 Mask R-CNN's AdamW step 38 ms -> 6.5 ms, SGD 9.9 -> 4.7 ms
    fused_optimizers = True

    def check_available(self) -> None:
        if self.index not in (None, 0):
            raise self.unavailable("there is one CPU device; use 'cpu' (or 'cpu:0')")

    def set_device(self) -> None:
        pass

    def device_count(self) -> int:
        return 1

    def preferred_memory_format(self, dtype: torch.dtype) -> torch.memory_format:
        """channels_last for float32 and bfloat16: oneDNN's convolutions read and write NHWC without
        reorders (measured: README, "Benchmarks")."""
        return torch.channels_last

    def synchronize(self) -> None:
        pass

    def memory_stats(self) -> dict:
        """RSS now (allocated and reserved) and its peak since start or the last reset, in MB."""
        rss = _status_kb("VmRSS")
        peak = _status_kb("VmHWM")
        if rss is None:  # not Linux: getrusage only knows the lifetime peak
            peak_units = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak_mb = peak_units / (_MB if sys.platform == "darwin" else 1024.0)
            return {"allocated_mb": peak_mb, "max_allocated_mb": peak_mb, "reserved_mb": peak_mb}
        rss_mb = rss / 1024.0
        peak_mb = max(rss_mb, (peak or rss) / 1024.0)
        return {"allocated_mb": rss_mb, "max_allocated_mb": peak_mb, "reserved_mb": rss_mb}

    def reset_peak_memory_stats(self) -> None:
        """Reset the kernel's peak-RSS counter (Linux: write 5 to /proc/self/clear_refs)."""
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
        except OSError as error:
            logger.debug("cannot reset the peak RSS (%s); max_allocated_mb stays the lifetime peak", error)

    def _seed_device(self, seed: int) -> None:
        pass  # torch.manual_seed seeded the CPU generator

    def get_rng_state(self):
        return None  # the CPU draws from torch's own generator (torch.get_rng_state)

    def set_rng_state(self, state) -> None:
        pass


def _status_kb(field: str):
    """A `kB` field of /proc/self/status (VmRSS, VmHWM), or None where there is no procfs."""
    try:
        with open(f"/proc/{os.getpid()}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None
