"""detectron2's registry names, importable where detectron2's users import them, are our tables."""
import torch
from torch import nn

from rcnn_helpers import make_random_batch, make_small_cfg
from maskrcnn_multi import modeling
from maskrcnn_multi.modeling import (
    ANCHOR_GENERATOR_REGISTRY,
    BACKBONE_REGISTRY,
    META_ARCH_REGISTRY,
    PROPOSAL_GENERATOR_REGISTRY,
    ROI_BOX_HEAD_REGISTRY,
    ROI_HEADS_REGISTRY,
    ROI_MASK_HEAD_REGISTRY,
    RPN_HEAD_REGISTRY,
    StandardROIHeads,
    build_model,
)
from maskrcnn_multi.modeling.backbone import Backbone
from maskrcnn_multi.modeling.layers import ShapeSpec


def test_each_name_is_the_table_of_its_config_key():
    from maskrcnn_multi.modeling import anchor_generator, backbone, meta_arch, proposal_generator, roi_heads
    from maskrcnn_multi.modeling.roi_heads import box_head, mask_head

    assert BACKBONE_REGISTRY is backbone.BACKBONE_BUILDERS is backbone.BACKBONE_REGISTRY
    assert META_ARCH_REGISTRY is meta_arch.META_ARCHITECTURES is meta_arch.META_ARCH_REGISTRY
    assert PROPOSAL_GENERATOR_REGISTRY is proposal_generator.PROPOSAL_GENERATORS
    assert RPN_HEAD_REGISTRY is proposal_generator.RPN_HEADS
    assert ANCHOR_GENERATOR_REGISTRY is anchor_generator.ANCHOR_GENERATORS
    assert ROI_HEADS_REGISTRY is roi_heads.ROI_HEADS is roi_heads.ROI_HEADS_REGISTRY
    assert ROI_BOX_HEAD_REGISTRY is box_head.BOX_HEADS is roi_heads.ROI_BOX_HEAD_REGISTRY
    assert ROI_MASK_HEAD_REGISTRY is mask_head.MASK_HEADS is roi_heads.ROI_MASK_HEAD_REGISTRY
    keys = {table.config_key for table in (BACKBONE_REGISTRY, META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY,
                                           RPN_HEAD_REGISTRY, ANCHOR_GENERATOR_REGISTRY, ROI_HEADS_REGISTRY,
                                           ROI_BOX_HEAD_REGISTRY, ROI_MASK_HEAD_REGISTRY)}
    assert len(keys) == 8
    assert {"StandardROIHeads", "CascadeROIHeads"} <= set(ROI_HEADS_REGISTRY)
    assert {name for name in modeling.__all__ if name.endswith("_REGISTRY")} == {
        "BACKBONE_REGISTRY", "META_ARCH_REGISTRY", "PROPOSAL_GENERATOR_REGISTRY", "RPN_HEAD_REGISTRY",
        "ANCHOR_GENERATOR_REGISTRY", "ROI_HEADS_REGISTRY", "ROI_BOX_HEAD_REGISTRY", "ROI_MASK_HEAD_REGISTRY"}


def test_a_decorated_roi_head_is_built_from_the_config_and_runs():
    @ROI_HEADS_REGISTRY.register()
    class FewerDetectionsROIHeads(StandardROIHeads):
        """A user's head: StandardROIHeads keeping 5 detections per image."""

        def forward(self, images, features, proposals, targets=None):
            results, losses = super().forward(images, features, proposals, targets)
            return ([r[:5] for r in results] if not self.training else results), losses

    try:
        cfg = make_small_cfg()
        cfg.MODEL.ROI_HEADS.NAME = "FewerDetectionsROIHeads"
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
        model = build_model(cfg).eval()
        assert type(model.roi_heads) is FewerDetectionsROIHeads
        with torch.no_grad():
            outputs = model(make_random_batch(num_images=1, with_targets=False))
        assert len(outputs[0]["instances"]) <= 5
    finally:
        del ROI_HEADS_REGISTRY["FewerDetectionsROIHeads"]


class _ToyFPNBackbone(Backbone):
    """p2..p6 from strided convolutions, 32 channels each (what the small config's heads read)."""

    def __init__(self, cfg, input_shape: ShapeSpec):
        super().__init__()
        channels = cfg.MODEL.FPN.OUT_CHANNELS
        self.stem = nn.Conv2d(input_shape.channels, channels, kernel_size=4, stride=4)
        self.downs = nn.ModuleList(nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(4))
        self._out_features = [f"p{level}" for level in range(2, 7)]
        self._out_feature_channels = {name: channels for name in self._out_features}
        self._out_feature_strides = {f"p{level}": 2 ** level for level in range(2, 7)}

    @property
    def size_divisibility(self) -> int:
        return 64

    def forward(self, x):
        outputs = {"p2": self.stem(x)}
        for level, down in zip(range(3, 7), self.downs):
            outputs[f"p{level}"] = down(outputs[f"p{level - 1}"])
        return outputs


def test_a_decorated_backbone_is_built_from_the_config_and_trains():
    BACKBONE_REGISTRY.register(_ToyFPNBackbone)
    try:
        cfg = make_small_cfg(mask_on=False)
        cfg.MODEL.BACKBONE.NAME = "_ToyFPNBackbone"
        model = build_model(cfg).train()
        assert type(model.backbone) is _ToyFPNBackbone
        losses = model(make_random_batch())
        assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}
        sum(losses.values()).backward()
        assert model.backbone.stem.weight.grad.abs().sum() > 0
    finally:
        del BACKBONE_REGISTRY["_ToyFPNBackbone"]
