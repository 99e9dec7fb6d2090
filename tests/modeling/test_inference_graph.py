"""The inference graph: folded norms, fused convolutions, weights in the inference dtype and layout;
the same outputs as the model, and the model itself untouched."""
import pytest
import torch
from torch import nn

from maskrcnn_multi.modeling import build_model
from maskrcnn_multi.modeling.backbone import build_backbone
from maskrcnn_multi.modeling.backbone.resnet_blocks import BottleneckBlock
from maskrcnn_multi.modeling.backbone.resnet_blocks import DeformBottleneckBlock
from maskrcnn_multi.modeling.inference_graph import FusedConv2d, build_inference_graph, fold_norm
from maskrcnn_multi.modeling.layers import Conv2d, FrozenBatchNorm2d
from rcnn_helpers import make_random_batch, make_small_cfg


def _frozen_norm(channels, generator):
    norm = FrozenBatchNorm2d(channels)
    norm.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
    norm.bias.copy_(torch.randn(channels, generator=generator))
    norm.running_mean.copy_(torch.randn(channels, generator=generator))
    norm.running_var.copy_(torch.rand(channels, generator=generator) + 0.1)
    return norm


@pytest.mark.parametrize("norm_kind", ["frozen", "batchnorm-eval"])
def test_fold_norm_equals_conv_then_norm(norm_kind):
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=True).double()
    frozen = _frozen_norm(6, generator).double()
    if norm_kind == "frozen":
        norm = frozen
    else:
        norm = nn.BatchNorm2d(6).double().eval()
        norm.load_state_dict({"weight": frozen.weight, "bias": frozen.bias, "running_mean": frozen.running_mean,
                              "running_var": frozen.running_var, "num_batches_tracked": torch.tensor(1)})
    x = torch.randn(2, 4, 7, 5, generator=generator, dtype=torch.float64)
    weight, bias = fold_norm(conv.weight.detach(), conv.bias.detach(), norm)
    with torch.no_grad():
        torch.testing.assert_close(nn.functional.conv2d(x, weight, bias, padding=1), norm(conv(x)), rtol=1e-12, atol=1e-12)


def _eval_model(mask_on=True, norm="FrozenBN"):
    cfg = make_small_cfg(mask_on)
    cfg.MODEL.RESNETS.NORM = norm
    model = build_model(cfg).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial norm statistics, so a wrong fold shows
        for module in model.modules():
            if isinstance(module, (FrozenBatchNorm2d, nn.BatchNorm2d)):
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["contiguous", "cl"])
def test_graph_features_equal_the_models_in_float32(memory_format):
    model = _eval_model()
    graph = build_inference_graph(model, memory_format=memory_format)
    images = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        expected, fused = model.backbone(images), graph.backbone(images.contiguous(memory_format=memory_format))
    assert set(expected) == set(fused)
    for name in expected:
        torch.testing.assert_close(fused[name], expected[name], rtol=1e-4, atol=1e-4)
        if memory_format == torch.channels_last and name != "p6":
            assert fused[name].is_contiguous(memory_format=torch.channels_last), name  # no reorders between layers


def test_graph_detections_equal_the_models_in_float32():
    model = _eval_model()
    batch = make_random_batch(1, with_targets=False)
    with torch.no_grad():
        expected = model(batch)[0]["instances"]
        fused = build_inference_graph(model, memory_format=torch.channels_last)(batch)[0]["instances"]
    # random weights: rounding differences (summation order, the fold) grow through the network to ~1e-4
    assert len(fused) == len(expected) > 0
    torch.testing.assert_close(fused.scores, expected.scores, rtol=0, atol=1e-3)
    torch.testing.assert_close(fused.pred_boxes.tensor, expected.pred_boxes.tensor, rtol=0, atol=0.05)


def test_the_model_is_untouched_and_unchanged_tensors_are_shared():
    model = _eval_model()
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    graph = build_inference_graph(model, dtype=torch.bfloat16, memory_format=torch.channels_last)
    after = model.state_dict()
    assert list(after) == list(state)
    assert all(torch.equal(after[name], state[name]) and after[name].dtype == state[name].dtype for name in state)
    assert all(p.is_contiguous() for p in model.parameters())  # the model's layout too
    assert not any(isinstance(m, FusedConv2d) for m in model.modules())
    # what the graph does not convert, it shares (here: the anchors, a constant buffer)
    model_buffers = {id(b) for b in model.buffers()}
    assert any(id(b) in model_buffers for b in graph.buffers())
    assert graph.state_dict().keys() != state.keys()  # the graph is never what a checkpoint saves


