"""Selecting RPN proposals, and adding the ground truth to them (detectron2's ``proposal_utils``)."""
import math
from typing import List, Tuple

import torch

from maskrcnn_multi.ops import batched_nms
from maskrcnn_multi.structures import Boxes, Instances

__all__ = ["find_top_rpn_proposals", "add_ground_truth_to_proposals"]


def find_top_rpn_proposals(
    proposals: List[torch.Tensor],
    pred_objectness_logits: List[torch.Tensor],
    image_sizes: List[Tuple[int, int]],
    nms_thresh: float,
    pre_nms_topk: int,
    post_nms_topk: int,
    min_box_size: float,
    training: bool,
) -> List[Instances]:
    """Per level keep the ``pre_nms_topk`` best proposals; per image clip, drop boxes smaller than
    ``min_box_size``, run NMS within each level (batched over levels) and keep the ``post_nms_topk`` best.

    Args:
        proposals: L tensors, level l is Tensor[N, Hl*Wl*A, 4] (decoded boxes).
        pred_objectness_logits: L tensors, level l is Tensor[N, Hl*Wl*A].
        image_sizes: N (h, w) of the unpadded inputs.
        training: non-finite boxes or scores raise in training and are dropped at test time.
    Returns:
        N Instances with ``proposal_boxes`` (Boxes) and ``objectness_logits`` (Tensor[R]),
        sorted by decreasing logit.
    """
    num_images = len(image_sizes)
    device = proposals[0].device
    batch_index = torch.arange(num_images, device=device)

    topk_scores, topk_proposals, level_ids = [], [], []
    for level_id, (proposals_l, logits_l) in enumerate(zip(proposals, pred_objectness_logits)):
        num_proposals_l = min(logits_l.shape[1], pre_nms_topk)
        scores_l, topk_index = logits_l.topk(num_proposals_l, dim=1)
        topk_proposals.append(proposals_l[batch_index[:, None], topk_index])  # N x topk x 4
        topk_scores.append(scores_l)
        level_ids.append(torch.full((num_proposals_l,), level_id, dtype=torch.int64, device=device))

    topk_scores = torch.cat(topk_scores, dim=1)
    topk_proposals = torch.cat(topk_proposals, dim=1)
    level_ids = torch.cat(level_ids, dim=0)

    results = []
    for image_index, image_size in enumerate(image_sizes):
        boxes = Boxes(topk_proposals[image_index])
        scores = topk_scores[image_index]
        levels = level_ids

        valid = torch.isfinite(boxes.tensor).all(dim=1) & torch.isfinite(scores)
        if training and not bool(valid.all()):
            raise FloatingPointError("RPN: predicted boxes or scores contain Inf/NaN; training has diverged")
        boxes = Boxes(_clip(boxes.tensor, image_size))
        # one mask for non-finite and too-small boxes: a single indexing, the same result as detectron2's two
        keep = valid & boxes.nonempty(threshold=min_box_size)
        boxes, scores, levels = boxes[keep], scores[keep], levels[keep]

        keep = batched_nms(boxes.tensor, scores, levels, nms_thresh)
        # detectron2 takes the top-k per image in training as well (Detectron1 took it per batch)
        keep = keep[:post_nms_topk]

        result = Instances(image_size)
        result.proposal_boxes = boxes[keep]
        result.objectness_logits = scores[keep]
        results.append(result)
    return results


def _clip(boxes: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
    """Boxes.clip without its finiteness check (a host sync): non-finite rows are masked out anyway."""
    height, width = image_size
    return torch.stack((boxes[:, 0].clamp(min=0, max=width), boxes[:, 1].clamp(min=0, max=height),
                        boxes[:, 2].clamp(min=0, max=width), boxes[:, 3].clamp(min=0, max=height)), dim=-1)


def add_ground_truth_to_proposals(targets: List[Instances], proposals: List[Instances]) -> List[Instances]:
    """Append each image's ``gt_boxes`` to its proposals, with a logit meaning P(object) ~= 1.

    Returns N Instances: proposals first, then the ground truth (whose other ``gt_*`` fields ride along).
    """
    if len(proposals) != len(targets):
        raise ValueError(f"add_ground_truth_to_proposals: {len(targets)} targets for {len(proposals)} images")
    return [_add_ground_truth_single(gt, props) for gt, props in zip(targets, proposals)]


def _add_ground_truth_single(targets: Instances, proposals: Instances) -> Instances:
    gt_boxes = targets.gt_boxes
    logits = proposals.objectness_logits
    gt_logit_value = math.log((1.0 - 1e-10) / (1 - (1.0 - 1e-10)))
    gt_logits = torch.full((len(gt_boxes),), gt_logit_value, dtype=logits.dtype, device=logits.device)

    gt_proposals = Instances(proposals.image_size, **targets.get_fields())
    gt_proposals.proposal_boxes = gt_boxes
    gt_proposals.objectness_logits = gt_logits
    for name in proposals.get_fields():
        if not gt_proposals.has(name):
            raise ValueError(f"add_ground_truth_to_proposals: proposals have field '{name}' the targets lack")
    return Instances.cat([proposals, gt_proposals])
