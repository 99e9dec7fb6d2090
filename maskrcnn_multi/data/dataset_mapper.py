"""DatasetMapper: one dataset dict -> the model's input dict (detectron2's default mapping).

Reads the image in INPUT.FORMAT, applies the augmentations, and in training builds
``instances = Instances(gt_boxes, gt_classes, gt_masks)``. Padding to SIZE_DIVISIBILITY is left to
the model's ``ImageList``; only the static-shape mode (INPUT.FIX_SHAPE) pads here.
"""
import copy
import logging
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from maskrcnn_multi.config.errors import UserError, short_repr

from . import detection_utils as utils
from .crop import RandomCrop
from .validation import DatasetError
from .transforms import TransformGen, apply_transform_gens

__all__ = ["DatasetMapper"]

logger = logging.getLogger(__name__)


class DatasetMapper:
    """Callable mapping a dataset dict to ``{"image": uint8 CHW tensor, "height", "width", ...,
    "instances" (training only)}``.

    Args:
        is_train: training keeps non-crowd annotations as ``instances``; inference drops annotations.
        augmentations: transform generators applied in order (see ``build_augmentation``).
        image_format: "BGR", "RGB" or "L".
        use_instance_mask: keep segmentations as ``gt_masks``.
        instance_mask_format: "polygon" (PolygonMasks) or "bitmask" (BitMasks).
        fix_shape: optional (H, W), as INPUT.FIX_SHAPE: pad every image (bottom/right, with ``pad_value``) to this size so a
            static-shape backend sees one shape; the unpadded (h, w) is kept in "image_size".
        fix_max_gt: with ``fix_shape``, keep at most this many ground-truth instances per image
            (a random subset when there are more).
        pad_value: per-channel value of the padding (the pixel mean, so padding normalises to 0).
        recompute_boxes: make each box the tight box of its (cropped) mask, as detectron2 does when
            INPUT.CROP is on for a mask model (a cropped polygon's old box would overhang it).
    """

    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: Sequence[TransformGen],
        image_format: str = "BGR",
        use_instance_mask: bool = False,
        instance_mask_format: str = "polygon",
        fix_shape: Optional[Tuple[int, int]] = None,
        fix_max_gt: Optional[int] = None,
        pad_value: Sequence[float] = (0.0,),
        recompute_boxes: bool = False,
    ):
        if instance_mask_format not in ("polygon", "bitmask"):
            raise UserError(f"unknown INPUT.MASK_FORMAT {instance_mask_format!r} (choose from: polygon, bitmask)")
        if fix_shape is not None and (len(fix_shape) != 2 or min(fix_shape) <= 0):
            raise UserError(f"INPUT.FIX_SHAPE must be (height, width) with positive sides, got {fix_shape!r}")
        self.is_train = is_train
        self.augmentations: List[TransformGen] = list(augmentations)
        self.image_format = image_format
        self.use_instance_mask = use_instance_mask
        self.instance_mask_format = instance_mask_format
        self.fix_shape = tuple(int(side) for side in fix_shape) if fix_shape is not None else None
        self.fix_max_gt = fix_max_gt
        self.pad_value = tuple(float(value) for value in pad_value)
        self.recompute_boxes = recompute_boxes
        mode = "training" if is_train else "inference"
        logger.info("DatasetMapper (%s) augmentations: %s", mode, self.augmentations)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> "DatasetMapper":
        """Build from a config: INPUT.*, MODEL.MASK_ON, MODEL.PIXEL_MEAN (the padding value).

        The static shape is INPUT.FIX_SHAPE as given; () keeps dynamic shapes. A device that wants
        static shapes by default (NPU) gets its shape from the engine, which resolves the key through
        the backend before building loaders (`engine.runtime.resolve_input_shape`).
        """
        fix_shape = tuple(cfg.INPUT.get("FIX_SHAPE", ()) or ()) or None
        augmentations = utils.build_augmentation(cfg, is_train)
        crop = is_train and cfg.INPUT.CROP.ENABLED
        if crop:  # first, on the original image, as detectron2
            augmentations.insert(0, RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
        return cls(
            is_train,
            augmentations=augmentations,
            recompute_boxes=crop and cfg.MODEL.MASK_ON,
            image_format=cfg.INPUT.FORMAT,
            use_instance_mask=cfg.MODEL.MASK_ON,
            instance_mask_format=cfg.INPUT.MASK_FORMAT,
            fix_shape=fix_shape,
            fix_max_gt=cfg.INPUT.get("FIX_MAX_GT", None) if fix_shape else None,
            pad_value=cfg.MODEL.PIXEL_MEAN,
        )

    def __call__(self, dataset_dict: dict) -> dict:
        """Map one dict. Raises ``utils.BadImageError`` naming the file if its image is unusable, and
        ``DatasetError`` naming it if an annotation's box or polygon is not finite numbers."""
        dataset_dict = copy.deepcopy(dataset_dict)  # the caller's dict is reused every epoch
        image = utils.read_image(dataset_dict["file_name"], self.image_format)
        utils.check_image_size(dataset_dict, image)
        image, transforms = apply_transform_gens(self.augmentations, image)
        image_shape = image.shape[:2]
        if self.fix_shape is not None:
            image = self._pad_to_fix_shape(image, dataset_dict["file_name"])
            dataset_dict["image_size"] = tuple(image_shape)
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            dataset_dict["instances"] = self._build_instances(dataset_dict, transforms, image_shape)
        return dataset_dict

    def _build_instances(self, dataset_dict: dict, transforms, image_shape):
        annotations = []
        raw_annotations = dataset_dict.pop("annotations")
        utils.check_annotation_values(raw_annotations, dataset_dict["file_name"])
        for annotation in raw_annotations:
            if annotation.get("iscrowd", 0) != 0:
                continue
            if not self.use_instance_mask:
                annotation.pop("segmentation", None)
            elif "segmentation" not in annotation:
                raise DatasetError(
                    f"{dataset_dict['file_name']}: an annotation (box {short_repr(annotation.get('bbox'))}) has no "
                    "segmentation, but MODEL.MASK_ON needs a mask for every instance (add it, or train with "
                    "MODEL.MASK_ON False)"
                )
            annotations.append(utils.transform_instance_annotations(annotation, transforms, image_shape))
        instances = utils.annotations_to_instances(annotations, image_shape, self.instance_mask_format)
        if self.recompute_boxes and instances.has("gt_masks"):
            instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
        instances, num_dropped = utils.filter_empty_instances(instances)
        if num_dropped:
            logger.debug(
                "%s: dropped %d instances with zero or negative size after transforms",
                dataset_dict["file_name"], num_dropped,
            )
        if self.fix_shape is not None:
            instances = self._cap_instances(instances)
        return instances

    def _pad_to_fix_shape(self, image: np.ndarray, file_name: str) -> np.ndarray:
        """Pad HxWxC ``image`` at the bottom/right to INPUT.FIX_SHAPE (H, W)."""
        fix_height, fix_width = self.fix_shape
        height, width = image.shape[:2]
        if height > fix_height or width > fix_width:
            raise UserError(
                f"{file_name}: image of (H, W) = ({height}, {width}) after resizing does not fit "
                f"INPUT.FIX_SHAPE ({fix_height}, {fix_width})"
            )
        channels = image.shape[2]
        pad_value = self.pad_value if len(self.pad_value) == channels else self.pad_value[:1] * channels
        padded = np.empty((fix_height, fix_width, channels), dtype=image.dtype)
        fill = np.asarray(pad_value, dtype=np.float64)
        padded[...] = np.round(fill).astype(image.dtype) if image.dtype == np.uint8 else fill.astype(image.dtype)
        padded[:height, :width] = image
        return padded

    def _cap_instances(self, instances):
        if self.fix_max_gt is None or len(instances) <= self.fix_max_gt:
            return instances
        keep = np.sort(np.random.permutation(len(instances))[: self.fix_max_gt])
        return instances[torch.from_numpy(keep)]
