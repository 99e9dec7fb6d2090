"""A small ResNet-18 + FPN R-CNN config and random batches for the modeling tests (imported by them)."""
import numpy as np
import torch

from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.structures import Boxes, Instances, PolygonMasks


def make_small_cfg(mask_on: bool = True):
    """R18-FPN(32 channels), 3 classes, few proposals: trains a step on CPU in a second or two."""
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.MASK_ON = mask_on
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32], [64], [128], [256]]
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 200
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 100
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 100
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 64
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    cfg.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"
    cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = 2
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 32
    cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14
    return cfg


def make_random_batch(num_images: int = 2, height: int = 128, width: int = 160, num_classes: int = 3,
                      seed: int = 0, with_targets: bool = True):
    """``num_images`` dicts with a random image and 2-3 boxes, each with a triangle polygon mask."""
    generator = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(num_images):
        record = {"image": torch.randint(0, 256, (3, height, width), generator=generator).float(),
                  "height": height, "width": width}
        if with_targets:
            count = int(torch.randint(2, 4, (1,), generator=generator))
            corner = torch.rand(count, 2, generator=generator) * torch.tensor([width * 0.5, height * 0.5])
            size = 16 + torch.rand(count, 2, generator=generator) * 48
            boxes = torch.cat([corner, corner + size], dim=1)
            instances = Instances((height, width))
            instances.gt_boxes = Boxes(boxes)
            instances.gt_classes = torch.randint(0, num_classes, (count,), generator=generator)
            instances.gt_masks = PolygonMasks([[np.array([x0, y0, x1, y0, (x0 + x1) / 2, y1])]
                                               for x0, y0, x1, y1 in boxes.tolist()])
            record["instances"] = instances
        batch.append(record)
    return batch



def make_small_c4_cfg(mask_on: bool = True):
    """A thin R50-C4 (detectron2's Base-RCNN-C4 layout: backbone to res4, res5 in Res5ROIHeads) with
    res4 at 256 channels and res5 at 512, 3 classes and few proposals."""
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.MASK_ON = mask_on
    cfg.MODEL.PIXEL_STD = [57.375, 57.12, 58.395]
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.DEPTH = 50
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res4"]
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16, 32, 64]]
    cfg.MODEL.RPN.IN_FEATURES = ["res4"]
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 200
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 100
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 64
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 32
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 64
    cfg.MODEL.ROI_HEADS.NAME = "Res5ROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["res4"]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 14
    cfg.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"
    cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = 0
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 32
    return cfg
