"""The model as inference runs it: a derived graph, never the model itself.

`build_inference_graph(model, ...)` returns a copy of ``model`` in eval mode that shares every
tensor it does not change, in which:
- each convolution followed by a FrozenBatchNorm2d (or an eval-mode BatchNorm2d) becomes one
  convolution with the norm folded into its weight and bias (exact up to rounding);
- a deformable convolution (DeformBottleneckBlock's conv2) keeps its own op, `ops.deform_conv2d`,
  which is linear in its weight: its norm folds into weight and bias the same way, and its block's
  plain convolutions fuse around it;
- every convolution runs through `ops.conv2d`, which lets the device fuse the bias, the residual sum
  of a ResNet block (and FPN's top-down sum) and the ReLU into the convolution (oneDNN's post-ops on
  the CPU); linear layers likewise through `ops.linear`, with the box head's Flatten and ReLUs folded
  into them;
- optionally, convolution and linear weights are stored once in a half dtype (the autocast dtype of
  fast inference) and in a memory format (channels_last), and the batched input image is converted
  once at the input: no per-call weight casts, no layout changes between layers. The few layers a
  module lists in ``float32_layers`` (the heads' final layers, whose outputs are the scores, box
  deltas and mask logits) stay float32 and run outside autocast: they cost nothing and keep the
  detections' precision.
The source model's parameters, buffers and state dict are untouched: training and checkpoints see
the model, not the graph. Rebuild the graph when the model's weights change (`engine.inference`
does, by tracking their versions).
"""
import copy
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from maskrcnn_multi import ops

from .backbone.resnet_blocks import BasicBlock, BasicStem, BottleneckBlock, DeformBottleneckBlock
from .deform_conv import DeformConv, ModulatedDeformConv
from .fused_layers import FusedConv2d, FusedLinear, fold_norm
from .layers import Conv2d, FrozenBatchNorm2d

__all__ = ["FusedConv2d", "FusedLinear", "build_inference_graph", "fold_norm"]

_RELUS = (F.relu, F.relu_, torch.relu, torch.relu_)


def _fuse_linear(linear: nn.Linear, activation: str = "", flattens: bool = False) -> FusedLinear:
    bias = None if linear.bias is None else linear.bias.detach()
    return FusedLinear(linear.weight.detach(), bias, activation, flattens)


def _fuse_sequential_linears(sequence: nn.Sequential) -> bool:
    """In a Sequential, fold ``Flatten`` into the ``Linear`` after it and a ``ReLU`` into the
    ``Linear`` before it (the box head: flatten, fc1, fc_relu1, fc2, fc_relu2); True if it changed."""
    names = [name for name, _ in sequence.named_children()]
    changed = False
    for index, name in enumerate(names):
        child = getattr(sequence, name)
        if type(child) is not nn.Linear:
            continue
        previous = getattr(sequence, names[index - 1]) if index > 0 else None
        following = getattr(sequence, names[index + 1]) if index + 1 < len(names) else None
        flattens = type(previous) is nn.Flatten and previous.start_dim == 1 and previous.end_dim == -1
        relu = isinstance(following, nn.ReLU)
        setattr(sequence, name, _fuse_linear(child, "relu" if relu else "", flattens))
        if flattens:
            setattr(sequence, names[index - 1], nn.Identity())
        if relu:
            setattr(sequence, names[index + 1], nn.Identity())
        changed = True
    return changed


def _foldable(norm: Optional[nn.Module]) -> bool:
    if isinstance(norm, FrozenBatchNorm2d):
        return True
    return isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats and norm.running_mean is not None


def _activation_name(activation) -> Optional[str]:
    """"" for none, "relu" for a ReLU, None for an activation ops.conv2d cannot fuse."""
    if activation is None:
        return ""
    if isinstance(activation, nn.ReLU) or activation in _RELUS:
        return "relu"
    return None


def _fuse_conv(conv: nn.Conv2d, activation: str = "") -> Optional[FusedConv2d]:
    """The FusedConv2d of ``conv`` (ours with its norm and activation, or torch's), or None when it
    cannot be fused (a non-zero padding mode, a norm that does not fold, an activation not fusable)."""
    if type(conv) not in (Conv2d, nn.Conv2d) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return None
    norm = getattr(conv, "norm", None)
    own_activation = _activation_name(getattr(conv, "activation", None))
    if own_activation is None or (norm is not None and not _foldable(norm)):
        return None
    weight, bias = conv.weight.detach(), None if conv.bias is None else conv.bias.detach()
    if norm is not None:
        weight, bias = fold_norm(weight, bias, norm)
    return FusedConv2d(weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups,
                       activation=own_activation or activation)


class _FusedStem(nn.Module):
    """BasicStem: conv1 + ReLU fused, then the max pool."""

    def __init__(self, stem: BasicStem, conv1: FusedConv2d):
        super().__init__()
        self.conv1 = conv1
        self.out_channels, self.stride = stem.out_channels, stem.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)


