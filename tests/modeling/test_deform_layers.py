"""detectron2's DeformConv / ModulatedDeformConv layers: parameter names, initialisation, and forward as
ops.deform_conv2d followed by the norm and the activation."""
import pytest
import torch
from torch import nn

from maskrcnn_multi import ops
from maskrcnn_multi.modeling.deform_conv import DeformConv, ModulatedDeformConv
from maskrcnn_multi.modeling.layers import FrozenBatchNorm2d


def test_parameter_names_and_shapes_are_detectron2s():
    plain = DeformConv(8, 6, 3, padding=1, groups=2, deformable_groups=2, norm=FrozenBatchNorm2d(6))
    assert {name: tuple(t.shape) for name, t in plain.state_dict().items()} == {
        "weight": (6, 4, 3, 3), "norm.weight": (6,), "norm.bias": (6,), "norm.running_mean": (6,),
        "norm.running_var": (6,)}
    modulated = ModulatedDeformConv(8, 6, 3, padding=1)
    assert set(modulated.state_dict()) == {"weight", "bias"}
    assert torch.count_nonzero(modulated.bias) == 0
    assert ModulatedDeformConv(8, 6, 3, bias=False).bias is None


def test_forward_is_the_op_then_norm_then_activation():
    torch.manual_seed(0)
    norm = nn.BatchNorm2d(6).eval()
    layer = ModulatedDeformConv(4, 6, 3, stride=2, padding=1, deformable_groups=2, norm=norm,
                                activation=nn.ReLU()).eval()
    nn.init.normal_(layer.bias)
    x = torch.randn(2, 4, 9, 8)
    offset, mask = torch.randn(2, 36, 5, 4), torch.rand(2, 18, 5, 4)
    expected = torch.relu(norm(ops.deform_conv2d(x, offset, layer.weight, layer.bias, 2, 1, 1, mask,
                                                  offset_groups=2)))
    with torch.no_grad():
        torch.testing.assert_close(layer(x, offset, mask), expected)


def test_bad_group_counts_name_the_argument():
    with pytest.raises(ValueError, match="in_channels 6 is not divisible by deformable_groups 4"):
        DeformConv(6, 6, 3, deformable_groups=4)
    with pytest.raises(ValueError, match="out_channels 5 is not divisible by groups 2"):
        ModulatedDeformConv(4, 5, 3, groups=2)
