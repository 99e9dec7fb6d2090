"""What a run sets up on its backend before it starts, and the random state a checkpoint carries.

Every entry point (train_net, the trainer, the predictor) resolves its backend once and passes it
here; the config says what it wants and the backend says how the device does it:
- `FLOAT32_PRECISION` (detectron2's key; the launch scripts' `--hf32` / `--fp32` set it to "high" /
  "highest") -> `Backend.set_float32_precision`;
- `CUDNN_BENCHMARK` -> `Backend.set_autotuning` (training only, as detectron2: autotuning pays off
  over many iterations, not over a validation set);
- `INPUT.FIX_SHAPE` -> `Backend.fixed_input_shape`: the static input shape, resolved once into
  the config the data layer reads (and the run's config.yaml shows).
"""
import logging
import os
import random
from typing import Mapping, Optional

import numpy as np
import torch

from ..config.errors import UserError

__all__ = [
    "apply_device_settings", "capture_rng_states", "float32_precision", "resolve_input_shape",
    "restore_rng_states",
]

logger = logging.getLogger(__name__)

_TRUE = ("1", "true", "yes", "on")


def float32_precision(cfg, environ: Mapping[str, str] = os.environ) -> str:
    """FLOAT32_PRECISION, or, when the config leaves it empty, what the environment of an Ascend
    ModelZoo script asks for (ALLOW_HF32=True -> "high", ALLOW_FP32=True -> "highest")."""
    if cfg.FLOAT32_PRECISION:
        return cfg.FLOAT32_PRECISION

    def enabled(name: str) -> bool:
        return environ.get(name, "").strip().lower() in _TRUE

    if enabled("ALLOW_HF32") and enabled("ALLOW_FP32"):
        raise UserError("ALLOW_HF32 and ALLOW_FP32 are both set: choose one (--hf32 or --fp32)")
    return "high" if enabled("ALLOW_HF32") else "highest" if enabled("ALLOW_FP32") else ""


def apply_device_settings(cfg, backend, training: bool = True) -> None:
    """Apply FLOAT32_PRECISION and (when training) CUDNN_BENCHMARK through `backend`."""
    mode = float32_precision(cfg)
    backend.set_float32_precision(mode)
    if mode:
        logger.info("float32 precision: %s on %s", mode, backend.name)
    if training:
        backend.set_autotuning(cfg.CUDNN_BENCHMARK)


def resolve_input_shape(cfg, backend):
    """`cfg` with INPUT.FIX_SHAPE as the backend resolves it: the request, else the static shape a
    graph-compiling device wants by default (NPU), else () for dynamic shapes. Returns `cfg` itself
    when nothing changes, else a copy (frozen if `cfg` was)."""
    requested = tuple(cfg.INPUT.FIX_SHAPE)
    resolved = tuple(backend.fixed_input_shape(requested))
    if resolved == requested:
        return cfg
    logger.info("INPUT.FIX_SHAPE %s: %s pads every image to one static shape", resolved, backend.name)
    resolved_cfg = cfg.clone()
    resolved_cfg.defrost()
    resolved_cfg.INPUT.FIX_SHAPE = resolved
    if cfg.is_frozen():
        resolved_cfg.freeze()
    return resolved_cfg


def capture_rng_states(backend=None) -> dict:
    """This process's RNG states (python, numpy, torch CPU, the device's generator) as tensors and
    plain numbers, so a checkpoint holding them still loads with ``torch.load(weights_only=True)``."""
    version, python_state, gauss_next = random.getstate()
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    states = {
        "python": (version, torch.tensor(python_state, dtype=torch.int64), gauss_next),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached_gaussian)),
        "torch": torch.get_rng_state(),
    }
    device_state: Optional[torch.Tensor] = backend.get_rng_state() if backend is not None else None
    if device_state is not None:
        states["device"] = device_state
    return states


def restore_rng_states(states: dict, backend=None) -> None:
    """The inverse of ``capture_rng_states``."""
    version, python_state, gauss_next = states["python"]
    random.setstate((version, tuple(python_state.tolist()), gauss_next))
    name, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(states["torch"])
    if backend is not None:
        backend.set_rng_state(states.get("device"))
