"""subsample_labels: the balanced sampler."""
import torch

from maskrcnn_multi.modeling.sampling import subsample_labels


def test_positive_fraction_is_respected():
    labels = torch.cat([torch.ones(10, dtype=torch.int64), torch.zeros(100, dtype=torch.int64),
                        torch.full((5,), -1, dtype=torch.int64)])
    pos, neg = subsample_labels(labels, num_samples=16, positive_fraction=0.25, bg_label=0)
    assert len(pos) == 4 and len(neg) == 12
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all()
    assert len(set(pos.tolist())) == 4 and len(set(neg.tolist())) == 12


def test_missing_positives_are_filled_with_negatives():
    labels = torch.tensor([3, 7, 7, 7, 7, 7, 7, -1, 7, 7])  # bg label 7, one foreground (class 3)
    pos, neg = subsample_labels(labels, num_samples=6, positive_fraction=0.5, bg_label=7)
    assert pos.tolist() == [0]
    assert len(neg) == 5 and 7 not in neg.tolist()


def test_fewer_candidates_than_samples():
    labels = torch.tensor([1, 0, -1])
    pos, neg = subsample_labels(labels, num_samples=64, positive_fraction=0.25, bg_label=0)
    assert pos.tolist() == [0] and neg.tolist() == [1]
