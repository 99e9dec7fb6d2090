"""Box2BoxTransform and the box losses."""
import math

import torch

from maskrcnn_multi.modeling.box_regression import Box2BoxTransform, giou_loss, smooth_l1_loss


def test_get_deltas_known_values():
    transform = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))
    src = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    target = torch.tensor([[1.0, 2.0, 21.0, 22.0]])  # centre (11, 12) vs (5, 10); size 20x20 vs 10x20
    deltas = transform.get_deltas(src, target)
    expected = torch.tensor([[10 * 6 / 10, 10 * 2 / 20, 5 * math.log(2.0), 0.0]])
    torch.testing.assert_close(deltas, expected)


def test_apply_deltas_inverts_get_deltas_class_specific():
    torch.manual_seed(0)
    transform = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))
    src = torch.rand(20, 4) * 100
    src[:, 2:] += src[:, :2] + 1
    targets = torch.rand(20, 4) * 100
    targets[:, 2:] += targets[:, :2] + 1
    deltas = transform.get_deltas(src, targets)
    torch.testing.assert_close(transform.apply_deltas(deltas, src), targets, rtol=1e-4, atol=1e-3)
    # two classes per row decode independently
    two_classes = transform.apply_deltas(torch.cat([deltas, torch.zeros_like(deltas)], dim=1), src)
    torch.testing.assert_close(two_classes[:, :4], targets, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(two_classes[:, 4:], src, rtol=1e-5, atol=1e-4)


def test_apply_deltas_clamps_scale():
    transform = Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0))
    boxes = transform.apply_deltas(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), torch.tensor([[0.0, 0.0, 16.0, 16.0]]))
    torch.testing.assert_close(boxes, torch.tensor([[-492.0, -492.0, 508.0, 508.0]]))  # 16 * 1000/16 wide


def test_smooth_l1_and_giou():
    prediction = torch.tensor([0.0, 0.5, 3.0])
    target = torch.zeros(3)
    torch.testing.assert_close(smooth_l1_loss(prediction, target, beta=1.0), torch.tensor([0.0, 0.125, 2.5]))
    torch.testing.assert_close(smooth_l1_loss(prediction, target, beta=0.0), torch.tensor([0.0, 0.5, 3.0]))
    box = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    torch.testing.assert_close(giou_loss(box, box), torch.tensor([0.0]))
    far = torch.tensor([[4.0, 0.0, 6.0, 2.0]])  # disjoint: iou 0, enclosing 12, union 8
    torch.testing.assert_close(giou_loss(box, far), torch.tensor([1.0 + 4.0 / 12.0]))
