"""RoI heads: proposal sampling, then the box and mask branches (detectron2's ``StandardROIHeads``)."""
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from maskrcnn_multi.config.configurable import configurable
from maskrcnn_multi.config.errors import UserError
from maskrcnn_multi.modeling.layers import ShapeSpec
from maskrcnn_multi.modeling.matcher import Matcher
from maskrcnn_multi.modeling.poolers import ROIPooler
from maskrcnn_multi.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from maskrcnn_multi.modeling.sampling import subsample_labels
from maskrcnn_multi.structures import ImageList, Instances, pairwise_iou

from .box_head import build_box_head
from .fast_rcnn import FastRCNNOutputLayers
from .mask_head import build_mask_head

__all__ = ["ROIHeads", "StandardROIHeads", "select_foreground_proposals"]


def select_foreground_proposals(proposals: List[Instances], bg_label: int) -> Tuple[List[Instances], List[torch.Tensor]]:
    """Per image, the proposals whose ``gt_classes`` is neither -1 nor ``bg_label``, and their mask."""
    foreground, masks = [], []
    for proposals_per_image in proposals:
        gt_classes = proposals_per_image.gt_classes
        mask = (gt_classes != -1) & (gt_classes != bg_label)
        foreground.append(proposals_per_image[mask.nonzero().squeeze(1)])
        masks.append(mask)
    return foreground, masks