class _FusedResidualBlock(nn.Module):
    """A ResNet block as fused convolutions: each conv but the last with its ReLU, the last with the
    shortcut added and the ReLU (BasicBlock: conv1, conv2; BottleneckBlock: conv1, conv2, conv3)."""

    def __init__(self, block: nn.Module, convs: Tuple[FusedConv2d, ...], shortcut: Optional[FusedConv2d]):
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.shortcut = shortcut
        self.in_channels, self.out_channels, self.stride = block.in_channels, block.out_channels, block.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for conv in self.convs[:-1]:
            out = conv(out)
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        return self.convs[-1](out, residual=shortcut)


class _FusedDeformConv(nn.Module):
    """DeformConv / ModulatedDeformConv with its norm folded into weight and bias, then ReLU:
    ``forward(x, offset, mask=None)``; weight and bias follow x's dtype (as autocast would)."""

    def __init__(self, conv: nn.Module, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", bias, persistent=False)
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.groups, self.deformable_groups = conv.groups, conv.deformable_groups

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = ops.deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask,
                                groups=self.groups, offset_groups=self.deformable_groups)
        return F.relu_(out)


def _fuse_deform_conv(conv: nn.Module) -> Optional[_FusedDeformConv]:
    """The folded form of a deformable conv followed by a foldable norm (or none), or None."""
    if type(conv) not in (DeformConv, ModulatedDeformConv) or conv.activation is not None:
        return None
    if conv.norm is not None and not _foldable(conv.norm):
        return None
    weight = conv.weight.detach()
    bias = None if conv.bias is None else conv.bias.detach()
    if conv.norm is not None:
        weight, bias = fold_norm(weight, bias, conv.norm)
    if bias is None:
        bias = weight.new_zeros(weight.shape[0])
    return _FusedDeformConv(conv, weight, bias)


class _FusedDeformBlock(nn.Module):
    """DeformBottleneckBlock as fused parts: conv1 (+ReLU), conv2_offset, the folded deformable conv2
    (+ReLU), conv3 with the shortcut added and the ReLU."""

    def __init__(self, block: DeformBottleneckBlock, conv1: FusedConv2d, conv2_offset: FusedConv2d,
                 conv2: _FusedDeformConv, conv3: FusedConv2d, shortcut: Optional[FusedConv2d]):
        super().__init__()
        self.conv1, self.conv2_offset, self.conv2, self.conv3, self.shortcut = conv1, conv2_offset, conv2, conv3, shortcut
        self.deform_modulated = block.deform_modulated
        self.in_channels, self.out_channels, self.stride = block.in_channels, block.out_channels, block.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        offsets = self.conv2_offset(out)
        if self.deform_modulated:
            offset_channels = offsets.shape[1] * 2 // 3
            out = self.conv2(out, offsets[:, :offset_channels], offsets[:, offset_channels:].sigmoid())
        else:
            out = self.conv2(out, offsets)
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        return self.conv3(out, residual=shortcut)


def _fuse_deform_block(block: DeformBottleneckBlock) -> Optional[nn.Module]:
    parts = (_fuse_conv(block.conv1, "relu"), _fuse_conv(block.conv2_offset), _fuse_deform_conv(block.conv2),
             _fuse_conv(block.conv3, "relu"))
    shortcut = None if block.shortcut is None else _fuse_conv(block.shortcut)
    if any(part is None for part in parts) or (block.shortcut is not None and shortcut is None):
        return None
    return _FusedDeformBlock(block, *parts, shortcut)


def _fuse_block(block: nn.Module) -> Optional[nn.Module]:
    """The fused form of one of our ResNet blocks (exact types only: a user's subclass may change
    forward), or None when any of its convolutions cannot be fused."""
    if type(block) is BasicStem:
        conv1 = _fuse_conv(block.conv1, "relu")
        return None if conv1 is None else _FusedStem(block, conv1)
    if type(block) is DeformBottleneckBlock:
        return _fuse_deform_block(block)
    if type(block) not in (BasicBlock, BottleneckBlock):
        return None
    names = ("conv1", "conv2") if type(block) is BasicBlock else ("conv1", "conv2", "conv3")
    convs = tuple(_fuse_conv(getattr(block, name), "relu") for name in names)
    shortcut = None if block.shortcut is None else _fuse_conv(block.shortcut)
    if any(conv is None for conv in convs) or (block.shortcut is not None and shortcut is None):
        return None
    return _FusedResidualBlock(block, convs, shortcut)