def test_resnet_convolutions_are_fused_and_folded():
    graph = build_inference_graph(_eval_model())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in graph.modules())
    fused = [m for m in graph.backbone.modules() if isinstance(m, FusedConv2d)]
    assert fused and all(m.bias is not None for m in fused)
    activations = {m.activation for m in fused}
    assert activations == {"", "relu"}
    # FPN's plain-list views point at the fused modules too
    assert all(isinstance(conv, FusedConv2d) for conv in graph.backbone.lateral_convs + graph.backbone.output_convs)


def test_half_precision_weights_and_float32_output_layers():
    graph = build_inference_graph(_eval_model(), dtype=torch.bfloat16, memory_format=torch.channels_last)
    convs = [m for m in graph.backbone.modules() if isinstance(m, FusedConv2d)]
    assert all(m.weight.dtype == torch.bfloat16 for m in convs)
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs if m.weight.shape[-1] > 1)
    predictor = graph.roi_heads.box_predictor
    assert predictor.cls_score.layer.weight.dtype == torch.float32  # scores and deltas stay float32
    assert graph.roi_heads.box_head.fc1.weight.dtype == torch.bfloat16
    batch = make_random_batch(1, with_targets=False)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        instances = graph(batch)[0]["instances"]
    assert instances.scores.dtype == torch.float32 and instances.pred_boxes.tensor.dtype == torch.float32


def test_a_users_block_subclass_is_left_unfused():
    class MyBlock(BottleneckBlock):
        def forward(self, x):
            return super().forward(x) * 0.5

    block = MyBlock(8, 8, bottleneck_channels=4, norm="FrozenBN").eval()
    holder = nn.Sequential(block)
    graph = build_inference_graph(holder)
    assert isinstance(graph[0], MyBlock)
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(graph(x), holder(x), rtol=1e-5, atol=1e-5)


def test_a_norm_that_does_not_fold_keeps_its_convolution():
    model = _eval_model(norm="GN")
    graph = build_inference_graph(model)
    assert any(isinstance(m, nn.GroupNorm) for m in graph.modules())
    assert any(type(m) is Conv2d and isinstance(m.norm, nn.GroupNorm) for m in graph.modules())
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected, fused = model.backbone(images), graph.backbone(images)
    for name in expected:
        torch.testing.assert_close(fused[name], expected[name], rtol=1e-4, atol=1e-4)


def test_the_box_head_flattens_channels_last_features_without_a_copy():
    """Flatten + fc1 + ReLU become one FusedLinear reading a channels_last Tensor[R, C, 7, 7] as a view,
    against fc1's columns permuted to (H, W, C) order: the same numbers as the model's flatten."""
    from maskrcnn_multi.modeling.inference_graph import FusedLinear

    model = _eval_model()
    graph = build_inference_graph(model, memory_format=torch.channels_last)
    head, fused_head = model.roi_heads.box_head, graph.roi_heads.box_head
    assert isinstance(fused_head.fc1, FusedLinear) and fused_head.fc1.flattens and fused_head.fc1.activation == "relu"
    assert isinstance(fused_head.flatten, nn.Identity) and isinstance(fused_head.fc_relu1, nn.Identity)
    pooled = torch.randn(5, 32, 7, 7)
    with torch.no_grad():
        expected = head(pooled)
        for layout in (torch.channels_last, torch.contiguous_format):
            torch.testing.assert_close(fused_head(pooled.contiguous(memory_format=layout)), expected,
                                       rtol=1e-5, atol=1e-5)


def _deformable_model(modulated: bool):
    """The small model on an R50 with deformable res3-res5, its offset convs given weights (a fresh
    one predicts zero offsets, which would not test the sampling). The offsets stay near a pixel:
    random weights make activations of hundreds, and offsets of tens of pixels on such maps make the
    network chaotic (rounding differences of 1e-6 in one block grow to percents downstream)."""
    cfg = make_small_cfg(mask_on=False)
    cfg.MODEL.RESNETS.DEPTH = 50
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 16
    cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, True, True, True]
    cfg.MODEL.RESNETS.DEFORM_MODULATED = modulated
    model = build_model(cfg).eval()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, FrozenBatchNorm2d):  # scales under 1 keep 16 residual blocks' activations sane
                module.weight.copy_(torch.rand(module.num_features, generator=generator) * 0.5 + 0.3)
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            if isinstance(module, DeformBottleneckBlock):
                offset_conv = module.conv2_offset
                offset_conv.weight.copy_(torch.randn(offset_conv.weight.shape, generator=generator) * 1e-4)
                offset_conv.bias.copy_(torch.randn(offset_conv.bias.shape, generator=generator))
    return model


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["contiguous", "cl"])
@pytest.mark.parametrize("modulated", [False, True], ids=["dcn_v1", "dcn_v2"])
def test_deformable_blocks_fold_their_norm_and_keep_the_models_features(modulated, memory_format):
    model = _deformable_model(modulated)
    graph = build_inference_graph(model, memory_format=memory_format)
    fused_blocks = [m for m in graph.backbone.bottom_up.res4 if type(m).__name__ == "_FusedDeformBlock"]
    assert len(fused_blocks) == len(model.backbone.bottom_up.res4)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in graph.backbone.modules())
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model.backbone(images)
        fused = graph.backbone(images.contiguous(memory_format=memory_format))
    for name in expected:
        # activations reach ~100 through 16 unnormalised random blocks: the tolerance follows the scale
        scale = float(expected[name].abs().max())
        torch.testing.assert_close(fused[name], expected[name], rtol=1e-4, atol=1e-5 * scale)
        if memory_format == torch.channels_last and name != "p6":
            assert fused[name].is_contiguous(memory_format=torch.channels_last), name


