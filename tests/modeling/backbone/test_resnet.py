"""ResNet: detectron2's parameter names, strides, stride placement and freezing."""
import pytest
import torch

from maskrcnn_multi.modeling.backbone import BasicBlock, BottleneckBlock, build_resnet
from maskrcnn_multi.modeling.layers import FrozenBatchNorm2d

ALL_STAGES = ["res2", "res3", "res4", "res5"]


def test_r18_names_shapes_and_strides():
    model = build_resnet(18, res2_out_channels=64, out_features=ALL_STAGES)
    keys = set(model.state_dict())
    assert {"stem.conv1.weight", "stem.conv1.norm.running_var", "res2.0.conv1.weight", "res2.1.conv2.norm.bias",
            "res3.0.shortcut.weight", "res3.0.shortcut.norm.weight"} <= keys
    assert not any(k.startswith("res2.0.shortcut") for k in keys)  # 64 -> 64 needs no projection
    assert isinstance(model.res2[0], BasicBlock)
    outputs = model(torch.rand(1, 3, 64, 96))
    expected = {"res2": (64, 4), "res3": (128, 8), "res4": (256, 16), "res5": (512, 32)}
    for name, (channels, stride) in expected.items():
        assert outputs[name].shape == (1, channels, 64 // stride, 96 // stride)
        shape = model.output_shape()[name]
        assert (shape.channels, shape.stride) == (channels, stride)


def test_r50_bottleneck_names_and_stride_placement():
    model = build_resnet(50, out_features=["res4"])
    assert not hasattr(model, "res5")  # stages past the last output are not built
    block = model.res3[0]
    assert isinstance(block, BottleneckBlock)
    assert {"res2.0.shortcut.weight", "res2.0.conv3.norm.weight", "res4.5.conv3.weight"} <= set(model.state_dict())
    assert block.conv1.stride == (2, 2) and block.conv2.stride == (1, 1)  # STRIDE_IN_1X1 True (MSRA)
    torchvision_style = build_resnet(50, stride_in_1x1=False, out_features=["res3"])
    assert torchvision_style.res3[0].conv1.stride == (1, 1) and torchvision_style.res3[0].conv2.stride == (2, 2)
    assert model(torch.rand(1, 3, 32, 32))["res4"].shape == (1, 1024, 2, 2)


def test_groups_width_and_res5_dilation():
    model = build_resnet(50, num_groups=32, width_per_group=8, res5_dilation=2, out_features=["res5"])
    assert model.res2[0].conv2.groups == 32 and model.res2[0].conv2.out_channels == 256
    assert model.res5[0].conv2.dilation == (2, 2) and model.output_shape()["res5"].stride == 16


def test_freeze_at_converts_norms_and_stops_grads():
    model = build_resnet(18, res2_out_channels=64, norm="BN", out_features=ALL_STAGES, freeze_at=2)
    assert isinstance(model.stem.conv1.norm, FrozenBatchNorm2d)
    assert isinstance(model.res2[1].conv2.norm, FrozenBatchNorm2d)
    assert isinstance(model.res3[0].conv1.norm, torch.nn.BatchNorm2d)
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert not any(p.requires_grad for p in model.res2.parameters())
    assert all(p.requires_grad for p in model.res3.parameters())


def test_clear_errors_for_unsupported_settings():
    with pytest.raises(ValueError, match="DEFORM_ON_PER_STAGE.*unsupported for R18"):
        build_resnet(18, res2_out_channels=64, deform_on_per_stage=[False, True, True, True])
    with pytest.raises(ValueError, match="DEFORM_ON_PER_STAGE must have 4 values"):
        build_resnet(50, deform_on_per_stage=[True, True])
    with pytest.raises(ValueError, match="DEPTH 42"):
        build_resnet(42)
    with pytest.raises(ValueError, match="RES2_OUT_CHANNELS must be 64 for R18"):
        build_resnet(18, res2_out_channels=256)
    with pytest.raises(ValueError, match="'res6' is not available"):
        build_resnet(18, res2_out_channels=64, out_features=["res6"])