def _replace_modules(module: nn.Module, replaced: Dict[int, nn.Module]) -> None:
    """Depth first: fuse ResNet blocks, then any remaining convolution (FPN, RPN and mask heads);
    ``replaced`` collects id(old module) -> its fused module."""
    if isinstance(module, nn.Sequential):
        _fuse_sequential_linears(module)
    for name, child in list(module.named_children()):
        fused = _fuse_block(child)
        if fused is None and isinstance(child, nn.Conv2d):
            fused = _fuse_conv(child)
        elif fused is None and type(child) is nn.Linear:
            fused = _fuse_linear(child)
        if fused is not None:
            setattr(module, name, fused)
            replaced[id(child)] = fused
        else:
            _replace_modules(child, replaced)


def _update_module_lists(graph: nn.Module, replaced: Dict[int, nn.Module]) -> None:
    """Modules also kept in plain lists (FPN's lateral_convs, ResNet's stages: plain so that the
    state-dict names stay detectron2's) must point at the fused modules too."""
    for module in graph.modules():
        for attribute, value in list(vars(module).items()):
            if isinstance(value, (list, tuple)) and any(id(item) in replaced for item in value):
                setattr(module, attribute, type(value)(replaced.get(id(item), item) for item in value))


class _Float32Layer(nn.Module):
    """Runs ``layer`` in float32 with autocast off (its input widened): the final layers of the heads."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.layer(x.float())


def _keep_float32_layers(graph: nn.Module) -> set:
    """Wrap each module's ``float32_layers`` in _Float32Layer; returns the ids of the wrapped layers'
    modules, which keep float32 weights."""
    kept = set()
    for module in list(graph.modules()):
        for name in getattr(type(module), "float32_layers", ()):
            layer = getattr(module, name, None)
            if isinstance(layer, nn.Module) and not isinstance(layer, _Float32Layer):
                setattr(module, name, _Float32Layer(layer))
                kept.update(id(inner) for inner in layer.modules())
    return kept


def _widen(module: nn.Module) -> None:
    """Give ``module``'s own half-precision weight and bias float32 copies."""
    for name in ("weight", "bias"):
        tensor = getattr(module, name, None)
        if isinstance(tensor, torch.Tensor) and tensor.dtype in (torch.float16, torch.bfloat16):
            widened = tensor.detach().float()
            setattr(module, name, widened if isinstance(module, (FusedConv2d, FusedLinear)) else nn.Parameter(widened, False))


def _store_weights(graph: nn.Module, dtype: Optional[torch.dtype], memory_format: torch.memory_format) -> None:
    """Give every convolution / linear weight of the graph its inference dtype and layout, once (new
    tensors: the source model's stay as they are)."""
    float32_modules = _keep_float32_layers(graph) if dtype is not None and dtype != torch.float32 else set()
    for module in graph.modules():
        if id(module) in float32_modules:
            _widen(module)  # an O2 model's half weights
            continue
        if isinstance(module, _FusedDeformConv) and dtype is not None:
            module.weight, module.bias = module.weight.to(dtype), module.bias.to(dtype)
        elif isinstance(module, FusedConv2d):
            module.weight = module.weight.to(dtype=dtype or module.weight.dtype, memory_format=memory_format)
            if module.bias is not None and dtype is not None:
                module.bias = module.bias.to(dtype)
        elif isinstance(module, FusedLinear) and dtype is not None:
            module.weight = module.weight.to(dtype)
            module.bias = None if module.bias is None else module.bias.to(dtype)
        elif isinstance(module, (nn.Linear, nn.ConvTranspose2d, nn.Conv2d)) and dtype is not None:
            layout = memory_format if module.weight.dim() == 4 else torch.contiguous_format
            module.weight = nn.Parameter(module.weight.detach().to(dtype=dtype, memory_format=layout), False)
            if module.bias is not None:
                module.bias = nn.Parameter(module.bias.detach().to(dtype), False)
        elif isinstance(module, (nn.ConvTranspose2d, nn.Conv2d)) and memory_format != torch.contiguous_format:
            module.weight = nn.Parameter(module.weight.detach().contiguous(memory_format=memory_format), False)


def build_inference_graph(model: nn.Module, *, fuse: bool = True, dtype: Optional[torch.dtype] = None,
                          memory_format: torch.memory_format = torch.contiguous_format) -> nn.Module:
    """The inference graph of ``model`` (see the module docstring), in eval mode.

    Args:
        fuse: fold norms into convolutions and run them through `ops.conv2d` with their epilogues.
        dtype: store convolution / linear weights in this half dtype (None: as they are); the input
            image is converted to it once. Run the graph under the device's autocast in that dtype.
        memory_format: the layout of 4-D weights and of the input batch (torch.channels_last or
            torch.contiguous_format).
    """
    shared: Dict[int, torch.Tensor] = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    graph = copy.deepcopy(model, memo=shared)
    graph.eval()
    if fuse:
        replaced: Dict[int, nn.Module] = {}
        _replace_modules(graph, replaced)
        _update_module_lists(graph, replaced)
    _store_weights(graph, dtype, memory_format)
    if hasattr(graph, "set_input_layout"):
        graph.set_input_layout(dtype=dtype, memory_format=memory_format)
    return graph