def test_deformable_graph_runs_in_bfloat16():
    model = _deformable_model(modulated=True)
    graph = build_inference_graph(model, dtype=torch.bfloat16, memory_format=torch.channels_last)
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model.backbone(images)
        with torch.autocast("cpu", torch.bfloat16):
            fused = graph.backbone(images.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
    for name in expected:
        scale = float(expected[name].abs().max())
        assert (fused[name].float() - expected[name]).abs().max() <= 0.1 * scale, name


def test_deformable_graph_detections_equal_the_models():
    model = _deformable_model(modulated=False)
    batch = make_random_batch(1, height=64, width=96, with_targets=False)
    with torch.no_grad():
        expected = model(batch)[0]["instances"]
        fused = build_inference_graph(model, memory_format=torch.channels_last)(batch)[0]["instances"]
    assert len(fused) == len(expected) > 0
    torch.testing.assert_close(fused.scores, expected.scores, rtol=0, atol=1e-3)
    torch.testing.assert_close(fused.pred_boxes.tensor, expected.pred_boxes.tensor, rtol=0, atol=0.05)


def test_gn_everywhere_detections_equal_the_models():
    """RESNETS/FPN/ROI_BOX_HEAD/ROI_MASK_HEAD.NORM GN (detectron2's *_gn configs): nothing folds, the graph
    still runs the linears fused and gives the model's detections."""
    cfg = make_small_cfg(mask_on=True)
    cfg.MODEL.RESNETS.NORM = cfg.MODEL.FPN.NORM = "GN"
    cfg.MODEL.ROI_BOX_HEAD.NORM = cfg.MODEL.ROI_MASK_HEAD.NORM = "GN"
    cfg.MODEL.ROI_BOX_HEAD.NUM_CONV, cfg.MODEL.ROI_BOX_HEAD.CONV_DIM, cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2, 32, 1
    model = build_model(cfg).eval()
    model.roi_heads.box_predictor.test_score_thresh = 0.0
    graph = build_inference_graph(model, memory_format=torch.channels_last)
    assert not any(isinstance(m, FusedConv2d) for m in graph.backbone.modules())
    assert sum(isinstance(m, nn.GroupNorm) for m in graph.modules()) == sum(
        isinstance(m, nn.GroupNorm) for m in model.modules())
    batch = make_random_batch(1, with_targets=False)
    with torch.no_grad():
        expected, fused = model(batch)[0]["instances"], graph(batch)[0]["instances"]
    assert len(fused) == len(expected) > 0
    torch.testing.assert_close(fused.scores, expected.scores, rtol=0, atol=1e-3)
    torch.testing.assert_close(fused.pred_boxes.tensor, expected.pred_boxes.tensor, rtol=0, atol=0.05)


def test_dilated_res5_keeps_its_dilation_when_folded():
    """RES5_DILATION 2 (DC5): the folded 3x3 convolutions of res5 keep dilation and padding 2."""
    cfg = make_small_cfg(mask_on=False)
    cfg.MODEL.RESNETS.DEPTH, cfg.MODEL.RESNETS.WIDTH_PER_GROUP, cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 50, 8, 64
    cfg.MODEL.RESNETS.RES5_DILATION = 2
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.RESNETS.OUT_FEATURES = "build_resnet_backbone", ["res5"]
    backbone = build_backbone(cfg).eval()
    graph = build_inference_graph(backbone)
    fused_conv2 = graph.res5[0].convs[1]
    assert isinstance(fused_conv2, FusedConv2d) and fused_conv2.dilation == (2, 2) and fused_conv2.padding == (2, 2)
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected, fused = backbone(images), graph(images)
    assert expected["res5"].shape[-2:] == (4, 6)  # stride 16
    torch.testing.assert_close(fused["res5"], expected["res5"], rtol=1e-4, atol=1e-4)
