"""Meta-architectures and ``build_model``."""
from .build import META_ARCHITECTURES, build_model
from .rcnn import GeneralizedRCNN, ProposalNetwork

__all__ = ["META_ARCHITECTURES", "build_model", "GeneralizedRCNN", "ProposalNetwork"]
