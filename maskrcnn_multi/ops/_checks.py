"""Input checks and dtype policy shared by the op wrappers. Errors name the op, the argument and the
offending value, e.g. "roi_align: boxes must be a Tensor[K, 5] or a list of Tensor[Ki, 4], got (3, 4)"."""
from typing import Tuple, Union

import torch

from maskrcnn_multi.backends import native

_HALF_DTYPES = (torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels compute in: float32 for half precision and non-floating inputs."""
    if dtype in _HALF_DTYPES or not dtype.is_floating_point:
        return torch.float32
    return dtype


def use_native(op_name: str, tensor: torch.Tensor) -> bool:
    """Whether the native kernel of `op_name` serves `tensor`'s device (else: the reference twin)."""
    return native.has_kernel(op_name, tensor.device.type)


def shape_of(tensor: torch.Tensor) -> Tuple[int, ...]:
    return tuple(tensor.shape)


def check_tensor(op: str, name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_boxes(op: str, name: str, boxes, width: int = 4) -> torch.Tensor:
    """A (N, width) tensor of box coordinates."""
    check_tensor(op, name, boxes)
    if boxes.dim() != 2 or boxes.shape[1] != width:
        raise ValueError(f"{op}: {name} must be (N, {width}), got {shape_of(boxes)}")
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(f"{op}: {name} must hold real numbers, got dtype {boxes.dtype}")
    return boxes


def check_per_box(op: str, name: str, values, num_boxes: int, device: torch.device) -> torch.Tensor:
    """A (N,) tensor with one value per box, on the boxes' device."""
    check_tensor(op, name, values)
    if values.dim() != 1 or values.shape[0] != num_boxes:
        raise ValueError(f"{op}: {name} must be ({num_boxes},), one per box, got {shape_of(values)}")
    check_same_device(op, name, values, device)
    return values


def check_same_device(op: str, name: str, tensor: torch.Tensor, device: torch.device) -> None:
    if tensor.device != device:
        raise ValueError(f"{op}: {name} is on {tensor.device} but the other inputs are on {device}")


def check_number(op: str, name: str, value: Union[float, torch.Tensor]) -> float:
    """A Python float from a number or a one-element tensor (as thresholds often arrive)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{op}: {name} must be a number, got {value!r}")
    return float(value)


def check_int(op: str, name: str, value, minimum=None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value}")
    return value
