"""Backbones: ResNet (detectron2's parameter names) and FPN, built from plain arguments or a config."""
from .backbone import Backbone
from .build import BACKBONE_BUILDERS, BACKBONE_REGISTRY, build_backbone
from .fpn import FPN, LastLevelMaxPool, build_resnet_fpn_backbone, fpn_args_from_config
from .resnet import ResNet, build_resnet, build_resnet_backbone, resnet_args_from_config
from .resnet_blocks import BasicBlock, BasicStem, BottleneckBlock, CNNBlockBase, DeformBottleneckBlock

__all__ = [
    "Backbone",
    "BACKBONE_BUILDERS",
    "BACKBONE_REGISTRY",
    "build_backbone",
    "FPN",
    "LastLevelMaxPool",
    "build_resnet_fpn_backbone",
    "fpn_args_from_config",
    "ResNet",
    "build_resnet",
    "build_resnet_backbone",
    "resnet_args_from_config",
    "BasicBlock",
    "BasicStem",
    "BottleneckBlock",
    "CNNBlockBase",
    "DeformBottleneckBlock",
]
