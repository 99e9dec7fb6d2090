"""Meta-architectures and ``build_model``."""
from .build import META_ARCH_REGISTRY, META_ARCHITECTURES, build_model
from .rcnn import GeneralizedRCNN, ProposalNetwork

__all__ = ["META_ARCHITECTURES", "META_ARCH_REGISTRY", "build_model", "GeneralizedRCNN", "ProposalNetwork"]
