"""DEBUG_MODE 1: the checks a training run does on top of the usual ones, to find where numbers break.

- The batch: every image a finite 3-D tensor, every ground-truth box finite (a NaN coordinate in an
  annotation otherwise shows up iterations later as a NaN loss, or as memory growing without bound).
- The gradients after backward: the first parameter whose gradient is not finite is named (the usual
  check only sees the loss, or under AMP only that some gradient overflowed).
- Autograd anomaly detection over the run (`torch.autograd.detect_anomaly`): the forward operation
  whose backward produced the NaN is reported with its stack. This slows training down severalfold,
  which is why it is a debug switch.
"""
from typing import Iterable, List, Mapping

import torch

__all__ = ["check_batch", "first_non_finite_gradient"]


def check_batch(batch: List[Mapping], iteration: int) -> None:
    """Raise FloatingPointError naming the image (its file when known) whose input is not usable."""
    for index, inputs in enumerate(batch):
        where = inputs.get("file_name", f"image {index} of the batch")
        image = inputs.get("image")
        if not isinstance(image, torch.Tensor) or image.dim() != 3:
            raise FloatingPointError(f"iteration {iteration}: {where}: 'image' is not a (C, H, W) tensor")
        if image.is_floating_point() and not bool(torch.isfinite(image).all()):
            raise FloatingPointError(f"iteration {iteration}: {where}: the image holds NaN or inf pixels")
        instances = inputs.get("instances")
        if instances is not None and instances.has("gt_boxes"):
            boxes = instances.gt_boxes.tensor
            if not bool(torch.isfinite(boxes).all()):
                raise FloatingPointError(f"iteration {iteration}: {where}: a ground-truth box holds NaN or inf")


def first_non_finite_gradient(named_parameters: Iterable) -> str:
    """The name of the first parameter whose gradient holds NaN or inf, or "" when all are finite.

    One host sync for the common all-finite case (a stacked flag), then a scan to name the culprit.
    """
    named = [(name, param.grad) for name, param in named_parameters if param.grad is not None]
    if not named:
        return ""
    flags = torch.stack([torch.isfinite(grad).all() for _, grad in named])
    if bool(flags.all()):
        return ""
    for (name, grad), finite in zip(named, flags.tolist()):
        if not finite:
            kind = "NaN" if bool(torch.isnan(grad).any()) else "inf"
            return f"{name} ({kind})"
    return ""
