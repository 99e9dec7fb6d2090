"""The network, split by concept as detectron2 (docs/ARCHITECTURE.md); parameter names equal detectron2's.

``build_model(cfg)`` builds the meta-architecture named by MODEL.META_ARCHITECTURE and moves it to
MODEL.DEVICE. Each component is also usable alone: constructors take plain arguments and a separate
``from_config(cfg, ...)`` classmethod reads the config.
"""
from .anchor_generator import DefaultAnchorGenerator, build_anchor_generator
from .box_regression import Box2BoxTransform
from .matcher import Matcher
from .meta_arch import META_ARCHITECTURES, GeneralizedRCNN, ProposalNetwork, build_model
from .poolers import ROIPooler
from .postprocessing import detector_postprocess
from .proposal_generator import RPN, StandardRPNHead, build_proposal_generator
from .roi_heads import (
    FastRCNNConvFCHead,
    FastRCNNOutputLayers,
    MaskRCNNConvUpsampleHead,
    Res5ROIHeads,
    ROIHeads,
    StandardROIHeads,
    build_roi_heads,
)
from .sampling import subsample_labels

__all__ = [
    "build_model", "META_ARCHITECTURES", "GeneralizedRCNN", "ProposalNetwork",
    "DefaultAnchorGenerator", "build_anchor_generator", "Box2BoxTransform", "Matcher", "subsample_labels",
    "ROIPooler", "detector_postprocess", "RPN", "StandardRPNHead", "build_proposal_generator",
    "ROIHeads", "StandardROIHeads", "Res5ROIHeads", "build_roi_heads", "FastRCNNConvFCHead", "FastRCNNOutputLayers",
    "MaskRCNNConvUpsampleHead",
]
