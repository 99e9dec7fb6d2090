"""``build_model``: the meta-architecture named by MODEL.META_ARCHITECTURE, on MODEL.DEVICE."""
import logging

import torch
from torch import nn

from ..registry import Registry
from .rcnn import GeneralizedRCNN, ProposalNetwork

__all__ = ["META_ARCHITECTURES", "META_ARCH_REGISTRY", "build_model"]

logger = logging.getLogger(__name__)

META_ARCHITECTURES = Registry("MODEL.META_ARCHITECTURE", GeneralizedRCNN, ProposalNetwork)
META_ARCH_REGISTRY = META_ARCHITECTURES  # detectron2's name for the table


def build_model(cfg) -> nn.Module:
    """Build the whole model from ``cfg`` and move it to ``torch.device(cfg.MODEL.DEVICE)``.

    Weights are not loaded here: use ``DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)``.
    """
    model = META_ARCHITECTURES.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    # the device string comes from the config; this module never spells one
    model.to(torch.device(cfg.MODEL.DEVICE))
    logger.info("Model:\n%s", model)
    return model
