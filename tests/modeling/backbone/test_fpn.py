"""FPN and build_backbone: names, levels, fusion, config reading."""
import pytest
import torch
import torch.nn.functional as F

from maskrcnn_multi.modeling.backbone import FPN, LastLevelMaxPool, build_backbone, build_resnet
from maskrcnn_multi.modeling.layers import ShapeSpec

ALL_STAGES = ["res2", "res3", "res4", "res5"]


def _fpn(**kwargs):
    bottom_up = build_resnet(18, res2_out_channels=64, out_features=ALL_STAGES)
    return FPN(bottom_up, ALL_STAGES, 32, top_block=LastLevelMaxPool(), **kwargs)


def test_fpn_names_levels_and_p6():
    fpn = _fpn()
    keys = set(fpn.state_dict())
    for level in range(2, 6):
        assert {f"fpn_lateral{level}.weight", f"fpn_lateral{level}.bias", f"fpn_output{level}.weight"} <= keys
    assert "bottom_up.stem.conv1.weight" in keys and not any(k.startswith(("lateral_convs", "output_convs")) for k in keys)
    assert fpn.size_divisibility == 32 and fpn.padding_constraints == {"square_size": 0}
    outputs = fpn(torch.rand(1, 3, 64, 128))
    assert list(outputs) == ["p2", "p3", "p4", "p5", "p6"]
    for name, stride in zip(outputs, (4, 8, 16, 32, 64)):
        assert outputs[name].shape == (1, 32, 64 // stride, 128 // stride)
        assert fpn.output_shape()[name] == ShapeSpec(channels=32, stride=stride)
    torch.testing.assert_close(outputs["p6"], F.max_pool2d(outputs["p5"], kernel_size=1, stride=2))


def test_fpn_avg_fuse_halves_the_sum():
    torch.manual_seed(1)
    summed = _fpn(fuse_type="sum")
    averaged = _fpn(fuse_type="avg")
    averaged.load_state_dict(summed.state_dict())
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out_sum, out_avg = summed(image), averaged(image)
    torch.testing.assert_close(out_sum["p5"], out_avg["p5"])  # top level has nothing to fuse
    assert not torch.allclose(out_sum["p2"], out_avg["p2"])
    with pytest.raises(ValueError, match="FUSE_TYPE 'max'"):
        _fpn(fuse_type="max")


def test_fpn_with_norm_has_no_bias():
    fpn = _fpn(norm="GN")
    assert fpn.fpn_lateral2.bias is None and "fpn_lateral2.norm.weight" in fpn.state_dict()


def test_build_backbone_from_reference_config(reference_dir):
    from maskrcnn_multi.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(reference_dir / "d2_r18_shapes" / "config.yaml"))
    backbone = build_backbone(cfg)
    assert isinstance(backbone, FPN) and backbone.bottom_up.res2[0].conv1.in_channels == 64
    assert list(backbone.output_shape()) == ["p2", "p3", "p4", "p5", "p6"]
    assert backbone.output_shape()["p2"].channels == 64

    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    assert list(build_backbone(cfg, ShapeSpec(channels=3)).output_shape()) == ALL_STAGES
    cfg.MODEL.BACKBONE.NAME = "build_vit_backbone"
    with pytest.raises(ValueError, match="unknown MODEL.BACKBONE.NAME 'build_vit_backbone' \\(choose from: build_resnet_backbone"):
        build_backbone(cfg)
