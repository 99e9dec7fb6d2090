"""Pure-PyTorch twins of the native ops: they run on any device and are what the kernels are tested
against. Each follows its peer's arithmetic (torchvision's C++ kernels, detectron2's mask pasting)."""
from .box_iou import box_iou
from .conv2d import conv2d
from .deform_conv import deform_conv2d
from .linear import linear
from .nms import nms
from .paste_masks import paste_masks, paste_masks_in_image, region_masks
from .roi_align import roi_align

__all__ = ["box_iou", "conv2d", "deform_conv2d", "linear", "nms", "paste_masks", "paste_masks_in_image", "region_masks", "roi_align"]
