"""C4 RoI heads: ResNet's ``res5`` stage run on each pooled RoI, shared by the box and mask branches
(detectron2's ``Res5ROIHeads``; parameter names ``roi_heads.res5.0.conv1``, ``roi_heads.box_predictor``,
``roi_heads.mask_head``)."""
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from maskrcnn_multi.config.configurable import configurable
from maskrcnn_multi.config.errors import UserError
from maskrcnn_multi.modeling.backbone.resnet import ResNet
from maskrcnn_multi.modeling.backbone.resnet_blocks import BottleneckBlock
from maskrcnn_multi.modeling.layers import ShapeSpec
from maskrcnn_multi.modeling.poolers import ROIPooler
from maskrcnn_multi.structures import Boxes, ImageList, Instances

from .fast_rcnn import FastRCNNOutputLayers
from .mask_head import build_mask_head
from .roi_heads import ROIHeads, select_foreground_proposals

__all__ = ["Res5ROIHeads", "build_res5_block"]

# res5 has 8x the channels of res2 (three doublings)
_RES5_CHANNEL_FACTOR = 2 ** 3


def build_res5_block(*, res2_out_channels: int, num_groups: int, width_per_group: int, norm: str,
                     stride_in_1x1: bool, num_blocks: int = 3) -> Tuple[nn.Sequential, int]:
    """ResNet's res5 stage as the C4 head runs it (first block stride 2): ``(Sequential, out_channels)``.

    Its input is res4 (``res2_out_channels * 4`` channels); ``[R, C4, M, M] -> [R, C5, M/2, M/2]``."""
    out_channels = res2_out_channels * _RES5_CHANNEL_FACTOR
    blocks = ResNet.make_stage(
        BottleneckBlock,
        num_blocks,
        stride_per_block=[2] + [1] * (num_blocks - 1),
        in_channels=out_channels // 2,
        out_channels=out_channels,
        bottleneck_channels=num_groups * width_per_group * _RES5_CHANNEL_FACTOR,
        num_groups=num_groups,
        norm=norm,
        stride_in_1x1=stride_in_1x1,
    )
    return nn.Sequential(*blocks), out_channels


