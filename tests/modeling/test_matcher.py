"""Matcher: thresholds, labels and low-quality matches."""
import pytest
import torch

from maskrcnn_multi.modeling.matcher import Matcher


def test_rpn_rule_with_low_quality_matches():
    iou = torch.tensor([[0.1, 0.5, 0.8, 0.2], [0.05, 0.6, 0.3, 0.25]])
    matcher = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    matches, labels = matcher(iou)
    assert matches.tolist() == [0, 1, 0, 1]
    # column 1 is only "ignore" by threshold, but it is gt 1's best match
    assert labels.tolist() == [0, 1, 1, 0]
    assert labels.dtype == torch.int8


def test_roi_rule_without_low_quality_matches():
    iou = torch.tensor([[0.1, 0.5, 0.8, 0.2], [0.05, 0.6, 0.3, 0.25]])
    _, labels = Matcher([0.5], [0, 1])(iou)
    assert labels.tolist() == [0, 1, 1, 0]
    _, labels = Matcher([0.3, 0.7], [0, -1, 1])(iou)
    assert labels.tolist() == [0, -1, 1, 0]


def test_no_ground_truth_gives_first_label():
    matches, labels = Matcher([0.3, 0.7], [0, -1, 1])(torch.zeros(0, 5))
    assert matches.tolist() == [0] * 5
    assert labels.tolist() == [0] * 5


def test_bad_arguments_name_the_culprit():
    with pytest.raises(ValueError, match="labels"):
        Matcher([0.3, 0.7], [0, 1])
    with pytest.raises(ValueError, match="increasing"):
        Matcher([0.7, 0.3], [0, -1, 1])
