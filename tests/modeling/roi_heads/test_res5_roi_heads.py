"""Res5ROIHeads (C4): res5 on pooled res4 RoIs, shared by the box predictor and the mask head."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rcnn_helpers import make_random_batch, make_small_c4_cfg  # noqa: E402

from maskrcnn_multi.config.errors import UserError  # noqa: E402
from maskrcnn_multi.modeling import Res5ROIHeads, build_model  # noqa: E402
from maskrcnn_multi.modeling.inference_graph import build_inference_graph  # noqa: E402
from maskrcnn_multi.modeling.layers import ShapeSpec  # noqa: E402

MASK_LOSSES = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask"}


def test_training_step_gives_losses_and_gradients_through_res5():
    model = build_model(make_small_c4_cfg(mask_on=True)).train()
    assert isinstance(model.roi_heads, Res5ROIHeads)
    seen = {}

    def record_mask_inputs(module, args):
        features, instances = args
        seen["mask_rois"] = features.shape[0]
        seen["instances"] = instances

    model.roi_heads.mask_head.register_forward_pre_hook(record_mask_inputs)
    losses = model(make_random_batch(num_images=2, height=128, width=160))
    assert set(losses) == MASK_LOSSES
    assert all(value.dim() == 0 and torch.isfinite(value) for value in losses.values()), losses
    # the mask head reads the foreground RoIs' res5 features only
    foreground = seen["instances"]
    assert seen["mask_rois"] == sum(len(x) for x in foreground) > 0
    assert all(((x.gt_classes >= 0) & (x.gt_classes < 3)).all() for x in foreground)
    sum(losses.values()).backward()
    parameters = dict(model.named_parameters())
    for name in ("roi_heads.res5.0.conv1.weight", "roi_heads.res5.2.conv3.weight", "roi_heads.box_predictor.cls_score.weight",
                 "roi_heads.box_predictor.bbox_pred.weight", "roi_heads.mask_head.deconv.weight",
                 "backbone.res4.0.conv1.weight", "proposal_generator.rpn_head.conv.weight"):
        grad = parameters[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_faster_c4_has_no_mask_head_and_trains():
    model = build_model(make_small_c4_cfg(mask_on=False)).train()
    assert not hasattr(model.roi_heads, "mask_head")
    losses = model(make_random_batch(num_images=1, seed=3))
    assert set(losses) == MASK_LOSSES - {"loss_mask"}
    sum(losses.values()).backward()


def test_inference_honours_detections_per_image_and_the_fused_graph_agrees():
    cfg = make_small_c4_cfg(mask_on=True)
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.TEST.DETECTIONS_PER_IMAGE = 7
    model = build_model(cfg).eval()
    batch = make_random_batch(num_images=2, height=96, width=128, with_targets=False)
    batch[1]["height"], batch[1]["width"] = 192, 256
    with torch.no_grad():
        outputs = model(batch)
        fused_outputs = build_inference_graph(model, memory_format=torch.channels_last)(batch)
    for output, fused in zip(outputs, fused_outputs):
        instances, fused_instances = output["instances"], fused["instances"]
        assert 0 < len(instances) <= 7 and len(fused_instances) == len(instances)
        torch.testing.assert_close(fused_instances.scores, instances.scores, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(fused_instances.pred_boxes.tensor, instances.pred_boxes.tensor, atol=1e-2, rtol=1e-4)
    assert outputs[1]["instances"].pred_masks.shape[1:] == (192, 256)


def test_keyword_form_equals_config_form():
    cfg = make_small_c4_cfg(mask_on=True)
    input_shape = {"res4": ShapeSpec(channels=256, stride=16)}
    torch.manual_seed(0)
    by_config = Res5ROIHeads(cfg, input_shape)
    torch.manual_seed(0)
    by_keywords = Res5ROIHeads(**Res5ROIHeads.from_config(cfg, input_shape))
    assert by_config.state_dict().keys() == by_keywords.state_dict().keys()
    for name, value in by_config.state_dict().items():
        torch.testing.assert_close(by_keywords.state_dict()[name], value)
    assert by_config.pooler.output_size == (14, 14) and by_config.res5[0].stride == 2


@pytest.mark.parametrize("in_features, channels, message", [
    (["res3", "res4"], 256, "IN_FEATURES"),
    (["res4"], 128, "RES2_OUT_CHANNELS"),
])
def test_bad_configs_name_the_key(in_features, channels, message):
    cfg = make_small_c4_cfg()
    cfg.MODEL.ROI_HEADS.IN_FEATURES = in_features
    input_shape = {"res3": ShapeSpec(channels=channels // 2, stride=8), "res4": ShapeSpec(channels=channels, stride=16)}
    with pytest.raises(UserError, match=message):
        Res5ROIHeads(cfg, input_shape)
