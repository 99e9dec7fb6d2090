"""ResNet backbone (detectron2's ``ResNet``; parameter names ``stem.conv1``, ``res2.0.conv1`` ...)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ...config.errors import UserError
from ..layers import ShapeSpec
from .backbone import Backbone
from .resnet_blocks import BasicBlock, BasicStem, BottleneckBlock, CNNBlockBase, DeformBottleneckBlock

_NUM_BLOCKS_PER_STAGE = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
}
_STAGE_INDEX = {"res2": 1, "res3": 2, "res4": 3, "res5": 4}


class ResNet(Backbone):
    """Stem followed by stages ``res2`` .. ``res5``; returns the features named in ``out_features``.

    Strides: stem 4, res2 4, res3 8, res4 16, res5 32 (16 with RES5_DILATION 2).
    ``forward``: ``Tensor[N, C, H, W] -> {name: Tensor[N, C_name, H / stride, W / stride]}``.
    """

    def __init__(
        self,
        stem: CNNBlockBase,
        stages: List[List[CNNBlockBase]],
        out_features: Optional[Sequence[str]] = None,
        freeze_at: int = 0,
    ):
        """``stages[i]`` is the list of blocks of stage ``res{i+2}``; stages past the last requested
        output are not built. ``freeze_at``: 1 freezes the stem, 2 also res2, ... (detectron2's FREEZE_AT)."""
        super().__init__()
        self.stem = stem
        current_stride = stem.stride
        self._out_feature_strides = {"stem": current_stride}
        self._out_feature_channels = {"stem": stem.out_channels}

        if out_features is not None:
            num_stages = max(_STAGE_INDEX.get(name, 0) for name in out_features)
            stages = stages[:num_stages]
        stage_names, stage_modules = [], []
        for index, blocks in enumerate(stages):
            for block in blocks:
                if not isinstance(block, CNNBlockBase):
                    raise TypeError(f"ResNet stage res{index + 2}: block {type(block).__name__} is not a CNNBlockBase")
            name = f"res{index + 2}"
            stage = nn.Sequential(*blocks)
            self.add_module(name, stage)
            stage_names.append(name)
            stage_modules.append(stage)
            current_stride = int(current_stride * np.prod([block.stride for block in blocks]))
            self._out_feature_strides[name] = current_stride
            self._out_feature_channels[name] = blocks[-1].out_channels
        self.stage_names = tuple(stage_names)
        # a plain list (not a ModuleList) so state-dict keys stay "res2.0.conv1.weight" as detectron2
        self.stages = stage_modules

        if out_features is None:
            out_features = [self.stage_names[-1]] if self.stage_names else ["stem"]
        children = [name for name, _ in self.named_children()]
        for name in out_features:
            if name not in children:
                raise ValueError(f"ResNet out_features: '{name}' is not available (choose from: {', '.join(children)})")
        self._out_features = list(out_features)
        self.freeze(freeze_at)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"ResNet takes Tensor[N, C, H, W], got shape {tuple(x.shape)}")
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name, stage in zip(self.stage_names, self.stages):
            x = stage(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def freeze(self, freeze_at: int = 0) -> "ResNet":
        """Freeze the stem when ``freeze_at >= 1`` and stage ``res{k}`` when ``freeze_at >= k``:
        no gradients and BatchNorm -> FrozenBatchNorm2d."""
        if freeze_at >= 1:
            self.stem.freeze()
        for index, stage in enumerate(self.stages, start=2):
            if freeze_at >= index:
                for block in stage.children():
                    block.freeze()
        return self

    @staticmethod
    def make_stage(block_class: type, num_blocks: int, *, in_channels: int, out_channels: int, **kwargs: Any) -> List[CNNBlockBase]:
        """``num_blocks`` blocks; a kwarg ``foo_per_block`` (a list of length ``num_blocks``) gives block i
        ``foo=foo_per_block[i]``, other kwargs go to every block."""
        blocks = []
        for index in range(num_blocks):
            block_kwargs = {}
            for key, value in kwargs.items():
                if key.endswith("_per_block"):
                    if len(value) != num_blocks:
                        raise ValueError(f"make_stage: {key} has {len(value)} values for {num_blocks} blocks")
                    block_kwargs[key[: -len("_per_block")]] = value[index]
                else:
                    block_kwargs[key] = value
            blocks.append(block_class(in_channels=in_channels, out_channels=out_channels, **block_kwargs))
            in_channels = out_channels
        return blocks


def build_resnet(
    depth: int = 50,
    *,
    in_channels: int = 3,
    norm: str = "FrozenBN",
    stem_out_channels: int = 64,
    res2_out_channels: int = 256,
    num_groups: int = 1,
    width_per_group: int = 64,
    stride_in_1x1: bool = True,
    res5_dilation: int = 1,
    out_features: Sequence[str] = ("res4",),
    freeze_at: int = 0,
    deform_on_per_stage: Sequence[bool] = (False, False, False, False),
    deform_modulated: bool = False,
    deform_num_groups: int = 1,
) -> ResNet:
    """A ResNet-``depth`` (18, 34: BasicBlock; 50, 101, 152: BottleneckBlock) from plain arguments,
    each one detectron2's ``MODEL.RESNETS.*`` key of the same name."""
    if depth not in _NUM_BLOCKS_PER_STAGE:
        raise UserError(f"unknown MODEL.RESNETS.DEPTH {depth} (choose from: {', '.join(map(str, _NUM_BLOCKS_PER_STAGE))})")
    if len(deform_on_per_stage) != 4:
        raise UserError(f"MODEL.RESNETS.DEFORM_ON_PER_STAGE must have 4 values (res2..res5), got "
                        f"{list(deform_on_per_stage)}")
    if isinstance(deform_num_groups, bool) or not isinstance(deform_num_groups, int) or deform_num_groups < 1:
        raise UserError(f"MODEL.RESNETS.DEFORM_NUM_GROUPS must be a positive int, got {deform_num_groups!r}")
    if res5_dilation not in (1, 2):
        raise UserError(f"MODEL.RESNETS.RES5_DILATION must be 1 or 2, got {res5_dilation}")
    if depth in (18, 34):
        if res2_out_channels != 64:
            raise UserError(f"MODEL.RESNETS.RES2_OUT_CHANNELS must be 64 for R{depth}, got {res2_out_channels}")
        if res5_dilation != 1:
            raise UserError(f"MODEL.RESNETS.RES5_DILATION must be 1 for R{depth}, got {res5_dilation}")
        if num_groups != 1:
            raise UserError(f"MODEL.RESNETS.NUM_GROUPS must be 1 for R{depth}, got {num_groups}")
        if any(deform_on_per_stage):
            raise UserError(f"MODEL.RESNETS.DEFORM_ON_PER_STAGE={list(deform_on_per_stage)}: deformable blocks "
                            f"are bottlenecks, unsupported for R{depth}")

    stem = BasicStem(in_channels=in_channels, out_channels=stem_out_channels, norm=norm)
    num_blocks_per_stage = _NUM_BLOCKS_PER_STAGE[depth]
    bottleneck_channels = num_groups * width_per_group
    stage_in_channels, out_channels = stem_out_channels, res2_out_channels
    stages = []
    for index, stage_index in enumerate(range(2, 6)):
        # res5 dilation replaces its stride, the R-FCN / deformable-conv convention
        dilation = res5_dilation if stage_index == 5 else 1
        first_stride = 1 if index == 0 or (stage_index == 5 and dilation == 2) else 2
        num_blocks = num_blocks_per_stage[index]
        stage_kwargs: Dict[str, Any] = {
            "num_blocks": num_blocks,
            "stride_per_block": [first_stride] + [1] * (num_blocks - 1),
            "in_channels": stage_in_channels,
            "out_channels": out_channels,
            "norm": norm,
        }
        if depth in (18, 34):
            stage_kwargs["block_class"] = BasicBlock
        else:
            stage_kwargs.update(
                block_class=BottleneckBlock,
                bottleneck_channels=bottleneck_channels,
                stride_in_1x1=stride_in_1x1,
                dilation=dilation,
                num_groups=num_groups,
            )
            if deform_on_per_stage[index]:
                if bottleneck_channels % deform_num_groups != 0:
                    raise UserError(f"MODEL.RESNETS.DEFORM_NUM_GROUPS {deform_num_groups} does not divide res"
                                    f"{stage_index}'s {bottleneck_channels} bottleneck channels")
                stage_kwargs.update(block_class=DeformBottleneckBlock, deform_modulated=bool(deform_modulated),
                                    deform_num_groups=deform_num_groups)
        stages.append(ResNet.make_stage(**stage_kwargs))
        stage_in_channels = out_channels
        out_channels *= 2
        bottleneck_channels *= 2
    return ResNet(stem, stages, out_features=out_features, freeze_at=freeze_at)


def resnet_args_from_config(cfg: Any, input_shape: ShapeSpec) -> Dict[str, Any]:
    """The keyword arguments of ``build_resnet`` read from ``cfg.MODEL.RESNETS`` / ``cfg.MODEL.BACKBONE``."""
    resnets = cfg.MODEL.RESNETS
    return {
        "depth": resnets.DEPTH,
        "in_channels": input_shape.channels,
        "norm": resnets.NORM,
        "stem_out_channels": resnets.STEM_OUT_CHANNELS,
        "res2_out_channels": resnets.RES2_OUT_CHANNELS,
        "num_groups": resnets.NUM_GROUPS,
        "width_per_group": resnets.WIDTH_PER_GROUP,
        "stride_in_1x1": resnets.STRIDE_IN_1X1,
        "res5_dilation": resnets.RES5_DILATION,
        "out_features": list(resnets.OUT_FEATURES),
        "freeze_at": cfg.MODEL.BACKBONE.FREEZE_AT,
        "deform_on_per_stage": list(resnets.DEFORM_ON_PER_STAGE),
        "deform_modulated": resnets.DEFORM_MODULATED,
        "deform_num_groups": resnets.DEFORM_NUM_GROUPS,
    }


def build_resnet_backbone(cfg: Any, input_shape: ShapeSpec) -> ResNet:
    """``MODEL.BACKBONE.NAME: build_resnet_backbone``: the ResNet the config describes."""
    return build_resnet(**resnet_args_from_config(cfg, input_shape))
