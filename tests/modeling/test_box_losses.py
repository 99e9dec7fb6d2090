"""Box regression losses: hand-checked values, fvcore's / detectron2's formulas, gradients, and the
BBOX_REG_LOSS_TYPE / BBOX_REG_LOSS_WEIGHT keys of the RPN and the box predictor."""
import math

import pytest
import torch

from rcnn_helpers import make_random_batch, make_small_cfg
from maskrcnn_multi.config.errors import UserError
from maskrcnn_multi.modeling import build_model
from maskrcnn_multi.modeling.box_losses import BOX_REG_LOSS_TYPES, ciou_loss, diou_loss, giou_loss, smooth_l1_loss
from maskrcnn_multi.modeling.box_regression import Box2BoxTransform, dense_box_regression_loss
from maskrcnn_multi.modeling.roi_heads import FastRCNNOutputLayers
from maskrcnn_multi.structures import Boxes, Instances

IOU_LOSSES = {"giou": giou_loss, "diou": diou_loss, "ciou": ciou_loss}


def _scalar_loss(kind: str, box, gt, eps: float = 1e-7) -> float:
    """fvcore's giou_loss and detectron2's diou_loss / ciou_loss for one pair, step by step in Python floats."""
    x1, y1, x2, y2 = box
    x1g, y1g, x2g, y2g = gt
    xk1, yk1, xk2, yk2 = max(x1, x1g), max(y1, y1g), min(x2, x2g), min(y2, y2g)
    intersection = (xk2 - xk1) * (yk2 - yk1) if (yk2 > yk1 and xk2 > xk1) else 0.0
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intersection
    iou = intersection / (union + eps)
    xc1, yc1, xc2, yc2 = min(x1, x1g), min(y1, y1g), max(x2, x2g), max(y2, y2g)
    if kind == "giou":
        area_c = (xc2 - xc1) * (yc2 - yc1)
        return 1 - (iou - (area_c - union) / (area_c + eps))
    diagonal = (xc2 - xc1) ** 2 + (yc2 - yc1) ** 2 + eps
    distance = ((x2 + x1) / 2 - (x1g + x2g) / 2) ** 2 + ((y2 + y1) / 2 - (y1g + y2g) / 2) ** 2
    loss = 1 - iou + distance / diagonal
    if kind == "ciou":
        v = 4 / math.pi ** 2 * (math.atan((x2g - x1g) / (y2g - y1g)) - math.atan((x2 - x1) / (y2 - y1))) ** 2
        loss += v / (1 - iou + v + eps) * v
    return loss


def _random_boxes(count: int, generator: torch.Generator) -> torch.Tensor:
    corner = torch.rand(count, 2, generator=generator, dtype=torch.float64) * 50
    size = 1 + torch.rand(count, 2, generator=generator, dtype=torch.float64) * 40
    return torch.cat([corner, corner + size], dim=1)


@pytest.mark.parametrize("kind", list(IOU_LOSSES))
def test_identical_boxes_cost_nothing(kind):
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [3.0, 4.0, 9.0, 20.0]], dtype=torch.float64)
    torch.testing.assert_close(IOU_LOSSES[kind](boxes, boxes.clone()), torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("kind, disjoint, overlapping", [
    # [0,0,1,1] vs [2,0,3,1]: IoU 0, enclosing 3x1 (area 3, diagonal^2 10), union 2, centres 2 apart
    ("giou", 1 + 1 / 3, 2 / 3),
    ("diou", 1 + 4 / 10, 2 / 3 + 1 / 13),
    # same aspect ratios: CIoU's aspect term is 0
    ("ciou", 1 + 4 / 10, 2 / 3 + 1 / 13),
])
def test_hand_checked_values(kind, disjoint, overlapping):
    """Overlapping pair [0,0,2,2] vs [1,0,3,2]: IoU 2/6, enclosing 3x2 (no GIoU penalty), diagonal^2 13, d^2 1."""
    loss = IOU_LOSSES[kind]
    value = loss(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[2.0, 0.0, 3.0, 1.0]]))
    assert value.item() == pytest.approx(disjoint, rel=1e-6)
    value = loss(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 2.0]]))
    assert value.item() == pytest.approx(overlapping, rel=1e-6)


def test_ciou_adds_the_aspect_ratio_term():
    """A 2x2 box in a 4x2 ground truth: IoU 1/2, d^2 1 over c^2 20, v = 4/pi^2 (atan 2 - atan 1)^2."""
    box, gt = torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[0.0, 0.0, 4.0, 2.0]])
    v = 4 / math.pi ** 2 * (math.atan(2.0) - math.atan(1.0)) ** 2
    assert diou_loss(box, gt).item() == pytest.approx(0.55, rel=1e-6)
    assert ciou_loss(box, gt).item() == pytest.approx(0.55 + v / (0.5 + v) * v, rel=1e-6)


@pytest.mark.parametrize("kind", list(IOU_LOSSES))
def test_same_values_as_the_reference_formulas_on_random_boxes(kind):
    generator = torch.Generator().manual_seed(3)
    boxes, gt = _random_boxes(64, generator), _random_boxes(64, generator)
    boxes[:8] = gt[:8] + 0.5  # some close pairs beside the (mostly) disjoint ones
    expected = torch.tensor([_scalar_loss(kind, b.tolist(), g.tolist()) for b, g in zip(boxes, gt)], dtype=torch.float64)
    torch.testing.assert_close(IOU_LOSSES[kind](boxes, gt), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", list(IOU_LOSSES))
def test_gradients_are_finite_for_identical_overlapping_and_disjoint_boxes(kind):
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 1.0, 12.0, 8.0], [20.0, 30.0, 25.0, 40.0]], requires_grad=True)
    IOU_LOSSES[kind](boxes, gt, reduction="sum").backward()
    assert torch.isfinite(boxes.grad).all()
    assert boxes.grad[1:].abs().sum(dim=1).gt(0).all()  # overlapping and disjoint boxes are pulled in


