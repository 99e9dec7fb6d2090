"""Fast R-CNN outputs: class scores and class-specific box deltas, their losses and inference."""
from typing import Dict, List, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from maskrcnn_multi.config.configurable import configurable
from maskrcnn_multi.modeling.box_losses import check_box_reg_loss_type
from maskrcnn_multi.modeling.box_regression import Box2BoxTransform, dense_box_regression_loss
from maskrcnn_multi.modeling.layers import ShapeSpec
from maskrcnn_multi.ops import batched_nms
from maskrcnn_multi.structures import Boxes, Instances

__all__ = ["FastRCNNOutputLayers", "fast_rcnn_inference", "fast_rcnn_inference_single_image"]

# Shapes: R RoIs over the batch, Ri in image i, K foreground classes (index K is background).


def fast_rcnn_inference(
    boxes: List[torch.Tensor],
    scores: List[torch.Tensor],
    image_shapes: List[Tuple[int, int]],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
) -> Tuple[List[Instances], List[torch.Tensor]]:
    """Per image: threshold, per-class NMS, top-k.

    Args:
        boxes: per image Tensor[Ri, K*4] (class-specific) or Tensor[Ri, 4].
        scores: per image Tensor[Ri, K+1] probabilities.
        image_shapes: per image (h, w) to clip to.
        topk_per_image: detections kept per image (< 0: all).
    Returns:
        Instances with ``pred_boxes``, ``scores``, ``pred_classes``; and per image the LongTensor of the
        RoI each detection came from.
    """
    results = [
        fast_rcnn_inference_single_image(b, s, shape, score_thresh, nms_thresh, topk_per_image)
        for b, s, shape in zip(boxes, scores, image_shapes)
    ]
    return [r[0] for r in results], [r[1] for r in results]


def fast_rcnn_inference_single_image(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_shape: Tuple[int, int],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
) -> Tuple[Instances, torch.Tensor]:
    """See :func:`fast_rcnn_inference`; one image."""
    # Non-finite rows can never pass the threshold: masking them is the same as dropping them, without a sync.
    valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
    scores = torch.where(valid[:, None], scores, torch.full_like(scores, -float("inf")))[:, :-1]
    num_bbox_reg_classes = boxes.shape[1] // 4
    height, width = image_shape
    boxes = boxes.reshape(-1, num_bbox_reg_classes, 4)
    boxes = torch.stack((boxes[..., 0].clamp(min=0, max=width), boxes[..., 1].clamp(min=0, max=height),
                         boxes[..., 2].clamp(min=0, max=width), boxes[..., 3].clamp(min=0, max=height)), dim=-1)

    filter_mask = scores > score_thresh  # R x K
    filter_inds = filter_mask.nonzero()  # R' x 2: (RoI, class)
    if num_bbox_reg_classes == 1:
        boxes = boxes[filter_inds[:, 0], 0]
    else:
        boxes = boxes[filter_mask]
    scores = scores[filter_mask]

    keep = batched_nms(boxes, scores, filter_inds[:, 1], nms_thresh)
    if topk_per_image >= 0:
        keep = keep[:topk_per_image]
    boxes, scores, filter_inds = boxes[keep], scores[keep], filter_inds[keep]

    result = Instances(image_shape)
    result.pred_boxes = Boxes(boxes)
    result.scores = scores
    result.pred_classes = filter_inds[:, 1]
    return result, filter_inds[:, 0]


