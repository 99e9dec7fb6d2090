"""Cascade R-CNN's RoI heads (detectron2's ``CascadeROIHeads``; same parameter names).

Stage k has its own box head and predictor (``box_head.k``, ``box_predictor.k``), its own box coding
(MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS[k]) and, in training, its own foreground IoU
(MODEL.ROI_BOX_CASCADE_HEAD.IOUS[k]). Stage 0 takes the RPN's proposals (sampled, with the ground truth
appended, as StandardROIHeads); stage k > 0 takes stage k-1's class-agnostic boxes, detached and clipped.
Inference averages the stages' class probabilities and keeps the last stage's boxes; the mask head
then runs on the final detections.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from maskrcnn_multi.config.configurable import configurable
from maskrcnn_multi.config.errors import UserError
from maskrcnn_multi.modeling.box_regression import Box2BoxTransform
from maskrcnn_multi.modeling.layers import ShapeSpec
from maskrcnn_multi.modeling.matcher import Matcher
from maskrcnn_multi.modeling.poolers import ROIPooler
from maskrcnn_multi.structures import Boxes, ImageList, Instances, pairwise_iou

from .box_head import build_box_head
from .fast_rcnn import FastRCNNOutputLayers, fast_rcnn_inference
from .roi_heads import StandardROIHeads

__all__ = ["CascadeROIHeads"]

# One stage's outputs: its predictor, its (logits, deltas) and the proposals they were computed on.
_StageOutput = Tuple[FastRCNNOutputLayers, Tuple[torch.Tensor, torch.Tensor], List[Instances]]


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``scale`` backward."""

    @staticmethod
    def forward(ctx, input: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return input

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output * ctx.scale, None


class CascadeROIHeads(StandardROIHeads):
    """StandardROIHeads with a cascade of box stages (see the module docstring).

    Args:
        box_in_features, box_pooler: as StandardROIHeads (one pooler for every stage).
        box_heads: the box head of each stage.
        box_predictors: each stage's FastRCNNOutputLayers (class-agnostic deltas, the stage's coding).
        proposal_matchers: each stage's matcher; the first labels the RPN proposals (the base class's
            ``proposal_matcher``), the others the previous stage's boxes.
        **kwargs: the rest of StandardROIHeads' arguments, except ``proposal_matcher``.
    """

    @configurable
    def __init__(self, *, box_in_features: List[str], box_pooler: ROIPooler, box_heads: Sequence[nn.Module],
                 box_predictors: Sequence[nn.Module], proposal_matchers: Sequence[Matcher], **kwargs):
        if "proposal_matcher" in kwargs:
            raise TypeError("CascadeROIHeads takes proposal_matchers= (one per stage), not proposal_matcher=")
        num_stages = len(box_heads)
        if num_stages == 0 or len(box_predictors) != num_stages or len(proposal_matchers) != num_stages:
            raise ValueError(f"CascadeROIHeads needs as many box heads, predictors and matchers (one per stage), "
                             f"got {num_stages}, {len(box_predictors)}, {len(proposal_matchers)}")
        kwargs["proposal_matcher"] = proposal_matchers[0]
        super().__init__(box_in_features=box_in_features, box_pooler=box_pooler, box_head=nn.ModuleList(box_heads),
                         box_predictor=nn.ModuleList(box_predictors), **kwargs)
        self.num_cascade_stages = num_stages
        self.proposal_matchers = list(proposal_matchers)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> Dict:
        kwargs = super().from_config(cfg, input_shape)
        kwargs.pop("proposal_matcher")
        return kwargs

    @classmethod
    def _init_box_head(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> Dict:
        cascade = cfg.MODEL.ROI_BOX_CASCADE_HEAD
        ious, reg_weights = list(cascade.IOUS), [tuple(w) for w in cascade.BBOX_REG_WEIGHTS]
        if len(ious) != len(reg_weights):
            raise UserError(f"MODEL.ROI_BOX_CASCADE_HEAD: IOUS {ious} and BBOX_REG_WEIGHTS {reg_weights} "
                            f"must name as many stages")
        if not cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG:
            raise UserError("CascadeROIHeads needs MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG True "
                            "(each stage refines one box per proposal)")
        if ious[0] != cfg.MODEL.ROI_HEADS.IOU_THRESHOLDS[0]:
            raise UserError(f"MODEL.ROI_BOX_CASCADE_HEAD.IOUS[0] {ious[0]} must equal "
                            f"MODEL.ROI_HEADS.IOU_THRESHOLDS[0] {cfg.MODEL.ROI_HEADS.IOU_THRESHOLDS[0]}")
        pooler, pooled_shape = cls._pooler_and_shape(cfg, input_shape, cfg.MODEL.ROI_BOX_HEAD)
        box_heads, box_predictors, proposal_matchers = [], [], []
        for match_iou, weights in zip(ious, reg_weights):
            box_head = build_box_head(cfg, pooled_shape)
            box_heads.append(box_head)
            box_predictors.append(FastRCNNOutputLayers(cfg, box_head.output_shape,
                                                       box2box_transform=Box2BoxTransform(weights=weights)))
            proposal_matchers.append(Matcher([match_iou], [0, 1], allow_low_quality_matches=False))
        return {"box_in_features": list(cfg.MODEL.ROI_HEADS.IN_FEATURES), "box_pooler": pooler,
                "box_heads": box_heads, "box_predictors": box_predictors, "proposal_matchers": proposal_matchers}

    def forward(self, images: ImageList, features: Dict[str, torch.Tensor], proposals: List[Instances],
                targets: Optional[List[Instances]] = None) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """Training: (stage-0 sampled proposals, losses ``loss_cls_stage{k}``, ``loss_box_reg_stage{k}``
        [, ``loss_mask``]). Inference: (per image Instances with ``pred_boxes``, ``scores``,
        ``pred_classes`` [, ``pred_masks``], {})."""
        if self.training:
            if targets is None:
                raise ValueError("CascadeROIHeads needs targets in training (inputs lack 'instances')")
            proposals = self.label_and_sample_proposals(proposals, targets)
            losses = self._forward_box(features, proposals, targets)
            losses.update(self._forward_mask(features, proposals))
            return proposals, losses
        pred_instances = self._forward_box(features, proposals)
        return self.forward_with_given_boxes(features, pred_instances), {}

    def _forward_box(self, features: Dict[str, torch.Tensor], proposals: List[Instances],
                     targets: Optional[List[Instances]] = None):
        """Run the stages; training: the losses of every stage; inference: the detections per image."""
        box_features = [features[name] for name in self.box_in_features]
        image_sizes = [p.image_size for p in proposals]
        stage_outputs: List[_StageOutput] = []
        previous_boxes = None
        for stage in range(self.num_cascade_stages):
            if stage > 0:
                proposals = self._create_proposals_from_boxes(previous_boxes, image_sizes)
                if self.training:
                    proposals = self._match_and_label_boxes(proposals, stage, targets)
            predictions = self._run_stage(box_features, proposals, stage)
            previous_boxes = self.box_predictor[stage].predict_boxes(predictions, proposals)
            stage_outputs.append((self.box_predictor[stage], predictions, proposals))
        if self.training:
            return self._stage_losses(stage_outputs)
        return self._inference(stage_outputs, image_sizes)

    @staticmethod
    def _stage_losses(stage_outputs: List[_StageOutput]) -> Dict[str, torch.Tensor]:
        losses = {}
        for stage, (predictor, predictions, proposals) in enumerate(stage_outputs):
            stage_losses = predictor.losses(predictions, proposals)
            losses.update({f"{name}_stage{stage}": value for name, value in stage_losses.items()})
        return losses

    def _inference(self, stage_outputs: List[_StageOutput], image_sizes: List[Tuple[int, int]]) -> List[Instances]:
        """Per image: the stages' probabilities averaged (summed in stage order, then scaled, as
        detectron2 does), the last stage's boxes, then thresholding, per-class NMS and top-k."""
        probs_per_stage = [predictor.predict_probs(predictions, proposals)
                           for predictor, predictions, proposals in stage_outputs]
        scores = [sum(list(probs_per_image)) * (1.0 / self.num_cascade_stages)
                  for probs_per_image in zip(*probs_per_stage)]
        predictor, predictions, proposals = stage_outputs[-1]
        boxes = predictor.predict_boxes(predictions, proposals)
        pred_instances, _ = fast_rcnn_inference(boxes, scores, image_sizes, predictor.test_score_thresh,
                                                predictor.test_nms_thresh, predictor.test_topk_per_image)
        return pred_instances

    @torch.no_grad()
    def _match_and_label_boxes(self, proposals: List[Instances], stage: int,
                               targets: List[Instances]) -> List[Instances]:
        """Label every box of ``proposals`` with the stage's matcher: ``gt_classes`` (K for background)
        and ``gt_boxes`` (its matched ground truth; zeros in an image without any). No sampling."""
        for proposals_per_image, targets_per_image in zip(proposals, targets):
            match_quality_matrix = pairwise_iou(targets_per_image.gt_boxes, proposals_per_image.proposal_boxes)
            matched_idxs, proposal_labels = self.proposal_matchers[stage](match_quality_matrix)
            if len(targets_per_image) > 0:
                gt_classes = targets_per_image.gt_classes[matched_idxs]
                gt_classes = torch.where(proposal_labels == 0, torch.full_like(gt_classes, self.num_classes),
                                         gt_classes)
                gt_boxes = targets_per_image.gt_boxes[matched_idxs]
            else:
                gt_classes = torch.zeros_like(matched_idxs) + self.num_classes
                gt_boxes = Boxes(targets_per_image.gt_boxes.tensor.new_zeros((len(proposals_per_image), 4)))
            proposals_per_image.gt_classes = gt_classes
            proposals_per_image.gt_boxes = gt_boxes
        return proposals

    def _run_stage(self, features: List[torch.Tensor], proposals: List[Instances],
                   stage: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The stage's (logits Tensor[R, K+1], deltas Tensor[R, 4]) for ``proposals``."""
        pooled_features = self.box_pooler(features, [p.proposal_boxes for p in proposals])
        # Summing the stages' losses while scaling the gradient reaching the shared features by
        # 1/num_stages equals the original's averaged losses with up-scaled head gradients.
        pooled_features = _ScaleGradient.apply(pooled_features, 1.0 / self.num_cascade_stages)
        return self.box_predictor[stage](self.box_head[stage](pooled_features))

    def _create_proposals_from_boxes(self, boxes: List[torch.Tensor],
                                     image_sizes: List[Tuple[int, int]]) -> List[Instances]:
        """Per image Instances whose ``proposal_boxes`` are ``boxes`` detached and clipped; training
        drops empty boxes (inference keeps them: the stages' scores are added row by row)."""
        proposals = []
        for boxes_per_image, image_size in zip(boxes, image_sizes):
            boxes_per_image = Boxes(boxes_per_image.detach())
            boxes_per_image.clip(image_size)
            if self.training:
                boxes_per_image = boxes_per_image[boxes_per_image.nonempty()]
            instances = Instances(image_size)
            instances.proposal_boxes = boxes_per_image
            proposals.append(instances)
        return proposals
