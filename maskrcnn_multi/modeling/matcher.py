"""Assign each prediction (anchor / proposal) to a ground-truth box by IoU (detectron2's ``Matcher``)."""
import math
from typing import List, Sequence, Tuple

import torch

from maskrcnn_multi.config.errors import UserError

__all__ = ["Matcher"]


class Matcher:
    """Match every column (prediction) of an IoU matrix to its best row (ground truth) and label it.

    With thresholds ``[t1, t2]`` and labels ``[l0, l1, l2]``: best IoU in ``[-inf, t1)`` gets ``l0``,
    ``[t1, t2)`` gets ``l1`` and ``[t2, inf)`` gets ``l2``. Labels are 1 (positive), 0 (negative) or
    -1 (ignore).

    Args:
        thresholds: increasing IoU thresholds.
        labels: one more label than thresholds, each in {-1, 0, 1}.
        allow_low_quality_matches: also mark positive every prediction that is the best match of some
            ground truth (ties included), even under the highest threshold (RPN's rule).
    """

    def __init__(self, thresholds: Sequence[float], labels: Sequence[int], allow_low_quality_matches: bool = False):
        thresholds = list(thresholds)
        if any(low > high for low, high in zip(thresholds[:-1], thresholds[1:])):
            raise UserError(f"Matcher: thresholds must be increasing, got {thresholds}")
        if thresholds and thresholds[0] <= 0:
            raise UserError(f"Matcher: thresholds must be positive, got {thresholds}")
        if any(label not in (-1, 0, 1) for label in labels):
            raise UserError(f"Matcher: labels must be in (-1, 0, 1), got {list(labels)}")
        if len(labels) != len(thresholds) + 1:
            raise UserError(f"Matcher: needs len(thresholds) + 1 labels, got thresholds {thresholds} "
                             f"and labels {list(labels)}")
        self.thresholds: List[float] = [-math.inf] + thresholds + [math.inf]
        self.labels: List[int] = list(labels)
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Match.

        Args:
            match_quality_matrix: Tensor[M, N], IoU of M ground truths with N predictions.
        Returns:
            matches: LongTensor[N], index in [0, M) of each prediction's best ground truth.
            match_labels: Int8Tensor[N], its label in {-1, 0, 1}.
        """
        if match_quality_matrix.dim() != 2:
            raise ValueError(f"Matcher: match_quality_matrix must be 2-d, got shape {tuple(match_quality_matrix.shape)}")
        num_predictions = match_quality_matrix.shape[1]
        if match_quality_matrix.numel() == 0:
            matches = match_quality_matrix.new_full((num_predictions,), 0, dtype=torch.int64)
            match_labels = match_quality_matrix.new_full((num_predictions,), self.labels[0], dtype=torch.int8)
            return matches, match_labels

        matched_vals, matches = match_quality_matrix.max(dim=0)
        match_labels = matches.new_full(matches.size(), 1, dtype=torch.int8)
        for label, low, high in zip(self.labels, self.thresholds[:-1], self.thresholds[1:]):
            in_range = (matched_vals >= low) & (matched_vals < high)
            match_labels[in_range] = label

        if self.allow_low_quality_matches:
            self._set_low_quality_matches(match_labels, match_quality_matrix)
        return matches, match_labels

    @staticmethod
    def _set_low_quality_matches(match_labels: torch.Tensor, match_quality_matrix: torch.Tensor) -> None:
        """Label 1 every prediction whose IoU equals some ground truth's best IoU (Faster R-CNN's rule)."""
        highest_quality_per_gt, _ = match_quality_matrix.max(dim=1)
        is_best = (match_quality_matrix == highest_quality_per_gt[:, None]).any(dim=0)
        # a where() instead of nonzero(): no host sync, same result
        match_labels.copy_(torch.where(is_best, torch.ones_like(match_labels), match_labels))
