"""Name conversions and suffix matching."""
import pytest
import torch

from maskrcnn_multi.checkpoint import convert_basic_c2_names, convert_torchvision_resnet_names, match_by_suffix


def test_convert_basic_c2_names_examples():
    c2 = ["conv1_w", "res_conv1_bn_s", "res_conv1_bn_b", "res2_0_branch1_w", "res2_0_branch1_bn_s",
          "res3_2_branch2c_bn_b", "res4_5_branch2b_w", "fc1000_w", "pred_b"]
    assert convert_basic_c2_names(c2) == [
        "stem.conv1.weight", "stem.conv1.norm.weight", "stem.conv1.norm.bias", "res2.0.shortcut.weight",
        "res2.0.shortcut.norm.weight", "res3.2.conv3.norm.bias", "res4.5.conv2.weight", "fc1000.weight", "linear.bias",
    ]


def test_convert_torchvision_names_examples():
    tv = {k: torch.zeros(1) for k in ["conv1.weight", "bn1.running_var", "layer1.0.bn3.weight",
                                      "layer2.0.downsample.0.weight", "layer4.2.downsample.1.bias",
                                      "layer3.1.conv2.weight", "layer1.0.bn1.num_batches_tracked", "fc.weight"]}
    assert sorted(convert_torchvision_resnet_names(tv)) == sorted([
        "stem.conv1.weight", "stem.conv1.norm.running_var", "res2.0.conv3.norm.weight",
        "res3.0.shortcut.weight", "res5.2.shortcut.norm.bias", "res4.1.conv2.weight",
    ])


def test_match_by_suffix_prefers_longest_and_respects_dots():
    model_keys = ["backbone.bottom_up.stem.conv1.weight", "backbone.bottom_up.res2.0.conv1.weight",
                  "roi_heads.mask_head.x_conv1.weight"]
    ckpt_keys = ["stem.conv1.weight", "res2.0.conv1.weight", "conv1.weight"]
    assert match_by_suffix(model_keys, ckpt_keys) == {
        "backbone.bottom_up.stem.conv1.weight": "stem.conv1.weight",
        "backbone.bottom_up.res2.0.conv1.weight": "res2.0.conv1.weight",
    }
    with pytest.raises(ValueError, match="'w' matches two model keys"):
        match_by_suffix(["a.w", "b.w"], ["w"])
