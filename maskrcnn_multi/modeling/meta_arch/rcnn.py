"""R-CNN meta-architectures: backbone + proposal generator + RoI heads (detectron2's ``GeneralizedRCNN``)."""
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from maskrcnn_multi.config.configurable import configurable
from maskrcnn_multi.config.errors import UserError
from maskrcnn_multi.modeling.backbone import build_backbone
from maskrcnn_multi.modeling.postprocessing import detector_postprocess
from maskrcnn_multi.modeling.proposal_generator import build_proposal_generator
from maskrcnn_multi.modeling.roi_heads import build_roi_heads
from maskrcnn_multi.structures import ImageList, Instances

__all__ = ["GeneralizedRCNN", "ProposalNetwork"]


class _Preprocessing(nn.Module):
    """Normalisation with ``pixel_mean`` / ``pixel_std`` buffers and batching into a padded ImageList."""

    # what the batched input is converted to, once, before the backbone (see set_input_layout)
    input_dtype: Optional[torch.dtype] = None
    input_memory_format: torch.memory_format = torch.contiguous_format

    def set_input_layout(self, dtype: Optional[torch.dtype] = None,
                         memory_format: torch.memory_format = torch.contiguous_format) -> None:
        """Convert the normalized, padded batch Tensor[N, C, H, W] to ``dtype`` (None: keep float32)
        and ``memory_format`` in one copy, so the backbone's first layer gets what all its layers use."""
        self.input_dtype = dtype
        self.input_memory_format = memory_format

    def _init_pixel_stats(self, pixel_mean: Sequence[float], pixel_std: Sequence[float]) -> None:
        if len(pixel_mean) != len(pixel_std):
            raise UserError(f"MODEL.PIXEL_MEAN {list(pixel_mean)} and MODEL.PIXEL_STD {list(pixel_std)} "
                             f"have different lengths")
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        """Normalise each ``"image"`` Tensor[C, H, W] and pad the batch to the backbone's size divisibility.

        An image the data layer already padded to a static shape (INPUT.FIX_SHAPE) carries its unpadded
        ``"image_size"`` (h, w): that, not the padded tensor's size, bounds proposals and scales outputs.
        """
        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        image_list = ImageList.from_tensors(images, self.backbone.size_divisibility,
                                            padding_constraints=getattr(self.backbone, "padding_constraints", None))
        image_list.image_sizes = [tuple(x.get("image_size", size)) for x, size in zip(batched_inputs,
                                                                                      image_list.image_sizes)]
        if self.input_dtype is not None or self.input_memory_format != torch.contiguous_format:
            image_list.tensor = image_list.tensor.to(dtype=self.input_dtype or image_list.tensor.dtype,
                                                     memory_format=self.input_memory_format)
        return image_list

    def _gt_instances(self, batched_inputs: List[Dict]) -> Optional[List[Instances]]:
        if "instances" not in batched_inputs[0]:
            return None
        return [x["instances"].to(self.device) for x in batched_inputs]


class GeneralizedRCNN(_Preprocessing):
    """Faster / Mask R-CNN.

    Input: a list of dicts, one per image: ``"image"`` Tensor[C, H, W] in INPUT.FORMAT (pixel values
    0-255, already resized), optional ``"height"``, ``"width"`` (the output size, usually the original image's),
    and in training ``"instances"`` (Instances with ``gt_boxes``, ``gt_classes`` [, ``gt_masks``]).
    Output: training, a dict of losses; inference, per image ``{"instances": Instances}`` with ``pred_boxes``,
    ``scores``, ``pred_classes`` [, ``pred_masks`` BoolTensor[R, height, width]] in output coordinates.
    """

    @configurable
    def __init__(self, *, backbone: nn.Module, proposal_generator: nn.Module, roi_heads: nn.Module,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float]):
        super().__init__()
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads
        self._init_pixel_stats(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg) -> Dict:
        backbone = build_backbone(cfg)
        output_shape = backbone.output_shape()
        return {
            "backbone": backbone,
            "proposal_generator": build_proposal_generator(cfg, output_shape),
            "roi_heads": build_roi_heads(cfg, output_shape),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    def forward(self, batched_inputs: List[Dict]):
        """Losses in training, detections in eval mode (see the class docstring)."""
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        gt_instances = self._gt_instances(batched_inputs)
        features = self.backbone(images.tensor)
        if self.proposal_generator is not None:
            proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        else:
            proposals = [x["proposals"].to(self.device) for x in batched_inputs]
            proposal_losses = {}
        _, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
        losses = dict(detector_losses)
        losses.update(proposal_losses)
        return losses

    def inference(self, batched_inputs: List[Dict], detected_instances: Optional[List[Instances]] = None,
                  do_postprocess: bool = True):
        """Detections per image; with ``detected_instances`` only the mask branch runs on the given boxes.
        ``do_postprocess=False`` returns raw Instances in the (resized) input coordinates."""
        if self.training:
            raise RuntimeError("GeneralizedRCNN.inference needs eval mode; call model.eval() first")
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        if detected_instances is None:
            if self.proposal_generator is not None:
                proposals, _ = self.proposal_generator(images, features, None)
            else:
                proposals = [x["proposals"].to(self.device) for x in batched_inputs]
            results, _ = self.roi_heads(images, features, proposals, None)
        else:
            detected_instances = [x.to(self.device) for x in detected_instances]
            results = self.roi_heads.forward_with_given_boxes(features, detected_instances)
        if not do_postprocess:
            return results
        return self._postprocess(results, batched_inputs, images.image_sizes)

    @staticmethod
    def _postprocess(instances: List[Instances], batched_inputs: List[Dict], image_sizes) -> List[Dict]:
        """Rescale each image's detections to its requested ``height`` x ``width``."""
        processed = []
        for results, inputs, image_size in zip(instances, batched_inputs, image_sizes):
            height = inputs.get("height", image_size[0])
            width = inputs.get("width", image_size[1])
            processed.append({"instances": detector_postprocess(results, height, width)})
        return processed


class ProposalNetwork(_Preprocessing):
    """RPN only: returns per image ``{"proposals": Instances}`` (``proposal_boxes``, ``objectness_logits``)."""

    @configurable
    def __init__(self, *, backbone: nn.Module, proposal_generator: nn.Module, pixel_mean: Sequence[float],
                 pixel_std: Sequence[float]):
        super().__init__()
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self._init_pixel_stats(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg) -> Dict:
        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "proposal_generator": build_proposal_generator(cfg, backbone.output_shape()),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    def forward(self, batched_inputs: List[Dict]):
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        gt_instances = self._gt_instances(batched_inputs) if self.training else None
        proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        if self.training:
            return proposal_losses
        processed = []
        for results, inputs, image_size in zip(proposals, batched_inputs, images.image_sizes):
            height = inputs.get("height", image_size[0])
            width = inputs.get("width", image_size[1])
            processed.append({"proposals": detector_postprocess(results, height, width)})
        return processed