class ROIHeads(nn.Module):
    """Matching and balanced sampling of proposals against the ground truth, shared by RoI heads.

    Args:
        num_classes: K foreground classes (label K is background).
        batch_size_per_image: RoIs sampled per image in training.
        positive_fraction: the largest foreground share of them.
        proposal_matcher: labels proposals foreground (1) / background (0) / ignored (-1).
        proposal_append_gt: add the ground-truth boxes to the proposals before sampling.
    """

    @configurable
    def __init__(self, *, num_classes: int, batch_size_per_image: int, positive_fraction: float,
                 proposal_matcher: Matcher, proposal_append_gt: bool = True):
        super().__init__()
        self.num_classes = num_classes
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.proposal_matcher = proposal_matcher
        self.proposal_append_gt = proposal_append_gt

    @classmethod
    def from_config(cls, cfg) -> Dict:
        heads = cfg.MODEL.ROI_HEADS
        return {
            "num_classes": heads.NUM_CLASSES,
            "batch_size_per_image": heads.BATCH_SIZE_PER_IMAGE,
            "positive_fraction": heads.POSITIVE_FRACTION,
            "proposal_append_gt": heads.PROPOSAL_APPEND_GT,
            "proposal_matcher": Matcher(heads.IOU_THRESHOLDS, heads.IOU_LABELS, allow_low_quality_matches=False),
        }

    def _sample_proposals(self, matched_idxs: torch.Tensor, matched_labels: torch.Tensor,
                          gt_classes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Indices of the sampled proposals and their classes (K = background)."""
        if gt_classes.numel() > 0:
            gt_classes = gt_classes[matched_idxs]
            gt_classes = torch.where(matched_labels == 0, torch.full_like(gt_classes, self.num_classes), gt_classes)
            gt_classes = torch.where(matched_labels == -1, torch.full_like(gt_classes, -1), gt_classes)
        else:
            gt_classes = torch.zeros_like(matched_idxs) + self.num_classes
        fg_idxs, bg_idxs = subsample_labels(gt_classes, self.batch_size_per_image, self.positive_fraction,
                                            self.num_classes)
        sampled_idxs = torch.cat([fg_idxs, bg_idxs], dim=0)
        return sampled_idxs, gt_classes[sampled_idxs]

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals: List[Instances], targets: List[Instances]) -> List[Instances]:
        """Sample ``batch_size_per_image`` proposals per image and attach ``gt_classes`` and the matched
        ground truth's other ``gt_*`` fields (``gt_boxes``, ``gt_masks``, ...)."""
        if self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals(targets, proposals)
        sampled = []
        for proposals_per_image, targets_per_image in zip(proposals, targets):
            has_gt = len(targets_per_image) > 0
            match_quality_matrix = pairwise_iou(targets_per_image.gt_boxes, proposals_per_image.proposal_boxes)
            matched_idxs, matched_labels = self.proposal_matcher(match_quality_matrix)
            sampled_idxs, gt_classes = self._sample_proposals(matched_idxs, matched_labels,
                                                              targets_per_image.gt_classes)
            proposals_per_image = proposals_per_image[sampled_idxs]
            proposals_per_image.gt_classes = gt_classes
            if has_gt:
                sampled_targets = matched_idxs[sampled_idxs]
                for name, value in targets_per_image.get_fields().items():
                    if name.startswith("gt_") and not proposals_per_image.has(name):
                        proposals_per_image.set(name, value[sampled_targets])
            sampled.append(proposals_per_image)
        return sampled

    def forward(self, images: ImageList, features: Dict[str, torch.Tensor], proposals: List[Instances],
                targets: Optional[List[Instances]] = None):
        raise NotImplementedError(f"{type(self).__name__} must implement forward")


class StandardROIHeads(ROIHeads):
    """Box branch (pooler, head, predictor) and optional mask branch, each on its own features.

    ``mask_in_features`` / ``mask_pooler`` / ``mask_head`` are None for Faster R-CNN.
    """

    @configurable
    def __init__(self, *, box_in_features: List[str], box_pooler: ROIPooler, box_head: nn.Module,
                 box_predictor: nn.Module, mask_in_features: Optional[List[str]] = None,
                 mask_pooler: Optional[ROIPooler] = None, mask_head: Optional[nn.Module] = None,
                 train_on_pred_boxes: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.in_features = self.box_in_features = list(box_in_features)
        self.box_pooler = box_pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.mask_on = mask_in_features is not None
        if self.mask_on:
            self.mask_in_features = list(mask_in_features)
            self.mask_pooler = mask_pooler
            self.mask_head = mask_head
        self.train_on_pred_boxes = train_on_pred_boxes

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> Dict:
        kwargs = super().from_config(cfg)
        kwargs["train_on_pred_boxes"] = cfg.MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES
        kwargs.update(cls._init_box_head(cfg, input_shape))
        if cfg.MODEL.MASK_ON:
            kwargs.update(cls._init_mask_head(cfg, input_shape))
        return kwargs

    @staticmethod
    def _pooler_and_shape(cfg, input_shape: Dict[str, ShapeSpec], head_cfg) -> Tuple[ROIPooler, ShapeSpec]:
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        missing = [name for name in in_features if name not in input_shape]
        if missing:
            raise UserError(f"MODEL.ROI_HEADS.IN_FEATURES {missing} not produced by the backbone "
                             f"(it gives: {', '.join(input_shape)})")
        channels = {input_shape[name].channels for name in in_features}
        if len(channels) != 1:
            raise UserError(f"MODEL.ROI_HEADS.IN_FEATURES {list(in_features)} have different channels {sorted(channels)}")
        resolution = head_cfg.POOLER_RESOLUTION
        pooler = ROIPooler(
            output_size=resolution,
            scales=tuple(1.0 / input_shape[name].stride for name in in_features),
            sampling_ratio=head_cfg.POOLER_SAMPLING_RATIO,
            pooler_type=head_cfg.POOLER_TYPE,
        )
        return pooler, ShapeSpec(channels=channels.pop(), height=resolution, width=resolution)

    @classmethod
    def _init_box_head(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> Dict:
        pooler, pooled_shape = cls._pooler_and_shape(cfg, input_shape, cfg.MODEL.ROI_BOX_HEAD)
        box_head = build_box_head(cfg, pooled_shape)
        box_predictor = FastRCNNOutputLayers(cfg, box_head.output_shape)
        return {"box_in_features": list(cfg.MODEL.ROI_HEADS.IN_FEATURES), "box_pooler": pooler,
                "box_head": box_head, "box_predictor": box_predictor}

    @classmethod
    def _init_mask_head(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> Dict:
        pooler, pooled_shape = cls._pooler_and_shape(cfg, input_shape, cfg.MODEL.ROI_MASK_HEAD)
        return {"mask_in_features": list(cfg.MODEL.ROI_HEADS.IN_FEATURES), "mask_pooler": pooler,
                "mask_head": build_mask_head(cfg, pooled_shape)}

    def forward(self, images: ImageList, features: Dict[str, torch.Tensor], proposals: List[Instances],
                targets: Optional[List[Instances]] = None) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """Training: (sampled proposals, losses ``loss_cls``, ``loss_box_reg`` [, ``loss_mask``]).
        Inference: (per image Instances with ``pred_boxes``, ``scores``, ``pred_classes`` [, ``pred_masks``], {})."""
        if self.training:
            if targets is None:
                raise ValueError("StandardROIHeads needs targets in training (inputs lack 'instances')")
            proposals = self.label_and_sample_proposals(proposals, targets)
            losses = self._forward_box(features, proposals)
            losses.update(self._forward_mask(features, proposals))
            return proposals, losses
        pred_instances = self._forward_box(features, proposals)
        return self.forward_with_given_boxes(features, pred_instances), {}

    def forward_with_given_boxes(self, features: Dict[str, torch.Tensor], instances: List[Instances]) -> List[Instances]:
        """Run the mask branch on given detections (``pred_boxes``, ``pred_classes``); inference only."""
        if self.training:
            raise RuntimeError("forward_with_given_boxes is for inference; call model.eval() first")
        return self._forward_mask(features, instances)

    def _forward_box(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        box_features = self.box_pooler([features[name] for name in self.box_in_features],
                                       [p.proposal_boxes for p in proposals])
        predictions = self.box_predictor(self.box_head(box_features))
        if self.training:
            losses = self.box_predictor.losses(predictions, proposals)
            if self.train_on_pred_boxes:
                with torch.no_grad():
                    pred_boxes = self.box_predictor.predict_boxes_for_gt_classes(predictions, proposals)
                    for proposals_per_image, boxes in zip(proposals, pred_boxes):
                        proposals_per_image.proposal_boxes = type(proposals_per_image.proposal_boxes)(boxes)
            return losses
        pred_instances, _ = self.box_predictor.inference(predictions, proposals)
        return pred_instances

    def _forward_mask(self, features: Dict[str, torch.Tensor], instances: List[Instances]):
        if not self.mask_on:
            return {} if self.training else instances
        if self.training:
            instances, _ = select_foreground_proposals(instances, self.num_classes)
            boxes = [x.proposal_boxes for x in instances]
        else:
            boxes = [x.pred_boxes for x in instances]
        mask_features = self.mask_pooler([features[name] for name in self.mask_in_features], boxes)
        return self.mask_head(mask_features, instances)