def test_ciou_alpha_is_a_constant():
    """The gradient of CIoU is DIoU's plus alpha * dv, with alpha held fixed (no gradient through it)."""
    gt = torch.tensor([[0.0, 0.0, 8.0, 3.0]], dtype=torch.float64)
    box = torch.tensor([[1.0, 0.5, 5.0, 5.0]], dtype=torch.float64, requires_grad=True)
    (ciou_grad,) = torch.autograd.grad(ciou_loss(box, gt).sum(), box)
    (diou_grad,) = torch.autograd.grad(diou_loss(box, gt).sum(), box)
    width, height = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    v = 4 / math.pi ** 2 * (math.atan(8.0 / 3.0) - torch.atan(width / height)) ** 2
    with torch.no_grad():
        inter = (5.0 - 1.0) * (3.0 - 0.5)
        iou = inter / (8.0 * 3.0 + 4.0 * 4.5 - inter)
        alpha = v / (1 - iou + v)
    (v_grad,) = torch.autograd.grad(v.sum(), box)
    torch.testing.assert_close(ciou_grad, diou_grad + alpha * v_grad, rtol=1e-6, atol=1e-9)


def test_reductions():
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    gt = torch.tensor([[2.0, 0.0, 3.0, 1.0], [1.0, 0.0, 3.0, 2.0]])
    per_pair = diou_loss(boxes, gt)
    torch.testing.assert_close(diou_loss(boxes, gt, reduction="sum"), per_pair.sum())
    torch.testing.assert_close(diou_loss(boxes, gt, reduction="mean"), per_pair.mean())
    assert giou_loss(boxes[:0], gt[:0], reduction="mean").item() == 0.0
    torch.testing.assert_close(smooth_l1_loss(torch.tensor([0.0, 0.5, 3.0]), torch.zeros(3), beta=1.0),
                               torch.tensor([0.0, 0.125, 2.5]))
    with pytest.raises(ValueError, match="'max'"):
        giou_loss(boxes, gt, reduction="max")


@pytest.mark.parametrize("kind", list(IOU_LOSSES))
def test_dense_loss_decodes_the_deltas_and_sums_over_the_foreground(kind):
    transform = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))
    generator = torch.Generator().manual_seed(0)
    anchors = _random_boxes(6, generator).float()
    gt = _random_boxes(6, generator).float()
    deltas = torch.randn(1, 6, 4, generator=generator) * 0.1
    foreground = torch.tensor([[True, False, True, True, False, True]])
    loss = dense_box_regression_loss([anchors], transform, [deltas], [gt], foreground, kind)
    decoded = transform.apply_deltas(deltas[0], anchors)
    torch.testing.assert_close(loss, IOU_LOSSES[kind](decoded[foreground[0]], gt[foreground[0]], reduction="sum"))
    exact = transform.get_deltas(anchors, gt).unsqueeze(0)
    assert dense_box_regression_loss([anchors], transform, [exact], [gt], foreground, kind).item() < 1e-4


def _predictor(loss_type: str, weight: float) -> FastRCNNOutputLayers:
    return FastRCNNOutputLayers(8, box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)), num_classes=3,
                                box_reg_loss_type=loss_type, loss_weight={"loss_box_reg": weight})


@pytest.mark.parametrize("kind", BOX_REG_LOSS_TYPES)
def test_box_predictor_loss_is_weighted_by_bbox_reg_loss_weight(kind):
    proposals = Instances((100, 100))
    proposals.proposal_boxes = Boxes(torch.tensor([[10.0, 10.0, 40.0, 40.0], [50.0, 20.0, 90.0, 60.0]]))
    proposals.gt_boxes = Boxes(torch.tensor([[12.0, 8.0, 44.0, 40.0], [0.0, 0.0, 10.0, 10.0]]))
    proposals.gt_classes = torch.tensor([1, 3])  # a foreground and a background RoI
    torch.manual_seed(0)
    predictions = (torch.randn(2, 4), torch.randn(2, 12) * 0.1)
    plain = _predictor(kind, 1.0).losses(predictions, [proposals])["loss_box_reg"]
    weighted = _predictor(kind, 10.0).losses(predictions, [proposals])["loss_box_reg"]
    assert plain.item() > 0 and torch.isfinite(plain)
    torch.testing.assert_close(weighted, 10.0 * plain)


@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
def test_training_with_an_iou_loss_in_rpn_and_box_head(kind):
    cfg = make_small_cfg(mask_on=False)
    cfg.MODEL.RPN.BBOX_REG_LOSS_TYPE = kind
    cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE = kind
    cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT = 10.0
    model = build_model(cfg).train()
    assert model.proposal_generator.box_reg_loss_type == kind and model.roi_heads.box_predictor.box_reg_loss_type == kind
    losses = model(make_random_batch())
    assert all(torch.isfinite(value) for value in losses.values()), losses
    sum(losses.values()).backward()
    grad = model.roi_heads.box_predictor.bbox_pred.weight.grad
    assert grad is not None and torch.isfinite(grad).all()


@pytest.mark.parametrize("key", ["MODEL.RPN.BBOX_REG_LOSS_TYPE", "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE"])
def test_unknown_loss_type_names_the_key_and_the_choices(key):
    cfg = make_small_cfg(mask_on=False)
    section, leaf = key.split(".")[1:]
    cfg.MODEL[section][leaf] = "l2"
    with pytest.raises(UserError, match=rf"unknown {key} 'l2' \(choose from: smooth_l1, giou, diou, ciou\)"):
        build_model(cfg)