class FastRCNNOutputLayers(nn.Module):
    """``cls_score`` (K+1 logits) and ``bbox_pred`` (K*4 or 4 deltas) linear layers over box features.

    Args:
        input_shape: the box head's output ShapeSpec.
        box2box_transform: codes proposals -> boxes.
        num_classes: K.
        test_score_thresh, test_nms_thresh, test_topk_per_image: inference parameters.
        cls_agnostic_bbox_reg: one set of deltas for all classes.
        smooth_l1_beta, box_reg_loss_type: box loss ("smooth_l1", "giou", "diou" or "ciou").
        loss_weight: a float for every loss, or a dict {"loss_cls": w, "loss_box_reg": w}.
    """

    # the layers whose outputs are the detections' scores and boxes: half-precision inference keeps
    # them in float32 (modeling.inference_graph), they are tiny
    float32_layers = ("cls_score", "bbox_pred")

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        box2box_transform: Box2BoxTransform,
        num_classes: int,
        test_score_thresh: float = 0.0,
        test_nms_thresh: float = 0.5,
        test_topk_per_image: int = 100,
        cls_agnostic_bbox_reg: bool = False,
        smooth_l1_beta: float = 0.0,
        box_reg_loss_type: str = "smooth_l1",
        loss_weight: Union[float, Dict[str, float]] = 1.0,
    ):
        super().__init__()
        if isinstance(input_shape, int):
            input_shape = ShapeSpec(channels=input_shape)
        self.num_classes = num_classes
        input_size = input_shape.channels * (input_shape.width or 1) * (input_shape.height or 1)
        self.cls_score = nn.Linear(input_size, num_classes + 1)
        num_bbox_reg_classes = 1 if cls_agnostic_bbox_reg else num_classes
        box_dim = len(box2box_transform.weights)
        self.bbox_pred = nn.Linear(input_size, num_bbox_reg_classes * box_dim)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        for layer in (self.cls_score, self.bbox_pred):
            nn.init.constant_(layer.bias, 0)

        self.box2box_transform = box2box_transform
        self.smooth_l1_beta = smooth_l1_beta
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.test_topk_per_image = test_topk_per_image
        self.box_reg_loss_type = check_box_reg_loss_type(box_reg_loss_type, "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE")
        if isinstance(loss_weight, float):
            loss_weight = {"loss_cls": loss_weight, "loss_box_reg": loss_weight}
        self.loss_weight = dict(loss_weight)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> Dict:
        box_head = cfg.MODEL.ROI_BOX_HEAD
        return {
            "input_shape": input_shape,
            "box2box_transform": Box2BoxTransform(weights=box_head.BBOX_REG_WEIGHTS),
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "cls_agnostic_bbox_reg": box_head.CLS_AGNOSTIC_BBOX_REG,
            "smooth_l1_beta": box_head.SMOOTH_L1_BETA,
            "test_score_thresh": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            "test_nms_thresh": cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            "test_topk_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "box_reg_loss_type": box_head.BBOX_REG_LOSS_TYPE,
            "loss_weight": {"loss_box_reg": box_head.BBOX_REG_LOSS_WEIGHT},
        }

    def forward(self, box_features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Tensor[R, ...] -> (logits Tensor[R, K+1], deltas Tensor[R, K*4] or Tensor[R, 4])."""
        if box_features.dim() > 2:
            box_features = torch.flatten(box_features, start_dim=1)
        return self.cls_score(box_features), self.bbox_pred(box_features)

    def losses(self, predictions: Tuple[torch.Tensor, torch.Tensor], proposals: List[Instances]) -> Dict[str, torch.Tensor]:
        """``loss_cls`` (softmax CE, mean over RoIs) and ``loss_box_reg`` (foreground, summed / R).

        ``proposals`` carry ``proposal_boxes``, ``gt_classes`` and, for images with ground truth, ``gt_boxes``.
        """
        scores, proposal_deltas = predictions
        if len(proposals):
            gt_classes = torch.cat([p.gt_classes for p in proposals], dim=0)
            proposal_boxes = torch.cat([p.proposal_boxes.tensor for p in proposals], dim=0)
            gt_boxes = torch.cat([(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor
                                  for p in proposals], dim=0)
        else:
            gt_classes = torch.empty(0, dtype=torch.int64, device=scores.device)
            proposal_boxes = gt_boxes = torch.empty((0, 4), device=proposal_deltas.device)

        if gt_classes.numel() == 0:
            loss_cls = scores.sum() * 0.0
        else:
            loss_cls = F.cross_entropy(scores, gt_classes, reduction="mean")
        losses = {
            "loss_cls": loss_cls,
            "loss_box_reg": self.box_reg_loss(proposal_boxes, gt_boxes, proposal_deltas, gt_classes),
        }
        return {name: value * self.loss_weight.get(name, 1.0) for name, value in losses.items()}

    def box_reg_loss(self, proposal_boxes: torch.Tensor, gt_boxes: torch.Tensor, pred_deltas: torch.Tensor,
                     gt_classes: torch.Tensor) -> torch.Tensor:
        """Box loss of the gt class's deltas on foreground RoIs, summed and divided by max(R, 1)."""
        box_dim = proposal_boxes.shape[1]
        foreground = (gt_classes >= 0) & (gt_classes < self.num_classes)
        if pred_deltas.shape[1] == box_dim:
            fg_pred_deltas = pred_deltas
        else:
            rows = torch.arange(pred_deltas.shape[0], device=pred_deltas.device)
            columns = gt_classes.clamp(min=0, max=self.num_classes - 1)
            fg_pred_deltas = pred_deltas.view(-1, self.num_classes, box_dim)[rows, columns]
        loss_box_reg = dense_box_regression_loss(
            [proposal_boxes], self.box2box_transform, [fg_pred_deltas.unsqueeze(0)], [gt_boxes],
            foreground.unsqueeze(0), self.box_reg_loss_type, self.smooth_l1_beta,
        )
        return loss_box_reg / max(gt_classes.numel(), 1.0)

    def inference(self, predictions: Tuple[torch.Tensor, torch.Tensor],
                  proposals: List[Instances]) -> Tuple[List[Instances], List[torch.Tensor]]:
        """Detections per image (see :func:`fast_rcnn_inference`) and the RoI index of each."""
        boxes = self.predict_boxes(predictions, proposals)
        scores = self.predict_probs(predictions, proposals)
        image_shapes = [p.image_size for p in proposals]
        return fast_rcnn_inference(boxes, scores, image_shapes, self.test_score_thresh,
                                   self.test_nms_thresh, self.test_topk_per_image)

    def predict_boxes(self, predictions: Tuple[torch.Tensor, torch.Tensor],
                      proposals: List[Instances]) -> List[torch.Tensor]:
        """Per image Tensor[Ri, K*4] (or Tensor[Ri, 4]) decoded boxes."""
        if not len(proposals):
            return []
        _, proposal_deltas = predictions
        num_per_image = [len(p) for p in proposals]
        proposal_boxes = torch.cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        return self.box2box_transform.apply_deltas(proposal_deltas, proposal_boxes).split(num_per_image)

    def predict_boxes_for_gt_classes(self, predictions: Tuple[torch.Tensor, torch.Tensor],
                                     proposals: List[Instances]) -> List[torch.Tensor]:
        """Per image Tensor[Ri, 4]: each proposal decoded with its ``gt_classes``'s deltas (training)."""
        if not len(proposals):
            return []
        _, proposal_deltas = predictions
        num_per_image = [len(p) for p in proposals]
        proposal_boxes = torch.cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        num_boxes, box_dim = proposal_boxes.shape
        boxes = self.box2box_transform.apply_deltas(proposal_deltas, proposal_boxes)
        num_reg_classes = boxes.shape[1] // box_dim
        if num_reg_classes > 1:
            gt_classes = torch.cat([p.gt_classes for p in proposals], dim=0).clamp(0, num_reg_classes - 1)
            boxes = boxes.view(num_boxes, num_reg_classes, box_dim)[torch.arange(num_boxes, device=boxes.device),
                                                                   gt_classes]
        return boxes.split(num_per_image)

    def predict_probs(self, predictions: Tuple[torch.Tensor, torch.Tensor],
                      proposals: List[Instances]) -> List[torch.Tensor]:
        """Per image Tensor[Ri, K+1] softmax probabilities."""
        scores, _ = predictions
        num_per_image = [len(p) for p in proposals]
        return F.softmax(scores, dim=-1).split(num_per_image, dim=0)
