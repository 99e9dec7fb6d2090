"""find_top_rpn_proposals (detectron2's selection) and ground truth appended to proposals."""
import torch

from maskrcnn_multi.modeling.proposal_generator.proposal_utils import (
    add_ground_truth_to_proposals,
    find_top_rpn_proposals,
)
from maskrcnn_multi.structures import Boxes, Instances


def test_nms_is_per_level_and_topk_per_image():
    same_box = [10.0, 10.0, 50.0, 50.0]
    # level 0: two identical boxes (one suppressed); level 1: the same box again (kept: other level)
    proposals = [torch.tensor([[same_box, same_box, [0.0, 0.0, 5.0, 5.0]]]), torch.tensor([[same_box]])]
    logits = [torch.tensor([[3.0, 2.0, 1.0]]), torch.tensor([[2.5]])]
    (result,) = find_top_rpn_proposals(proposals, logits, [(100, 100)], nms_thresh=0.7, pre_nms_topk=10,
                                       post_nms_topk=10, min_box_size=0.0, training=False)
    assert result.objectness_logits.tolist() == [3.0, 2.5, 1.0]
    (result,) = find_top_rpn_proposals(proposals, logits, [(100, 100)], 0.7, 10, post_nms_topk=2,
                                       min_box_size=0.0, training=False)
    assert result.objectness_logits.tolist() == [3.0, 2.5]


def test_pre_nms_topk_is_per_level_and_small_or_outside_boxes_drop():
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0], [60.0, 60.0, 62.0, 61.0],
                           [200.0, 200.0, 300.0, 300.0]]])
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    (result,) = find_top_rpn_proposals([boxes], [logits], [(100, 100)], 0.7, pre_nms_topk=3, post_nms_topk=10,
                                       min_box_size=1.5, training=False)
    # top-3 are 4.0, 3.0, 2.0; 3.0 is 2x1 (< 1.5 high); 2.0 clips to an empty box
    assert result.objectness_logits.tolist() == [4.0]
    torch.testing.assert_close(result.proposal_boxes.tensor, torch.tensor([[20.0, 20.0, 40.0, 40.0]]))


def test_non_finite_proposals_are_dropped_at_test_time():
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [float("nan"), 0.0, 5.0, 5.0]]])
    logits = torch.tensor([[1.0, 2.0]])
    (result,) = find_top_rpn_proposals([boxes], [logits], [(100, 100)], 0.7, 10, 10, 0.0, training=False)
    assert result.objectness_logits.tolist() == [1.0]


def test_ground_truth_is_appended_with_high_logit():
    proposals = Instances((50, 50))
    proposals.proposal_boxes = Boxes(torch.tensor([[0.0, 0.0, 5.0, 5.0]]))
    proposals.objectness_logits = torch.tensor([0.3])
    targets = Instances((50, 50))
    targets.gt_boxes = Boxes(torch.tensor([[1.0, 1.0, 9.0, 9.0], [2.0, 2.0, 4.0, 4.0]]))
    targets.gt_classes = torch.tensor([2, 0])
    (merged,) = add_ground_truth_to_proposals([targets], [proposals])
    assert len(merged) == 3
    torch.testing.assert_close(merged.proposal_boxes.tensor[1:], targets.gt_boxes.tensor)
    assert (merged.objectness_logits[1:] > 20).all()
