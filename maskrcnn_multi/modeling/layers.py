"""Building blocks shared by the network (detectron2's ``layers``): ShapeSpec, Conv2d with norm and
activation, norms (FrozenBatchNorm2d, ...), init helpers. Parameter names equal detectron2's."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..config.errors import UserError


@dataclass
class ShapeSpec:
    """What a module produces: channels and spatial stride of a feature map (None = unknown)."""

    channels: Optional[int] = None
    height: Optional[int] = None
    width: Optional[int] = None
    stride: Optional[int] = None


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose statistics and affine parameters are fixed buffers.

    ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`` on ``Tensor[N, C, H, W]``.
    Buffers (not parameters): ``weight``, ``bias``, ``running_mean``, ``running_var``, all ``[C]``.
    """

    _version = 3
    is_normalization = True

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad or x.dtype != self.weight.dtype:
            # F.batch_norm's backward would also compute grads for weight/bias, costing memory; and a
            # half input with fp32 buffers (AMP O2 keeps norms fp32) needs the explicit form.
            scale = self.weight * (self.running_var + self.eps).rsqrt()
            bias = self.bias - self.running_mean * scale
            scale = scale.reshape(1, -1, 1, 1).to(x.dtype)
            bias = bias.reshape(1, -1, 1, 1).to(x.dtype)
            return x * scale + bias
        # without grads, batch_norm is one fused op
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        version = local_metadata.get("version", None)
        if version is None or version < 2:
            # early checkpoints (and Caffe2 conversions) have no running stats: identity statistics
            if prefix + "running_mean" not in state_dict:
                state_dict[prefix + "running_mean"] = torch.zeros_like(self.running_mean)
            if prefix + "running_var" not in state_dict:
                state_dict[prefix + "running_var"] = torch.ones_like(self.running_var)
        # BatchNorm checkpoints carry a counter FrozenBN has no use for
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def __repr__(self) -> str:
        return f"FrozenBatchNorm2d(num_features={self.num_features}, eps={self.eps})"

    @classmethod
    def convert_frozen_batchnorm(cls, module: nn.Module) -> nn.Module:
        """Replace every BatchNorm2d / SyncBatchNorm in ``module`` by a FrozenBatchNorm2d with its values.

        Returns ``module`` itself (children replaced in place) or, when ``module`` is a BN, the new module.
        """
        bn_types = (nn.modules.batchnorm.BatchNorm2d, nn.modules.batchnorm.SyncBatchNorm)
        result = module
        if isinstance(module, bn_types):
            result = cls(module.num_features)
            if module.affine:
                result.weight.data = module.weight.data.clone().detach()
                result.bias.data = module.bias.data.clone().detach()
            result.running_mean.data = module.running_mean.data
            result.running_var.data = module.running_var.data
            result.eps = module.eps
        else:
            for name, child in module.named_children():
                new_child = cls.convert_frozen_batchnorm(child)
                if new_child is not child:
                    result.add_module(name, new_child)
        return result


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is summed over ranks too (each rank's input feeds every rank's sum)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        reduced = tensor.clone()
        torch.distributed.all_reduce(reduced)
        return reduced

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        reduced = grad.clone()
        torch.distributed.all_reduce(reduced)
        return reduced


class SyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose batch statistics are taken over all ranks, on any device the process group
    serves (``nn.SyncBatchNorm`` runs on CUDA only). One ``all_reduce`` per forward gathers each rank's
    per-channel mean, sum of squared deviations and element count, so ranks with different image sizes
    (or none) combine exactly. Outside training or distributed runs it is BatchNorm2d. Computes in fp32
    (AMP O2 safe).
    """

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features``: ``Tensor[N, C, H, W]``; returns the same shape and dtype."""
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if not self.training or not distributed or torch.distributed.get_world_size() == 1:
            return super().forward(features)
        channels = features.shape[1]
        values = features.float()
        # Each rank's (mean, sum of squared deviations from it, count), merged exactly (Chan et al.):
        # no E[x^2] - E[x]^2, which cancels catastrophically where the mean is large against the spread.
        local_count = values.numel() // max(channels, 1)
        local_mean = values.sum(dim=(0, 2, 3)) / max(local_count, 1)
        local_m2 = (values - local_mean.view(1, -1, 1, 1)).pow(2).sum(dim=(0, 2, 3))
        row = torch.cat([local_mean, local_m2, values.new_full((1,), local_count)])
        rows = [torch.zeros_like(row) for _ in range(torch.distributed.get_world_size())]
        rows[torch.distributed.get_rank()] = row
        table = _AllReduceSum.apply(torch.stack(rows))  # an all-gather that autograd can go through
        means, m2s, counts = table[:, :channels], table[:, channels:2 * channels], table[:, -1:].detach()
        total = counts.sum().clamp(min=1.0)
        mean = (counts * means).sum(dim=0) / total
        var = (m2s.sum(dim=0) + (counts * (means - mean).pow(2)).sum(dim=0)) / total
        scale = self.weight.float() * torch.rsqrt(var + self.eps)
        shift = self.bias.float() - mean * scale
        with torch.no_grad():
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
            unbiased_var = var * total / (total - 1.0).clamp(min=1.0)
            self.running_mean.mul_(1.0 - momentum).add_(mean.detach().to(self.running_mean.dtype), alpha=momentum)
            self.running_var.mul_(1.0 - momentum).add_(unbiased_var.detach().to(self.running_var.dtype), alpha=momentum)
            self.num_batches_tracked.add_(1)
        normalized = values * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
        return normalized.to(features.dtype)


# torch's BatchNorm2d and GroupNorm need no marking: the AMP O2 policy knows torch's norm classes.
_NORMS = {
    "BN": nn.BatchNorm2d,
    "SyncBN": SyncBatchNorm,
    "FrozenBN": FrozenBatchNorm2d,
    "GN": lambda channels: nn.GroupNorm(32, channels),
}


def get_norm(norm: Union[str, Callable[[int], nn.Module], None], out_channels: int) -> Optional[nn.Module]:
    """A normalization module for ``out_channels`` channels.

    ``norm``: "" or None (no norm: returns None), "BN", "SyncBN", "FrozenBN", "GN" (32 groups), or a
    callable taking the channel count and returning a module.
    """
    if norm is None:
        return None
    if isinstance(norm, str):
        if len(norm) == 0:
            return None
        if norm not in _NORMS:
            raise UserError(f"unknown norm '{norm}' (choose from: '', {', '.join(_NORMS)})")
        norm = _NORMS[norm]
    return norm(out_channels)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` that optionally applies ``norm`` then ``activation`` (keyword-only extras).

    The norm is the submodule ``norm``, so its state-dict keys are ``<conv>.norm.weight`` as detectron2.
    """

    def __init__(self, *args, **kwargs):
        norm = kwargs.pop("norm", None)
        activation = kwargs.pop("activation", None)
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._conv_forward(x, self.weight, self.bias)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def cat(tensors: List[torch.Tensor], dim: int = 0) -> torch.Tensor:
    """``torch.cat`` that skips the copy for a single tensor."""
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"cat expects a list of tensors, got {type(tensors).__name__}")
    if len(tensors) == 1:
        return tensors[0]
    return torch.cat(tensors, dim)


def nonzero_tuple(x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """``x.nonzero(as_tuple=True)`` that also accepts 0-d tensors (one index tensor per dim)."""
    if x.dim() == 0:
        return x.unsqueeze(0).nonzero().unbind(1)
    return x.nonzero().unbind(1)


def c2_msra_fill(module: nn.Module) -> None:
    """Caffe2's MSRAFill: kaiming normal, fan_out, relu gain; bias 0."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2's XavierFill (uniform, a=1); bias 0."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)
