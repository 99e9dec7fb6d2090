"""AMP policy: autocast per opt level, O2 casting that spares normalization, fp32 master weights."""
import pytest
import torch
from torch import nn

from maskrcnn_multi.backends import MasterWeightOptimizer, get_backend
from maskrcnn_multi.backends.amp import apply_opt_level, cast_model_for_o2, is_normalization


class FrozenNormLike(nn.Module):
    """Stands in for modeling's FrozenBatchNorm2d, which opts in by class attribute."""

    is_normalization = True

    def __init__(self, channels):
        super().__init__()
        self.register_buffer("weight", torch.ones(channels))


def _model():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def test_o0_is_a_no_op_and_o1_autocasts_linear_to_bf16_on_cpu():
    backend = get_backend("cpu")
    layer, inputs = nn.Linear(4, 3), torch.randn(2, 4)
    with backend.autocast("O0"):
        assert layer(inputs).dtype == torch.float32
    with backend.autocast("O1"):
        assert layer(inputs).dtype == torch.bfloat16
    with backend.autocast("O1", "float16"):
        assert layer(inputs).dtype == torch.float16
    assert layer.weight.dtype == torch.float32


def test_unknown_opt_level():
    with pytest.raises(ValueError, match="unknown OPT_LEVEL 'O3'"):
        get_backend("cpu").autocast("O3")


def test_o2_casts_weights_but_keeps_normalization_fp32():
    model = nn.Sequential(_model(), FrozenNormLike(3), nn.GroupNorm(1, 2), nn.LayerNorm(2))
    cast_model_for_o2(model, torch.float16)
    linear, batch_norm = model[0][0], model[0][1]
    assert linear.weight.dtype == torch.float16 and linear.bias.dtype == torch.float16
    assert batch_norm.weight.dtype == torch.float32 and batch_norm.running_mean.dtype == torch.float32
    assert model[1].weight.dtype == torch.float32
    assert model[2].weight.dtype == torch.float32 and model[3].weight.dtype == torch.float32
    assert is_normalization(model[1]) and not is_normalization(linear)


def test_o2_keeps_constant_buffers_fp32():
    class WithConstants(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 2)
            self.register_buffer("anchors", torch.tensor([[1000.3, 4.0, 1020.7, 9.0]]), persistent=False)
            self.register_buffer("state", torch.ones(2))

    model = cast_model_for_o2(WithConstants(), torch.bfloat16)
    assert model.linear.weight.dtype == torch.bfloat16 and model.state.dtype == torch.bfloat16
    assert model.anchors.dtype == torch.float32 and model.anchors[0, 0].item() == pytest.approx(1000.3, abs=1e-4)


def test_o0_and_o1_leave_the_model_and_optimizer_alone():
    for opt_level in ("O0", "O1"):
        model = _model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        assert apply_opt_level(model, optimizer, opt_level, torch.bfloat16) is optimizer
        assert all(p.dtype == torch.float32 for p in model.parameters())


def test_o2_master_weights_step_like_fp32_sgd():
    backend = get_backend("cpu")
    reference = _model()
    model = _model()
    model.load_state_dict(reference.state_dict())
    optimizer = apply_opt_level(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), "O2",
                                backend.amp_dtype("bfloat16"))
    assert isinstance(optimizer, MasterWeightOptimizer)
    masters = [p for group in optimizer.param_groups for p in group["params"]]
    assert all(p.dtype == torch.float32 for p in masters)

    inputs = torch.randn(6, 4)
    with backend.autocast("O2", "bfloat16"):
        model(inputs).float().square().mean().backward()
    reference(inputs).square().mean().backward()
    reference_sgd = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    reference_sgd.step()
    before = model[0].weight.detach().clone()
    optimizer.step()

    linear = model[0].weight
    assert linear.dtype == torch.bfloat16 and not torch.equal(linear, before)
    master = optimizer.param_groups[0]["params"][0]
    assert torch.equal(linear, master.to(torch.bfloat16))  # half params are the rounded masters
    # the same update as the fp32 model, within bf16 forward/backward error
    torch.testing.assert_close(master, reference[0].weight, atol=2e-2, rtol=0)
    optimizer.zero_grad()
    assert linear.grad is None and master.grad is None


def test_master_weight_state_dict_round_trip():
    model = _model()
    cast_model_for_o2(model, torch.float16)
    optimizer = MasterWeightOptimizer(torch.optim.SGD(model.parameters(), lr=0.1))
    state = optimizer.state_dict()
    with torch.no_grad():
        model[0].weight.zero_()
    fresh = MasterWeightOptimizer(torch.optim.SGD(model.parameters(), lr=0.1))
    fresh.load_state_dict(state)
    assert torch.equal(model[0].weight, state["master_params"][0].half())


def test_full_precision_state_dict_gives_the_masters_under_the_model_names():
    model = _model()
    cast_model_for_o2(model, torch.float16)
    optimizer = MasterWeightOptimizer(torch.optim.SGD(model.parameters(), lr=0.1))
    # the optimizer's params follow model.parameters(): a master where the model has a half param
    optimizer_params = [p for group in optimizer.param_groups for p in group["params"]]
    with torch.no_grad():
        for param in optimizer_params:
            param.add_(1e-4)  # below fp16's resolution near 1: the half params cannot show it
    state = optimizer.full_precision_state_dict(model)
    assert list(state) == list(model.state_dict())
    assert all(value.dtype == torch.float32 for value in state.values() if value.is_floating_point())
    names = [name for name, _ in model.named_parameters()]
    for name, param, optimized in zip(names, model.parameters(), optimizer_params):
        assert torch.equal(state[name], optimized)
        if param.dtype == torch.float16:
            assert optimized is not param and not torch.equal(state[name], param.float())
