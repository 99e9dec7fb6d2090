"""The name -> class tables and detectron2's two calling conventions for components."""
import pytest
from torch import nn

from maskrcnn_multi.modeling import StandardROIHeads, build_model
from maskrcnn_multi.modeling.backbone import build_backbone
from maskrcnn_multi.modeling.roi_heads import ROI_HEADS, FastRCNNConvFCHead
from maskrcnn_multi.modeling.registry import Registry
from rcnn_helpers import make_small_cfg


def test_registry_registers_by_name_and_names_the_key_when_missing():
    table = Registry("MODEL.ROI_BOX_HEAD.NAME")

    @table.register()
    class MyHead(nn.Module):
        pass

    table.register(nn.Identity, name="Plain")
    assert table.get("MyHead") is MyHead and table["Plain"] is nn.Identity and list(table) == ["MyHead", "Plain"]
    with pytest.raises(ValueError, match=r"^unknown MODEL.ROI_BOX_HEAD.NAME 'Nope' \(choose from: MyHead, Plain\)$"):
        table.get("Nope")
    with pytest.raises(KeyError, match="already registered"):
        table.register(nn.ReLU, name="Plain")


def test_a_user_registered_head_is_built_from_the_config():
    class CustomROIHeads(StandardROIHeads):
        pass

    ROI_HEADS.register(CustomROIHeads)
    try:
        cfg = make_small_cfg()
        cfg.MODEL.ROI_HEADS.NAME = "CustomROIHeads"
        assert type(build_model(cfg).roi_heads) is CustomROIHeads
    finally:
        del ROI_HEADS["CustomROIHeads"]


def _shapes(module):
    return {name: tuple(value.shape) for name, value in module.state_dict().items()}


def test_config_form_and_keyword_form_build_the_same_heads():
    """StandardROIHeads(cfg, input_shape), as users' custom code calls it, equals the keyword form."""
    cfg = make_small_cfg()
    input_shape = build_backbone(cfg).output_shape()
    by_config = StandardROIHeads(cfg, input_shape)
    by_keywords = StandardROIHeads(**StandardROIHeads.from_config(cfg, input_shape))
    assert _shapes(by_config) == _shapes(by_keywords) and len(_shapes(by_config)) > 0
    by_config_keyword = StandardROIHeads(cfg=cfg, input_shape=input_shape)
    assert _shapes(by_config_keyword) == _shapes(by_config)


def test_config_form_takes_extra_keywords_that_override_from_config():
    cfg = make_small_cfg()
    head_shape = build_backbone(cfg).output_shape()["p2"]
    from maskrcnn_multi.modeling.layers import ShapeSpec

    pooled = ShapeSpec(channels=head_shape.channels, height=7, width=7)
    head = FastRCNNConvFCHead(cfg, pooled, fc_dims=[16])
    assert head.output_shape.channels == 16
    assert FastRCNNConvFCHead(cfg, pooled).output_shape.channels == cfg.MODEL.ROI_BOX_HEAD.FC_DIM


def test_calling_with_a_config_needs_from_config():
    from maskrcnn_multi.config import configurable

    class NoFromConfig(nn.Module):
        @configurable
        def __init__(self, width=1):
            super().__init__()

    assert NoFromConfig(width=2) is not None
    with pytest.raises(TypeError, match="has no from_config"):
        NoFromConfig(make_small_cfg())
