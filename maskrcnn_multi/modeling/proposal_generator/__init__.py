"""Proposal generators, chosen by MODEL.PROPOSAL_GENERATOR.NAME."""
from typing import Dict

from torch import nn

from maskrcnn_multi.modeling.layers import ShapeSpec
from maskrcnn_multi.modeling.registry import Registry

from .proposal_utils import add_ground_truth_to_proposals, find_top_rpn_proposals
from .rpn import RPN, RPN_HEAD_REGISTRY, RPN_HEADS, StandardRPNHead, build_rpn_head

__all__ = ["PROPOSAL_GENERATORS", "PROPOSAL_GENERATOR_REGISTRY", "build_proposal_generator", "RPN", "StandardRPNHead",
           "RPN_HEADS", "RPN_HEAD_REGISTRY",
           "build_rpn_head", "find_top_rpn_proposals", "add_ground_truth_to_proposals"]

PROPOSAL_GENERATORS = Registry("MODEL.PROPOSAL_GENERATOR.NAME", RPN)
PROPOSAL_GENERATOR_REGISTRY = PROPOSAL_GENERATORS  # detectron2's name for the table
# proposals come with the inputs (detectron2's name): there is no generator to build
PROPOSAL_GENERATORS.register(lambda cfg, input_shape: None, name="PrecomputedProposals")


def build_proposal_generator(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """The proposal generator named by MODEL.PROPOSAL_GENERATOR.NAME ("PrecomputedProposals": None)."""
    return PROPOSAL_GENERATORS.get(cfg.MODEL.PROPOSAL_GENERATOR.NAME)(cfg, input_shape)
