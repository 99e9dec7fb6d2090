"""Region Proposal Network (detectron2's ``StandardRPNHead`` and ``RPN``; same parameter names)."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from maskrcnn_multi.config.configurable import configurable
from maskrcnn_multi.config.errors import UserError
from maskrcnn_multi.modeling.anchor_generator import build_anchor_generator
from maskrcnn_multi.modeling.box_losses import check_box_reg_loss_type
from maskrcnn_multi.modeling.box_regression import Box2BoxTransform, dense_box_regression_loss
from maskrcnn_multi.modeling.registry import Registry
from maskrcnn_multi.modeling.layers import Conv2d, ShapeSpec
from maskrcnn_multi.modeling.matcher import Matcher
from maskrcnn_multi.modeling.sampling import subsample_labels
from maskrcnn_multi.structures import Boxes, ImageList, Instances, pairwise_iou

from .proposal_utils import find_top_rpn_proposals

__all__ = ["StandardRPNHead", "RPN", "RPN_HEADS", "RPN_HEAD_REGISTRY", "build_rpn_head"]


class StandardRPNHead(nn.Module):
    """A shared 3x3 conv (+ReLU), then 1x1 convs for A objectness logits and A * box_dim deltas per position.

    Args:
        in_channels: channels of every input feature map.
        num_anchors: anchors per position (A).
        box_dim: numbers per box (4).
        conv_dims: output channels of the shared convs; ``[-1]`` is one conv keeping ``in_channels``
            (named ``conv``, as detectron2's checkpoints expect).
    """

    @configurable
    def __init__(self, *, in_channels: int, num_anchors: int, box_dim: int = 4, conv_dims: Sequence[int] = (-1,)):
        super().__init__()
        conv_dims = list(conv_dims)
        if len(conv_dims) == 1:
            out_channels = in_channels if conv_dims[0] == -1 else conv_dims[0]
            self.conv = self._rpn_conv(in_channels, out_channels)
            cur_channels = out_channels
        else:
            self.conv = nn.Sequential()
            cur_channels = in_channels
            for index, conv_dim in enumerate(conv_dims):
                out_channels = in_channels if conv_dim == -1 else conv_dim
                if out_channels <= 0:
                    raise UserError(f"MODEL.RPN.CONV_DIMS: channels must be positive or -1, got {conv_dims}")
                self.conv.add_module(f"conv{index}", self._rpn_conv(cur_channels, out_channels))
                cur_channels = out_channels
        self.objectness_logits = nn.Conv2d(cur_channels, num_anchors, kernel_size=1, stride=1)
        self.anchor_deltas = nn.Conv2d(cur_channels, num_anchors * box_dim, kernel_size=1, stride=1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

    @staticmethod
    def _rpn_conv(in_channels: int, out_channels: int) -> nn.Module:
        return Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, activation=nn.ReLU())

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]) -> Dict:
        in_channels = {shape.channels for shape in input_shape}
        if len(in_channels) != 1:
            raise ValueError(f"StandardRPNHead needs equal channels on every input, got {sorted(in_channels)}")
        anchor_generator = build_anchor_generator(cfg, input_shape)
        num_anchors = set(anchor_generator.num_anchors)
        if len(num_anchors) != 1:
            raise ValueError(f"StandardRPNHead needs as many anchors on every level, got {anchor_generator.num_anchors}")
        return {
            "in_channels": in_channels.pop(),
            "num_anchors": num_anchors.pop(),
            "box_dim": anchor_generator.box_dim,
            "conv_dims": list(getattr(cfg.MODEL.RPN, "CONV_DIMS", [-1])),
        }

    def forward(self, features: List[torch.Tensor]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """features: L Tensor[N, C, Hl, Wl] -> (L Tensor[N, A, Hl, Wl] logits, L Tensor[N, A*4, Hl, Wl] deltas)."""
        objectness_logits, anchor_deltas = [], []
        for feature in features:
            hidden = self.conv(feature)
            objectness_logits.append(self.objectness_logits(hidden))
            anchor_deltas.append(self.anchor_deltas(hidden))
        return objectness_logits, anchor_deltas


RPN_HEADS = Registry("MODEL.RPN.HEAD_NAME", StandardRPNHead)
RPN_HEAD_REGISTRY = RPN_HEADS  # detectron2's name for the table


def build_rpn_head(cfg, input_shape: List[ShapeSpec]) -> nn.Module:
    """The RPN head named by MODEL.RPN.HEAD_NAME."""
    return RPN_HEADS.get(cfg.MODEL.RPN.HEAD_NAME)(cfg, input_shape)


class RPN(nn.Module):
    """Region Proposal Network: anchors, a head, matching + sampling + losses, and proposal selection.

    ``pre_nms_topk`` / ``post_nms_topk`` are (training, test) pairs; pre-NMS top-k is per level,
    post-NMS top-k per image.
    """

    @configurable
    def __init__(
        self,
        *,
        in_features: List[str],
        head: nn.Module,
        anchor_generator: nn.Module,
        anchor_matcher: Matcher,
        box2box_transform: Box2BoxTransform,
        batch_size_per_image: int,
        positive_fraction: float,
        pre_nms_topk: Tuple[int, int],
        post_nms_topk: Tuple[int, int],
        nms_thresh: float = 0.7,
        min_box_size: float = 0.0,
        anchor_boundary_thresh: float = -1.0,
        loss_weight: Optional[Dict[str, float]] = None,
        box_reg_loss_type: str = "smooth_l1",
        smooth_l1_beta: float = 0.0,
    ):
        super().__init__()
        self.in_features = list(in_features)
        self.rpn_head = head
        self.anchor_generator = anchor_generator
        self.anchor_matcher = anchor_matcher
        self.box2box_transform = box2box_transform
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.pre_nms_topk = {True: pre_nms_topk[0], False: pre_nms_topk[1]}
        self.post_nms_topk = {True: post_nms_topk[0], False: post_nms_topk[1]}
        self.nms_thresh = nms_thresh
        self.min_box_size = float(min_box_size)
        self.anchor_boundary_thresh = anchor_boundary_thresh
        self.loss_weight = {"loss_rpn_cls": 1.0, "loss_rpn_loc": 1.0}
        self.loss_weight.update(loss_weight or {})
        self.box_reg_loss_type = check_box_reg_loss_type(box_reg_loss_type, "MODEL.RPN.BBOX_REG_LOSS_TYPE")
        self.smooth_l1_beta = smooth_l1_beta

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> Dict:
        rpn = cfg.MODEL.RPN
        missing = [name for name in rpn.IN_FEATURES if name not in input_shape]
        if missing:
            raise UserError(f"MODEL.RPN.IN_FEATURES {missing} not produced by the backbone "
                             f"(it gives: {', '.join(input_shape)})")
        shapes = [input_shape[name] for name in rpn.IN_FEATURES]
        return {
            "in_features": list(rpn.IN_FEATURES),
            "head": build_rpn_head(cfg, shapes),
            "anchor_generator": build_anchor_generator(cfg, shapes),
            "anchor_matcher": Matcher(rpn.IOU_THRESHOLDS, rpn.IOU_LABELS, allow_low_quality_matches=True),
            "box2box_transform": Box2BoxTransform(weights=rpn.BBOX_REG_WEIGHTS),
            "batch_size_per_image": rpn.BATCH_SIZE_PER_IMAGE,
            "positive_fraction": rpn.POSITIVE_FRACTION,
            "pre_nms_topk": (rpn.PRE_NMS_TOPK_TRAIN, rpn.PRE_NMS_TOPK_TEST),
            "post_nms_topk": (rpn.POST_NMS_TOPK_TRAIN, rpn.POST_NMS_TOPK_TEST),
            "nms_thresh": rpn.NMS_THRESH,
            "min_box_size": cfg.MODEL.PROPOSAL_GENERATOR.MIN_SIZE,
            "anchor_boundary_thresh": rpn.BOUNDARY_THRESH,
            "loss_weight": {"loss_rpn_cls": rpn.LOSS_WEIGHT,
                            "loss_rpn_loc": rpn.BBOX_REG_LOSS_WEIGHT * rpn.LOSS_WEIGHT},
            "box_reg_loss_type": rpn.BBOX_REG_LOSS_TYPE,
            "smooth_l1_beta": rpn.SMOOTH_L1_BETA,
        }

    def _subsample_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Keep a balanced random subset of labels as 1 / 0; set the rest to -1 (ignored)."""
        pos_idx, neg_idx = subsample_labels(labels, self.batch_size_per_image, self.positive_fraction, 0)
        labels = torch.full_like(labels, -1)
        labels.scatter_(0, pos_idx, 1)
        labels.scatter_(0, neg_idx, 0)
        return labels

    @torch.no_grad()
    def label_and_sample_anchors(
        self, anchors: List[Boxes], gt_instances: List[Instances]
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Per image: labels Tensor[R] in {-1, 0, 1} of all R anchors (sampled), and the matched
        ground-truth boxes Tensor[R, 4] (zeros when the image has no ground truth)."""
        anchors = Boxes.cat(anchors)
        gt_labels, matched_gt_boxes = [], []
        for instances in gt_instances:
            gt_boxes = instances.gt_boxes
            matched_idxs, labels = self.anchor_matcher(pairwise_iou(gt_boxes, anchors))
            labels = labels.to(dtype=torch.int64)
            if self.anchor_boundary_thresh >= 0:
                inside = anchors.inside_box(instances.image_size, self.anchor_boundary_thresh)
                labels = torch.where(inside, labels, torch.full_like(labels, -1))
            labels = self._subsample_labels(labels)
            if len(gt_boxes) == 0:
                matched = torch.zeros_like(anchors.tensor)
            else:
                matched = gt_boxes.tensor[matched_idxs]
            gt_labels.append(labels)
            matched_gt_boxes.append(matched)
        return gt_labels, matched_gt_boxes

    def losses(
        self,
        anchors: List[Boxes],
        pred_objectness_logits: List[torch.Tensor],
        gt_labels: List[torch.Tensor],
        pred_anchor_deltas: List[torch.Tensor],
        gt_boxes: List[torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        """``loss_rpn_cls`` (BCE over sampled anchors) and ``loss_rpn_loc`` (over positives), both summed and
        divided by ``batch_size_per_image * N``, then weighted."""
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # N x R
        positive = gt_labels == 1
        localization_loss = dense_box_regression_loss(
            [a.tensor for a in anchors], self.box2box_transform, pred_anchor_deltas, gt_boxes, positive,
            box_reg_loss_type=self.box_reg_loss_type, smooth_l1_beta=self.smooth_l1_beta,
        )
        valid = gt_labels >= 0
        logits = torch.cat(pred_objectness_logits, dim=1)
        # a weight instead of boolean indexing: same sum, static shapes, no host sync
        objectness_loss = F.binary_cross_entropy_with_logits(
            logits, gt_labels.clamp(min=0).to(logits.dtype), weight=valid.to(logits.dtype), reduction="sum"
        )
        normalizer = self.batch_size_per_image * num_images
        losses = {"loss_rpn_cls": objectness_loss / normalizer, "loss_rpn_loc": localization_loss / normalizer}
        return {name: value * self.loss_weight.get(name, 1.0) for name, value in losses.items()}

    def forward(
        self, images: ImageList, features: Dict[str, torch.Tensor], gt_instances: Optional[List[Instances]] = None
    ) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """Proposals for every image (Instances with ``proposal_boxes``, ``objectness_logits``) and, in
        training, the losses (``gt_instances`` with ``gt_boxes`` required)."""
        features = [features[name] for name in self.in_features]
        anchors = self.anchor_generator(features)
        logits, deltas = self.rpn_head(features)
        # (N, A, H, W) -> (N, H*W*A), the anchors' order
        pred_objectness_logits = [score.permute(0, 2, 3, 1).flatten(1) for score in logits]
        box_dim = self.anchor_generator.box_dim
        # (N, A*B, H, W) -> (N, A, B, H, W) -> (N, H, W, A, B) -> (N, H*W*A, B)
        pred_anchor_deltas = [
            d.view(d.shape[0], -1, box_dim, d.shape[-2], d.shape[-1]).permute(0, 3, 4, 1, 2).flatten(1, -2)
            for d in deltas
        ]

        if self.training:
            if gt_instances is None:
                raise ValueError("RPN needs gt_instances in training (inputs lack 'instances')")
            gt_labels, gt_boxes = self.label_and_sample_anchors(anchors, gt_instances)
            losses = self.losses(anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes)
        else:
            losses = {}
        proposals = self.predict_proposals(anchors, pred_objectness_logits, pred_anchor_deltas, images.image_sizes)
        return proposals, losses

    @torch.no_grad()
    def predict_proposals(
        self,
        anchors: List[Boxes],
        pred_objectness_logits: List[torch.Tensor],
        pred_anchor_deltas: List[torch.Tensor],
        image_sizes: List[Tuple[int, int]],
    ) -> List[Instances]:
        """Decode the deltas and select proposals (no gradient flows into the proposals)."""
        proposals = self._decode_proposals(anchors, pred_anchor_deltas)
        return find_top_rpn_proposals(
            proposals, pred_objectness_logits, image_sizes, self.nms_thresh,
            self.pre_nms_topk[self.training], self.post_nms_topk[self.training], self.min_box_size, self.training,
        )

    def _decode_proposals(self, anchors: List[Boxes], pred_anchor_deltas: List[torch.Tensor]) -> List[torch.Tensor]:
        """Per level: anchors Boxes[R_l] and deltas Tensor[N, R_l, B] -> boxes Tensor[N, R_l, B]."""
        num_images = pred_anchor_deltas[0].shape[0]
        proposals = []
        for anchors_l, deltas_l in zip(anchors, pred_anchor_deltas):
            box_dim = anchors_l.tensor.size(1)
            deltas_l = deltas_l.reshape(-1, box_dim)
            anchors_l = anchors_l.tensor.unsqueeze(0).expand(num_images, -1, -1).reshape(-1, box_dim)
            proposals.append(self.box2box_transform.apply_deltas(deltas_l, anchors_l).view(num_images, -1, box_dim))
        return proposals
