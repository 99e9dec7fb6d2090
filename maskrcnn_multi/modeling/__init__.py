"""The network, split by concept as detectron2 (docs/ARCHITECTURE.md); parameter names equal detectron2's.

``build_model(cfg)`` builds the meta-architecture named by MODEL.META_ARCHITECTURE and moves it to
MODEL.DEVICE. Each component is also usable alone: constructors take plain arguments and a separate
``from_config(cfg, ...)`` classmethod reads the config.
"""
from .anchor_generator import ANCHOR_GENERATOR_REGISTRY, DefaultAnchorGenerator, build_anchor_generator
from .backbone import BACKBONE_REGISTRY
from .box_regression import Box2BoxTransform
from .matcher import Matcher
from .meta_arch import META_ARCH_REGISTRY, META_ARCHITECTURES, GeneralizedRCNN, ProposalNetwork, build_model
from .poolers import ROIPooler
from .postprocessing import detector_postprocess
from .proposal_generator import (
    PROPOSAL_GENERATOR_REGISTRY,
    RPN,
    RPN_HEAD_REGISTRY,
    StandardRPNHead,
    build_proposal_generator,
)
from .roi_heads import (
    ROI_BOX_HEAD_REGISTRY,
    ROI_HEADS_REGISTRY,
    ROI_MASK_HEAD_REGISTRY,
    CascadeROIHeads,
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
    # detectron2's registry names (each is our table for that config key, e.g. ROI_HEADS_REGISTRY is
    # roi_heads.ROI_HEADS): decorate a class with @ROI_HEADS_REGISTRY.register() and name it in the config
    "BACKBONE_REGISTRY", "META_ARCH_REGISTRY", "PROPOSAL_GENERATOR_REGISTRY", "RPN_HEAD_REGISTRY",
    "ANCHOR_GENERATOR_REGISTRY", "ROI_HEADS_REGISTRY", "ROI_BOX_HEAD_REGISTRY", "ROI_MASK_HEAD_REGISTRY",
    "build_model", "META_ARCHITECTURES", "GeneralizedRCNN", "ProposalNetwork",
    "DefaultAnchorGenerator", "build_anchor_generator", "Box2BoxTransform", "Matcher", "subsample_labels",
    "ROIPooler", "detector_postprocess", "RPN", "StandardRPNHead", "build_proposal_generator",
    "ROIHeads", "StandardROIHeads", "Res5ROIHeads", "CascadeROIHeads", "build_roi_heads", "FastRCNNConvFCHead",
    "FastRCNNOutputLayers",
    "MaskRCNNConvUpsampleHead",
]
