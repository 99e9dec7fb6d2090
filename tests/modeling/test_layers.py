"""Conv2d with norm/activation, get_norm, FrozenBatchNorm2d and helpers behave as detectron2's."""
import pytest
import torch
from torch import nn

from maskrcnn_multi.backends.amp import is_normalization
from maskrcnn_multi.modeling.layers import (
    Conv2d,
    FrozenBatchNorm2d,
    ShapeSpec,
    SyncBatchNorm,
    c2_msra_fill,
    c2_xavier_fill,
    cat,
    get_norm,
    nonzero_tuple,
)


def _random_bn(channels=6):
    bn = nn.BatchNorm2d(channels)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.normal_()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    return bn.eval()


def test_conv2d_norm_keys_and_forward_order():
    conv = Conv2d(3, 6, kernel_size=3, padding=1, bias=False, norm=get_norm("FrozenBN", 6), activation=torch.relu)
    assert list(conv.state_dict()) == ["weight", "norm.weight", "norm.bias", "norm.running_mean", "norm.running_var"]
    conv.norm.bias.fill_(-100.0)
    out = conv(torch.rand(2, 3, 5, 5))
    assert out.shape == (2, 6, 5, 5) and (out == 0).all()  # norm then relu


def test_get_norm_variants_and_unknown_name():
    assert get_norm("", 4) is None and get_norm(None, 4) is None
    assert isinstance(get_norm("BN", 4), nn.BatchNorm2d)
    assert isinstance(get_norm("SyncBN", 4), SyncBatchNorm)  # ours: device-generic, a BatchNorm2d
    assert isinstance(get_norm("FrozenBN", 4), FrozenBatchNorm2d)
    group_norm = get_norm("GN", 64)
    assert isinstance(group_norm, nn.GroupNorm) and group_norm.num_groups == 32
    assert isinstance(get_norm(lambda c: nn.LayerNorm(c), 4), nn.LayerNorm)
    for name in ("BN", "SyncBN", "FrozenBN", "GN"):  # AMP O2 keeps every one of them fp32
        assert is_normalization(get_norm(name, 64)), name
    with pytest.raises(ValueError, match="unknown norm 'LN'"):
        get_norm("LN", 4)


@pytest.mark.parametrize("requires_grad", [False, True])
def test_frozen_bn_equals_eval_batchnorm(requires_grad):
    bn = _random_bn()
    frozen = FrozenBatchNorm2d.convert_frozen_batchnorm(bn)
    assert isinstance(frozen, FrozenBatchNorm2d) and len(list(frozen.parameters())) == 0
    x = torch.randn(2, 6, 4, 4, requires_grad=requires_grad)
    torch.testing.assert_close(frozen(x), bn(x))


def test_frozen_bn_half_input_with_fp32_buffers():
    frozen = FrozenBatchNorm2d.convert_frozen_batchnorm(_random_bn())
    x = torch.randn(1, 6, 3, 3)
    out = frozen(x.half())
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), frozen(x), atol=1e-2, rtol=1e-2)


def test_convert_frozen_batchnorm_replaces_nested_modules():
    model = nn.Sequential(nn.Conv2d(3, 6, 1), nn.Sequential(_random_bn()))
    model = FrozenBatchNorm2d.convert_frozen_batchnorm(model)
    assert isinstance(model[1][0], FrozenBatchNorm2d)


def test_frozen_bn_loads_checkpoints_without_running_stats():
    frozen = FrozenBatchNorm2d(3)
    frozen.running_mean.fill_(5.0)
    frozen.load_state_dict({"weight": torch.full((3,), 2.0), "bias": torch.ones(3), "num_batches_tracked": torch.tensor(7)})
    assert torch.equal(frozen.running_mean, torch.zeros(3)) and torch.equal(frozen.running_var, torch.ones(3))
    assert torch.equal(frozen.weight, torch.full((3,), 2.0))


def test_helpers():
    assert ShapeSpec(channels=3) == ShapeSpec(3, None, None, None)
    single = torch.ones(2)
    assert cat([single]) is single and cat([single, single]).shape == (4,)
    rows, cols = nonzero_tuple(torch.tensor([[0, 1], [1, 0]]))
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]
    assert nonzero_tuple(torch.tensor(True))[0].tolist() == [0]
    for fill in (c2_msra_fill, c2_xavier_fill):
        conv = nn.Conv2d(4, 8, 3)
        fill(conv)
        assert (conv.bias == 0).all() and conv.weight.std() > 0
