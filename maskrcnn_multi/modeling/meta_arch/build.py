"""``build_model``: the meta-architecture named by MODEL.META_ARCHITECTURE, on MODEL.DEVICE."""
import logging

import torch
from torch import nn

from ...config.errors import UserError
from .rcnn import GeneralizedRCNN, ProposalNetwork

__all__ = ["META_ARCHITECTURES", "build_model"]

logger = logging.getLogger(__name__)

META_ARCHITECTURES = {"GeneralizedRCNN": GeneralizedRCNN, "ProposalNetwork": ProposalNetwork}


def build_model(cfg) -> nn.Module:
    """Build the whole model from ``cfg`` and move it to ``torch.device(cfg.MODEL.DEVICE)``.

    Weights are not loaded here: use ``DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)``.
    """
    name = cfg.MODEL.META_ARCHITECTURE
    if name not in META_ARCHITECTURES:
        raise UserError(f"unknown MODEL.META_ARCHITECTURE '{name}' (choose from: {', '.join(META_ARCHITECTURES)})")
    arch_class = META_ARCHITECTURES[name]
    model = arch_class(**arch_class.from_config(cfg))
    # the device string comes from the config; this module never spells one
    model.to(torch.device(cfg.MODEL.DEVICE))
    logger.info("Model:\n%s", model)
    return model
