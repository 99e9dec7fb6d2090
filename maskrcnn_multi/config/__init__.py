"""Configuration: detectron2's yacs config tree with the Ascend ModelZoo keys.

    cfg = get_cfg()                      # a fresh copy of the defaults
    cfg.merge_from_file("configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml")
    cfg.merge_from_list(["MODEL.DEVICE", "npu:0", "AMP", "1", "OPT_LEVEL", "O2"])

This package imports neither torch nor any other layer (it is the leftmost one), so that
`backends` can set up the environment before torch is imported.
"""
from .amp import AmpSettings, amp_settings
from .config import CfgNode
from .configurable import configurable
from .defaults import get_cfg
from .errors import ConfigError, UserError

__all__ = ["AmpSettings", "CfgNode", "ConfigError", "UserError", "amp_settings", "configurable", "get_cfg"]
