"""Backends: one object per device kind that supplies runtime, mixed precision and kernels.

    backend = get_backend(cfg.MODEL.DEVICE)     # "cpu", "cuda", "cuda:1", "npu:0", torch.device
    backend.set_device(); backend.manual_seed(cfg.SEED)
    with backend.autocast(opt_level): losses = model(batch)

`BACKENDS` (device type -> Backend class) is the registry and the package's only global mutable
state; `register_backend` adds a device. Adding a device = one file here plus its kernels.

Importing this package before torch protects `import torch` on hosts where torch_npu is installed
but unusable: since torch 2.5 torch_npu is an autoload backend, and `import torch` fails when its
CANN libraries are missing. When torch is not imported yet, torch_npu is installed and no CANN
environment is set up, TORCH_DEVICE_BACKEND_AUTOLOAD defaults to 0 here; asking for an npu device
then imports torch_npu explicitly and reports the real error in one line. (When torch is already
imported its autoload has already run, successfully, or the import would have failed.)
"""
import importlib.util
import os
import sys

_CANN_ENV_VARS = ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH", "ASCEND_OPP_PATH")


def _guard_torch_npu_autoload() -> None:
    if "torch" in sys.modules or any(os.environ.get(var) for var in _CANN_ENV_VARS):
        return
    if importlib.util.find_spec("torch_npu") is not None:
        os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")


_guard_torch_npu_autoload()

import re  # noqa: E402
from typing import Dict, List, Optional, Tuple, Type, Union  # noqa: E402

import torch  # noqa: E402

from ..config.errors import UserError  # noqa: E402
from .amp import LossScaler, MasterWeightOptimizer  # noqa: E402
from .base import Backend, BackendUnavailableError  # noqa: E402
from .cpu import CpuBackend  # noqa: E402
from .cuda import CudaBackend  # noqa: E402
from .npu import NpuBackend  # noqa: E402

__all__ = [
    "BACKENDS", "Backend", "BackendUnavailableError", "LossScaler", "MasterWeightOptimizer",
    "backend_class", "get_backend", "list_backends", "parse_device", "register_backend",
]

BACKENDS: Dict[str, Type[Backend]] = {"cpu": CpuBackend, "cuda": CudaBackend, "npu": NpuBackend}

_DEVICE_PATTERN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::(.*))?$")


def register_backend(backend_cls: Type[Backend]) -> None:
    """Add (or replace) the backend for `backend_cls.device_type`."""
    BACKENDS[backend_cls.device_type] = backend_cls


def backend_class(device_type: str) -> Type[Backend]:
    """The Backend class answering for tensors of `device_type` (its class attributes are the
    device's op preferences); the generic `Backend` for a device with no backend (meta, mps)."""
    return BACKENDS.get(device_type, Backend)


def list_backends() -> List[str]:
    """The device types MODEL.DEVICE may name, in registration order."""
    return list(BACKENDS)


def parse_device(device: Union[str, torch.device]) -> Tuple[str, Optional[int]]:
    """"cuda:1" -> ("cuda", 1), "npu" -> ("npu", None); ValueError naming the value otherwise."""
    if isinstance(device, torch.device):
        device_type, index = device.type, device.index
    else:
        text = str(device).strip()
        match = _DEVICE_PATTERN.match(text)
        device_type = match.group(1) if match else text
        if device_type not in BACKENDS:
            raise UserError(f"unknown MODEL.DEVICE {text!r} (choose from: {', '.join(BACKENDS)})")
        index_text = match.group(2)
        if index_text is not None and not index_text.isdigit():
            raise UserError(
                f"MODEL.DEVICE {text!r}: the device index must be a non-negative integer (e.g. '{device_type}:0')"
            )
        index = None if index_text is None else int(index_text)
    if device_type not in BACKENDS:
        raise UserError(f"unknown MODEL.DEVICE {str(device)!r} (choose from: {', '.join(BACKENDS)})")
    return device_type, index


def get_backend(device: Union[str, torch.device]) -> Backend:
    """The backend for `device`, checked usable (its kernels registered).

    Entry points call it once per process and pass the backend down (`DefaultTrainer(cfg,
    backend=...)`); `Backend.with_index` gives a rank its own device of the same kind.

    Raises:
        ValueError: the device kind is unknown or the string malformed.
        BackendUnavailableError: the device cannot be used here; the message says what is missing.
    """
    device_type, index = parse_device(device)
    backend = BACKENDS[device_type](index)
    backend.check_available()
    backend.register_kernels()
    return backend
