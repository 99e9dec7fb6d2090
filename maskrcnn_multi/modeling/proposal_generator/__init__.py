"""Proposal generators, chosen by MODEL.PROPOSAL_GENERATOR.NAME."""
from typing import Dict

from torch import nn

from maskrcnn_multi.config.errors import UserError
from maskrcnn_multi.modeling.layers import ShapeSpec

from .proposal_utils import add_ground_truth_to_proposals, find_top_rpn_proposals
from .rpn import RPN, RPN_HEADS, StandardRPNHead, build_rpn_head

__all__ = ["PROPOSAL_GENERATORS", "build_proposal_generator", "RPN", "StandardRPNHead", "RPN_HEADS",
           "build_rpn_head", "find_top_rpn_proposals", "add_ground_truth_to_proposals"]

PROPOSAL_GENERATORS = {"RPN": RPN}


def build_proposal_generator(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """The proposal generator named by MODEL.PROPOSAL_GENERATOR.NAME ("PrecomputedProposals": None)."""
    name = cfg.MODEL.PROPOSAL_GENERATOR.NAME
    if name == "PrecomputedProposals":
        return None
    if name not in PROPOSAL_GENERATORS:
        raise UserError(f"unknown MODEL.PROPOSAL_GENERATOR.NAME '{name}' "
                         f"(choose from: {', '.join(PROPOSAL_GENERATORS)}, PrecomputedProposals)")
    generator_class = PROPOSAL_GENERATORS[name]
    return generator_class(**generator_class.from_config(cfg, input_shape))
