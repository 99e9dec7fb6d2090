"""Deformable ResNet stages (MODEL.RESNETS.DEFORM_*): detectron2's DeformBottleneckBlock parameter names
and shapes, zero-initialised offsets (a fresh block is its plain twin), and the dconv model zoo config
building, predicting and training on a small input."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rcnn_helpers import make_random_batch  # noqa: E402
from maskrcnn_multi.config import get_cfg  # noqa: E402
from maskrcnn_multi.modeling import build_model  # noqa: E402
from maskrcnn_multi.modeling.backbone import BottleneckBlock, DeformBottleneckBlock, build_resnet  # noqa: E402
from maskrcnn_multi.modeling.deform_conv import DeformConv, ModulatedDeformConv  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "Misc"


def _thin_dconv_cfg(config_name: str, **resnets):
    """The model zoo config, thinned: R50 with 8 channels per group, FPN of 32, 3 classes, few proposals."""
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / config_name))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 16
    for key, value in resnets.items():
        cfg.MODEL.RESNETS[key] = value
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 32
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 200
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 100
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 100
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    return cfg


@pytest.mark.parametrize("config_name", ["mask_rcnn_R_50_FPN_1x_dconv_c3-c5.yaml",
                                         "mask_rcnn_R_50_FPN_3x_dconv_c3-c5.yaml"])
def test_dconv_config_has_detectron2_names_and_trains(config_name):
    cfg = _thin_dconv_cfg(config_name)
    assert list(cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE) == [False, True, True, True]
    assert cfg.MODEL.RESNETS.DEFORM_MODULATED is False
    torch.manual_seed(0)
    model = build_model(cfg)
    shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    bottleneck = {"res3": 16, "res4": 32, "res5": 64}
    for stage, blocks in (("res3", 4), ("res4", 6), ("res5", 3)):
        channels = bottleneck[stage]
        for index in range(blocks):
            prefix = f"backbone.bottom_up.{stage}.{index}"
            assert shapes[f"{prefix}.conv2_offset.weight"] == (18, channels, 3, 3)
            assert shapes[f"{prefix}.conv2_offset.bias"] == (18,)
            assert shapes[f"{prefix}.conv2.weight"] == (channels, channels, 3, 3)
            for statistic in ("weight", "bias", "running_mean", "running_var"):
                assert shapes[f"{prefix}.conv2.norm.{statistic}"] == (channels,)
            assert f"{prefix}.conv2.bias" not in shapes
    assert not any(name.startswith("backbone.bottom_up.res2.0.conv2_offset") for name in shapes)
    block = model.backbone.bottom_up.res4[0]
    assert isinstance(block, DeformBottleneckBlock) and isinstance(block.conv2, DeformConv)
    assert torch.count_nonzero(block.conv2_offset.weight) == 0 and torch.count_nonzero(block.conv2_offset.bias) == 0

    model.train()
    losses = model(make_random_batch(num_images=2, height=64, width=96))
    assert all(torch.isfinite(value) for value in losses.values()), losses
    sum(losses.values()).backward()
    offset_grad = model.backbone.bottom_up.res3[0].conv2_offset.weight.grad
    conv2_grad = model.backbone.bottom_up.res5[2].conv2.weight.grad
    assert offset_grad is not None and torch.isfinite(offset_grad).all() and offset_grad.abs().sum() > 0
    assert conv2_grad is not None and torch.isfinite(conv2_grad).all() and conv2_grad.abs().sum() > 0

    model.eval()
    model.roi_heads.box_predictor.test_score_thresh = 0.0
    with torch.no_grad():
        outputs = model(make_random_batch(num_images=1, height=64, width=96, with_targets=False))
    assert outputs[0]["instances"].image_size == (64, 96)


def test_modulated_groups_names_and_shapes():
    model = build_resnet(50, stem_out_channels=16, res2_out_channels=32, width_per_group=8, num_groups=2,
                         out_features=["res5"], deform_on_per_stage=[False, False, True, True],
                         deform_modulated=True, deform_num_groups=2)
    assert isinstance(model.res3[0], BottleneckBlock)
    block = model.res4[1]
    assert isinstance(block.conv2, ModulatedDeformConv)
    # res4's bottleneck: 2 groups x 8 x 4 = 64 channels
    assert block.conv2_offset.weight.shape == (27 * 2, 64, 3, 3)
    assert block.conv2.weight.shape == (64, 32, 3, 3) and block.conv2.bias is None
    assert block.conv2.groups == 2 and block.conv2.deformable_groups == 2
    output = model(torch.rand(1, 3, 64, 64))["res5"]
    assert output.shape == (1, 256, 2, 2) and torch.isfinite(output).all()


@pytest.mark.parametrize("modulated", [False, True], ids=["dcn_v1", "dcn_v2"])
def test_fresh_deformable_block_equals_its_plain_twin(modulated):
    """Zero offsets sample the regular grid (and a zero mask logit halves every sample, as sigmoid(0))."""
    torch.manual_seed(1)
    kwargs = dict(bottleneck_channels=8, stride=2, num_groups=2, norm="FrozenBN", stride_in_1x1=False, dilation=1)
    deform = DeformBottleneckBlock(16, 32, deform_modulated=modulated, **kwargs).eval()
    plain = BottleneckBlock(16, 32, **kwargs).eval()
    plain.load_state_dict({k: v for k, v in deform.state_dict().items() if "conv2_offset" not in k})
    if modulated:
        plain.conv2.weight.data.mul_(0.5)
    x = torch.rand(2, 16, 9, 10)
    torch.testing.assert_close(deform(x), plain(x), rtol=1e-5, atol=1e-5)


def test_deformable_stages_need_a_divisible_group_count():
    with pytest.raises(ValueError, match="DEFORM_NUM_GROUPS 3 does not divide res3's"):
        build_resnet(50, width_per_group=8, res2_out_channels=32, stem_out_channels=16,
                     deform_on_per_stage=[False, True, True, True], deform_num_groups=3)
    with pytest.raises(ValueError, match="DeformConv has no bias"):
        DeformConv(4, 4, 3, bias=True)
