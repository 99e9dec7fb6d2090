"""detectron2 keys our config tree holds so that detectron2's YAMLs and config dumps load, but that
ask for something this library does not build. Each is listed with the reason.

A file or command line that sets one of them to anything but detectron2's default is refused with
one line (`check_refused`, run on every merged value), so a config never trains differently without
a word; a full dump that carries the default loads unchanged. Every other key of the defaults is read
by the code (``tests/config/test_every_key_acts.py`` walks them all).
"""
from typing import Any, Dict, Optional

from .errors import ConfigError, short_repr

_KEYPOINTS = "keypoint R-CNN is not built here (Faster / Mask R-CNN family only)"
_SEMANTIC = "semantic and panoptic segmentation (SemanticSegmentor, PanopticFPN) are not built here"
_PROPOSAL_FILES = "precomputed proposals (Fast R-CNN on proposal files) are not supported: run an RPN"
_FEDERATED = "the sigmoid / federated classification losses of detectron2's LVIS recipes are not built here"

# key, or a node ending in "." for every key under it -> reason
REFUSED: Dict[str, str] = {
    "MODEL.KEYPOINT_ON": _KEYPOINTS,
    "MODEL.ROI_KEYPOINT_HEAD.": _KEYPOINTS,
    "TEST.KEYPOINT_OKS_SIGMAS": _KEYPOINTS,
    "MODEL.SEM_SEG_HEAD.": _SEMANTIC,
    "MODEL.PANOPTIC_FPN.": _SEMANTIC,
    "MODEL.RETINANET.": "RetinaNet is not built here (two-stage R-CNN models only)",
    "MODEL.ANCHOR_GENERATOR.ANGLES": "rotated anchors (RotatedAnchorGenerator, rotated R-CNN) are not built here",
    "MODEL.LOAD_PROPOSALS": _PROPOSAL_FILES,
    "DATASETS.PROPOSAL_FILES_TRAIN": _PROPOSAL_FILES,
    "DATASETS.PROPOSAL_FILES_TEST": _PROPOSAL_FILES,
    "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN": _PROPOSAL_FILES,
    "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST": _PROPOSAL_FILES,
    "MODEL.ROI_BOX_HEAD.USE_FED_LOSS": _FEDERATED,
    "MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE": _FEDERATED,
    "MODEL.ROI_BOX_HEAD.FED_LOSS_FREQ_WEIGHT_POWER": _FEDERATED,
    "MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES": _FEDERATED,
    "VIS_PERIOD": "training visualizations (detectron2 draws proposals into TensorBoard) are not written here",
}

# keys detectron2 itself reads nowhere: accepted with any value, acted on by nobody
INERT: Dict[str, str] = {
    "GLOBAL.HACK": "detectron2 reads it nowhere either (a placeholder kept for old configs)",
}


def refusal_reason(full_key: str) -> Optional[str]:
    """The reason `full_key` is refused, or None."""
    for key, reason in REFUSED.items():
        if full_key == key or (key.endswith(".") and full_key.startswith(key)):
            return reason
    return None


def _default_of(full_key: str) -> Any:
    from .defaults import get_cfg  # the defaults import this module's package: import late

    node: Any = get_cfg()
    for part in full_key.split("."):
        node = node[part]
    return node


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return len(value) == len(default) and all(_same(v, d) for v, d in zip(value, default))
    return isinstance(value, bool) == isinstance(default, bool) and value == default


def check_refused(full_key: str, value: Any, source: str) -> None:
    """ConfigError (one line) when `value` sets a refused key to anything but its default."""
    reason = refusal_reason(full_key)
    if reason is None or _same(value, _default_of(full_key)):
        return
    raise ConfigError(f"config key '{full_key}' in {source} = {short_repr(value)} is not supported: {reason}")
