"""TEST.AUG: test-time augmentation, detectron2's ``GeneralizedRCNNWithTTA``.

Each image is run at every short side of TEST.AUG.MIN_SIZES (long side at most TEST.AUG.MAX_SIZE),
and mirrored when TEST.AUG.FLIP. The boxes of all versions, mapped back to the original image, are
merged by per-class NMS (MODEL.ROI_HEADS.NMS_THRESH_TEST, TEST.DETECTIONS_PER_IMAGE); then the mask
head runs on the merged boxes in every version and the masks (in box coordinates, un-mirrored) are
averaged before they are pasted. The model runs as inference runs it (``engine.inference``).
"""
import contextlib
import copy
from itertools import count
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..config.errors import UserError
from ..data.transforms import (
    HFlipTransform, NoOpTransform, RandomFlip, ResizeShortestEdge, ResizeTransform, TransformList,
    apply_transform_gens,
)
from ..modeling.postprocessing import detector_postprocess
from ..modeling.roi_heads.fast_rcnn import fast_rcnn_inference_single_image
from ..structures import Boxes, Instances

__all__ = ["DatasetMapperTTA", "GeneralizedRCNNWithTTA"]


class DatasetMapperTTA:
    """One mapped input (``image`` CHW uint8 as the test loader gives it, ``height``, ``width`` of
    the original) -> its augmented versions, each with the ``transforms`` from the original image."""

    def __init__(self, min_sizes: Sequence[int], max_size: int, flip: bool):
        self.min_sizes = tuple(int(size) for size in min_sizes)
        self.max_size = int(max_size)
        self.flip = bool(flip)
        if not self.min_sizes:
            raise UserError("TEST.AUG.MIN_SIZES is empty: give the short sides to test at")

    @classmethod
    def from_config(cls, cfg) -> "DatasetMapperTTA":
        return cls(cfg.TEST.AUG.MIN_SIZES, cfg.TEST.AUG.MAX_SIZE, cfg.TEST.AUG.FLIP)

    def __call__(self, dataset_dict: Dict) -> List[Dict]:
        image = dataset_dict["image"].permute(1, 2, 0).numpy()
        original = (dataset_dict["height"], dataset_dict["width"])
        # the loader resized the original already: that resize is part of every version's transform
        loaded = (ResizeTransform(original[0], original[1], image.shape[0], image.shape[1])
                  if image.shape[:2] != original else NoOpTransform())
        versions = []
        for min_size in self.min_sizes:
            resize = ResizeShortestEdge(min_size, self.max_size)
            versions.append([resize])
            if self.flip:
                versions.append([resize, RandomFlip(prob=1.0)])
        augmented = []
        for generators in versions:
            new_image, transforms = apply_transform_gens(generators, np.copy(image))
            version = copy.copy(dataset_dict)
            version["image"] = torch.from_numpy(np.ascontiguousarray(new_image.transpose(2, 0, 1)))
            version["transforms"] = TransformList([loaded, transforms])
            augmented.append(version)
        return augmented


class GeneralizedRCNNWithTTA(nn.Module):
    """``GeneralizedRCNNWithTTA(cfg, inference_model)(batched_inputs)`` -> ``[{"instances": ...}]``
    in original-image coordinates, as the model's own call returns them.

    ``inference_model``: an ``engine.inference.InferenceModel``; ``batch_size``: augmented versions
    per forward.
    """

    def __init__(self, cfg, inference_model: nn.Module, tta_mapper: Optional[DatasetMapperTTA] = None,
                 batch_size: int = 3):
        super().__init__()
        if cfg.MODEL.META_ARCHITECTURE != "GeneralizedRCNN":
            raise UserError(f"TEST.AUG needs MODEL.META_ARCHITECTURE GeneralizedRCNN, got {cfg.MODEL.META_ARCHITECTURE!r}")
        self.inference_model = inference_model
        self.tta_mapper = tta_mapper if tta_mapper is not None else DatasetMapperTTA.from_config(cfg)
        self.batch_size = batch_size
        self.num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
        self.nms_thresh = cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST
        self.detections_per_image = cfg.TEST.DETECTIONS_PER_IMAGE
        self.mask_on = cfg.MODEL.MASK_ON

    def train(self, mode: bool = True) -> "GeneralizedRCNNWithTTA":
        self.training = False  # inference only, as the InferenceModel it runs
        return self

    def forward(self, batched_inputs: List[Dict]) -> List[Dict]:
        return [self._inference_one_image(inputs) for inputs in batched_inputs]

    @contextlib.contextmanager
    def _masks_off(self):
        """The first pass needs boxes only: the mask head is skipped."""
        roi_heads = self.inference_model.graph().roi_heads
        saved = roi_heads.mask_on
        roi_heads.mask_on = False
        try:
            yield
        finally:
            roi_heads.mask_on = saved

    def _batch_inference(self, inputs: List[Dict], detected: Optional[List[Instances]] = None) -> List[Instances]:
        outputs = []
        for start in range(0, len(inputs), self.batch_size):
            given = detected[start:start + self.batch_size] if detected is not None else None
            outputs.extend(self.inference_model.inference(inputs[start:start + self.batch_size], given,
                                                          do_postprocess=False))
        return outputs

    def _inference_one_image(self, inputs: Dict) -> Dict:
        original = (inputs["height"], inputs["width"])
        versions = self.tta_mapper(inputs)
        transforms = [version.pop("transforms") for version in versions]
        with self._masks_off():
            outputs = self._batch_inference(versions)
        merged = self._merge_detections(outputs, transforms, original)
        if not self.mask_on:
            return {"instances": merged}
        given = []
        for version, transform in zip(versions, transforms):
            boxes = torch.from_numpy(transform.apply_box(merged.pred_boxes.tensor.cpu().numpy())).float()
            given.append(Instances(tuple(version["image"].shape[1:3]), pred_boxes=Boxes(boxes),
                                   pred_classes=merged.pred_classes, scores=merged.scores))
        outputs = self._batch_inference(versions, given)
        masks = []
        for output, transform in zip(outputs, transforms):
            flipped = any(isinstance(t, HFlipTransform) for t in transform.transforms)
            masks.append(output.pred_masks.float().flip(dims=[3]) if flipped else output.pred_masks.float())
        merged = merged.to(masks[0].device)
        merged.pred_masks = torch.stack(masks).mean(dim=0)
        return {"instances": detector_postprocess(merged, *original)}

    def _merge_detections(self, outputs: List[Instances], transforms, original) -> Instances:
        """Every version's detections in original coordinates, merged by per-class NMS."""
        boxes = [torch.from_numpy(transform.inverse().apply_box(output.pred_boxes.tensor.float().cpu().numpy()))
                 for output, transform in zip(outputs, transforms)]
        all_boxes = torch.cat(boxes).float()
        scores = torch.cat([output.scores.float().cpu() for output in outputs])
        classes = torch.cat([output.pred_classes.cpu() for output in outputs])
        scores_per_class = torch.zeros(len(all_boxes), self.num_classes + 1)  # + the background column
        for index, cls, score in zip(count(), classes.tolist(), scores):
            scores_per_class[index, cls] = score
        merged, _ = fast_rcnn_inference_single_image(all_boxes, scores_per_class, original, 1e-8,
                                                     self.nms_thresh, self.detections_per_image)
        return merged
