"""LossScaler: static scale, dynamic backoff and growth, skipped steps, state round trip."""
import logging

import pytest
import torch

from maskrcnn_multi.backends import LossScaler
from maskrcnn_multi.backends.amp import apply_opt_level


def _param_and_sgd(value=1.0):
    param = torch.nn.Parameter(torch.full((3,), value))
    return param, torch.optim.SGD([param], lr=0.5)


def test_static_scale_multiplies_the_loss_and_unscales_grads():
    scaler = LossScaler(64)
    param, sgd = _param_and_sgd()
    loss = (param * torch.tensor([1.0, 2.0, 3.0])).sum()
    scaled = scaler.scale(loss)
    assert scaled.item() == pytest.approx(64 * loss.item())
    scaled.backward()
    assert torch.equal(param.grad, torch.tensor([64.0, 128.0, 192.0]))
    scaler.unscale_(sgd)
    assert torch.equal(param.grad, torch.tensor([1.0, 2.0, 3.0]))
    scaler.step(sgd)
    scaler.update()
    assert torch.allclose(param.detach(), torch.tensor([0.5, 0.0, -0.5]))
    assert scaler.get_scale() == 64.0 and scaler.skipped_steps == 0


def test_dynamic_scaler_skips_inf_step_and_backs_off(caplog):
    scaler = LossScaler("dynamic")
    assert scaler.get_scale() == 2.0**16
    param, sgd = _param_and_sgd()
    scaler.scale((param * float("inf")).sum()).backward()
    with caplog.at_level(logging.WARNING):
        assert scaler.step(sgd) is None
    scaler.update()
    assert torch.equal(param.detach(), torch.ones(3))
    assert scaler.skipped_steps == 1 and scaler.get_scale() == 2.0**15
    assert "iteration 0" in caplog.text and "skipped" in caplog.text


def test_static_scaler_also_skips_nan_steps():
    scaler = LossScaler(64.0)
    param, sgd = _param_and_sgd()
    param.grad = torch.tensor([1.0, float("nan"), 0.0])
    scaler.step(sgd)
    scaler.update()
    assert torch.equal(param.detach(), torch.ones(3)) and scaler.skipped_steps == 1
    assert scaler.get_scale() == 64.0


def test_dynamic_scaler_grows_after_growth_interval_good_steps():
    from maskrcnn_multi.backends import LossScaler

    scaler = LossScaler("dynamic", init_scale=8.0, growth_interval=3)
    param, sgd = _param_and_sgd()
    for step in range(3):
        sgd.zero_grad()
        scaler.scale(param.sum()).backward()
        scaler.step(sgd)
        scaler.update()
        assert scaler.get_scale() == (16.0 if step == 2 else 8.0)
    assert scaler.skipped_steps == 0


def test_state_dict_round_trip():
    from maskrcnn_multi.backends import LossScaler

    scaler = LossScaler("dynamic", init_scale=8.0)
    param, sgd = _param_and_sgd()
    param.grad = torch.full((3,), float("inf"))
    scaler.step(sgd)
    scaler.update()
    restored = LossScaler("dynamic")
    restored.load_state_dict(scaler.state_dict())
    assert restored.state_dict() == scaler.state_dict()
    assert restored.get_scale() == 4.0 and restored.skipped_steps == 1 and restored.iteration == 1


def test_scaler_unscales_master_grads_of_o2_optimizer():
    model = torch.nn.Linear(2, 1)
    optimizer = apply_opt_level(model, torch.optim.SGD(model.parameters(), lr=1.0), "O2", torch.float16)
    scaler = LossScaler(64)
    model.weight.grad = torch.full_like(model.weight, 64.0)
    model.bias.grad = torch.full_like(model.bias, 128.0)
    scaler.unscale_(optimizer)
    masters = optimizer.param_groups[0]["params"]
    assert masters[0].grad.dtype == torch.float32 and torch.all(masters[0].grad == 1.0)
    before = masters[1].detach().clone()
    scaler.step(optimizer)
    assert torch.equal(masters[1].detach(), before - 2.0)
    assert torch.equal(model.bias.detach(), masters[1].detach().half())


def test_bad_loss_scale_value():
    with pytest.raises(ValueError, match=r"LOSS_SCALE_VALUE must be a positive number \(a static loss scale\) or 'dynamic', got 0"):
        LossScaler(0)


@pytest.mark.parametrize("poisoned", [0, 1], ids=["in-fp32", "in-bf16"])
def test_an_inf_in_any_dtype_group_skips_the_step(poisoned):
    params = [torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2, dtype=torch.bfloat16))]
    sgd = torch.optim.SGD(params, lr=0.5)
    scaler = LossScaler(8.0)
    for index, param in enumerate(params):
        param.grad = torch.full_like(param, float("inf") if index == poisoned else 8.0)
    assert scaler.step(sgd) is None and scaler.skipped_steps == 1
    scaler.update()
    for index, param in enumerate(params):
        param.grad = torch.full_like(param, 8.0)
    scaler.step(sgd)
    assert all(torch.equal(param.detach().float(), torch.full((2,), 0.5)) for param in params)
