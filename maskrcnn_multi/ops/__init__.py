"""Detection ops with torchvision's signatures (detectron2's for mask pasting).

Each wrapper checks its inputs, then runs the native kernel registered for the tensors' device
(`maskrcnn_multi._C`, or the NPU backend's) and otherwise its pure-PyTorch twin in `ops.reference`.
"""
from .batched_nms import batched_nms
from .box_iou import box_iou
from .conv2d import conv2d
from .deform_conv import deform_conv2d
from .linear import linear
from .nms import nms
from .paste_masks import paste_masks_in_image
from .roi_align import RoIAlign, roi_align

__all__ = ["batched_nms", "box_iou", "conv2d", "deform_conv2d", "linear", "nms", "paste_masks_in_image", "roi_align", "RoIAlign"]