class Res5ROIHeads(ROIHeads):
    """RoIAlign on one feature map (``res4``), then ``res5``; the box predictor reads the mean-pooled
    res5 features and the mask head the res5 features themselves.

    Args (besides ROIHeads'):
        in_features: the one feature map pooled (MODEL.ROI_HEADS.IN_FEATURES).
        pooler: RoIAlign at ROI_BOX_HEAD.POOLER_RESOLUTION (14 in detectron2's C4 configs).
        res5: the per-RoI stage (see :func:`build_res5_block`).
        box_predictor: FastRCNNOutputLayers over res5's channels.
        mask_head: None for Faster R-CNN; a mask head over res5's channels (its NUM_CONV is 0 in C4).
    """

    @configurable
    def __init__(self, *, in_features: List[str], pooler: ROIPooler, res5: nn.Module, box_predictor: nn.Module,
                 mask_head: Optional[nn.Module] = None, **kwargs):
        super().__init__(**kwargs)
        if len(in_features) != 1:
            raise UserError(f"Res5ROIHeads pools one feature map, got MODEL.ROI_HEADS.IN_FEATURES {list(in_features)}")
        self.in_features = list(in_features)
        self.pooler = pooler
        self.res5 = res5
        self.box_predictor = box_predictor
        self.mask_on = mask_head is not None
        if self.mask_on:
            self.mask_head = mask_head

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> Dict:
        kwargs = super().from_config(cfg)
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        if len(in_features) != 1 or in_features[0] not in input_shape:
            raise UserError(f"Res5ROIHeads needs one MODEL.ROI_HEADS.IN_FEATURES the backbone produces, got "
                            f"{in_features} (the backbone gives: {', '.join(input_shape)})")
        if cfg.MODEL.KEYPOINT_ON:
            raise UserError("Res5ROIHeads has no keypoint branch: set MODEL.KEYPOINT_ON False")
        if cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE[-1]:
            raise UserError("Res5ROIHeads: deformable convolutions in the res5 head are not supported "
                            "(MODEL.RESNETS.DEFORM_ON_PER_STAGE[-1] is True)")
        box_head = cfg.MODEL.ROI_BOX_HEAD
        resolution = box_head.POOLER_RESOLUTION
        resnets = cfg.MODEL.RESNETS
        res5, out_channels = build_res5_block(
            res2_out_channels=resnets.RES2_OUT_CHANNELS, num_groups=resnets.NUM_GROUPS,
            width_per_group=resnets.WIDTH_PER_GROUP, norm=resnets.NORM, stride_in_1x1=resnets.STRIDE_IN_1X1,
        )
        if input_shape[in_features[0]].channels != out_channels // 2:
            raise UserError(f"Res5ROIHeads: '{in_features[0]}' has {input_shape[in_features[0]].channels} channels, "
                            f"res5 expects {out_channels // 2} (MODEL.RESNETS.RES2_OUT_CHANNELS * 4)")
        kwargs.update(
            in_features=in_features,
            pooler=ROIPooler(output_size=resolution, scales=(1.0 / input_shape[in_features[0]].stride,),
                             sampling_ratio=box_head.POOLER_SAMPLING_RATIO, pooler_type=box_head.POOLER_TYPE),
            res5=res5,
            box_predictor=FastRCNNOutputLayers(cfg, ShapeSpec(channels=out_channels, height=1, width=1)),
        )
        if cfg.MODEL.MASK_ON:
            kwargs["mask_head"] = build_mask_head(cfg, ShapeSpec(channels=out_channels, height=resolution,
                                                                 width=resolution))
        return kwargs

    def _shared_roi_transform(self, features: Dict[str, torch.Tensor], boxes: List[Boxes]) -> torch.Tensor:
        """Pooled res4 -> res5 features Tensor[R, C5, M/2, M/2] over all images' boxes."""
        return self.res5(self.pooler([features[name] for name in self.in_features], boxes))

    def forward(self, images: ImageList, features: Dict[str, torch.Tensor], proposals: List[Instances],
                targets: Optional[List[Instances]] = None) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """Training: ([], losses ``loss_cls``, ``loss_box_reg`` [, ``loss_mask`` on the foreground RoIs]).
        Inference: (per image Instances with ``pred_boxes``, ``scores``, ``pred_classes`` [, ``pred_masks``], {})."""
        if self.training:
            if targets is None:
                raise ValueError("Res5ROIHeads needs targets in training (inputs lack 'instances')")
            proposals = self.label_and_sample_proposals(proposals, targets)
        box_features = self._shared_roi_transform(features, [p.proposal_boxes for p in proposals])
        predictions = self.box_predictor(box_features.mean(dim=[2, 3]))
        if not self.training:
            pred_instances, _ = self.box_predictor.inference(predictions, proposals)
            return self.forward_with_given_boxes(features, pred_instances), {}
        losses = self.box_predictor.losses(predictions, proposals)
        if self.mask_on:
            # the RoI transform is shared: the mask head reads the foreground RoIs' res5 features
            foreground, selection = select_foreground_proposals(proposals, self.num_classes)
            losses.update(self.mask_head(box_features[torch.cat(selection, dim=0)], foreground))
        return [], losses

    def forward_with_given_boxes(self, features: Dict[str, torch.Tensor], instances: List[Instances]) -> List[Instances]:
        """Run the mask branch on given detections (``pred_boxes``, ``pred_classes``); inference only."""
        if self.training:
            raise RuntimeError("forward_with_given_boxes is for inference; call model.eval() first")
        if not self.mask_on:
            return instances
        mask_features = self._shared_roi_transform(features, [x.pred_boxes for x in instances])
        return self.mask_head(mask_features, instances)
