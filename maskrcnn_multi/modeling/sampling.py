"""Balanced sampling of positive / negative labels (detectron2's ``subsample_labels``)."""
from typing import Tuple

import torch

from maskrcnn_multi.config.errors import UserError

__all__ = ["subsample_labels"]


def subsample_labels(
    labels: torch.Tensor, num_samples: int, positive_fraction: float, bg_label: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Draw at most ``num_samples`` labels, at most ``positive_fraction`` of them foreground, at random.

    Args:
        labels: LongTensor[N]: -1 ignore, ``bg_label`` background, anything else foreground.
        num_samples: total number of samples to return.
        positive_fraction: the largest share of foreground; the rest is filled with background.
        bg_label: the background label.
    Returns:
        pos_idx, neg_idx: LongTensors of indices into ``labels`` (at most num_samples together).
    """
    if not 0.0 <= positive_fraction <= 1.0:
        raise UserError(f"subsample_labels: positive_fraction must be in [0, 1], got {positive_fraction}")
    positive = torch.nonzero((labels != -1) & (labels != bg_label), as_tuple=True)[0]
    negative = torch.nonzero(labels == bg_label, as_tuple=True)[0]

    num_pos = min(positive.numel(), int(num_samples * positive_fraction))
    num_neg = min(negative.numel(), num_samples - num_pos)

    perm_pos = torch.randperm(positive.numel(), device=positive.device)[:num_pos]
    perm_neg = torch.randperm(negative.numel(), device=negative.device)[:num_neg]
    return positive[perm_pos], negative[perm_neg]
