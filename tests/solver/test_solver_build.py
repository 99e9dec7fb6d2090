"""build_optimizer: parameter groups (norm / bias hyper-parameters) and gradient clipping."""
import pytest
import torch
from torch import nn

from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.solver import build_optimizer, get_default_optimizer_params


class _CustomNorm(nn.Module):
    is_normalization = True

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))


class _TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.custom = _CustomNorm(4)
        self.fc = nn.Linear(4, 2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)
        self.shared = self.fc  # the same parameters reachable twice


def _cfg(**solver):
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.WEIGHT_DECAY = 1e-4
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0
    for key, value in solver.items():
        setattr(cfg.SOLVER, key, value)
    return cfg


def _hyper_params_by_name(model, optimizer):
    by_id = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            by_id[id(param)] = (group["lr"], group["weight_decay"])
    return {name: by_id.get(id(param)) for name, param in model.named_parameters()}


def test_norm_parameters_get_weight_decay_norm():
    model = _TinyNet()
    optimizer = build_optimizer(_cfg(), model)
    hyper = _hyper_params_by_name(model, optimizer)
    for name in ("bn.weight", "bn.bias", "gn.weight", "gn.bias", "custom.weight", "custom.bias"):
        assert hyper[name] == (0.1, 0.0), name
    assert hyper["conv.weight"] == (0.1, 1e-4)
    assert hyper["fc.bias"] == (0.1, 1e-4)  # WEIGHT_DECAY_BIAS None follows WEIGHT_DECAY


def test_bias_lr_factor_and_weight_decay_bias():
    model = _TinyNet()
    optimizer = build_optimizer(_cfg(BIAS_LR_FACTOR=2.0, WEIGHT_DECAY_BIAS=0.0), model)
    hyper = _hyper_params_by_name(model, optimizer)
    assert hyper["conv.bias"] == pytest.approx((0.2, 0.0))
    assert hyper["fc.weight"] == (0.1, 1e-4)
    assert hyper["bn.bias"] == (0.1, 0.0)  # a norm's bias is a norm parameter first


def test_each_trainable_parameter_once_and_frozen_ones_left_out():
    model = _TinyNet()
    optimizer = build_optimizer(_cfg(), model)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(params) == len({id(p) for p in params})
    assert all(p.requires_grad for p in params)
    assert not any(p is model.frozen.weight for p in params)
    assert optimizer.defaults["momentum"] == 0.9


def test_groups_merge_equal_hyper_parameters():
    groups = get_default_optimizer_params(_TinyNet(), base_lr=0.1, weight_decay=1e-4, weight_decay_norm=0.0)
    assert len(groups) == 2
    assert len({(g["lr"], g["weight_decay"]) for g in groups}) == 2


def _clipped_grads(clip_type, clip_value=0.5):
    cfg = _cfg()
    cfg.SOLVER.BASE_LR = 0.0  # the step must not change the weights, only clip
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = clip_type
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = clip_value
    model = nn.Linear(3, 2)
    optimizer = build_optimizer(cfg, model)
    model.weight.grad = torch.full_like(model.weight, 3.0)
    model.bias.grad = torch.full_like(model.bias, -4.0)
    optimizer.step()
    return model.weight.grad, model.bias.grad


def test_clip_by_value():
    weight_grad, bias_grad = _clipped_grads("value")
    assert torch.all(weight_grad == 0.5) and torch.all(bias_grad == -0.5)


@pytest.mark.parametrize("clip_type", ["norm", "full_model"])
def test_clip_by_norm(clip_type):
    weight_grad, bias_grad = _clipped_grads(clip_type)
    total_norm = torch.cat([weight_grad.flatten(), bias_grad.flatten()]).norm()
    if clip_type == "full_model":
        assert total_norm == pytest.approx(0.5, rel=1e-4)
        assert weight_grad.norm() > bias_grad.norm()  # one common factor keeps their ratio
    else:  # detectron2's "norm": each parameter on its own (both of these had norms above 0.5)
        assert weight_grad.norm() == pytest.approx(0.5, rel=1e-4)
        assert bias_grad.norm() == pytest.approx(0.5, rel=1e-4)


def test_unknown_clip_type_names_the_key():
    cfg = _cfg()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "l1"
    with pytest.raises(ValueError, match="SOLVER.CLIP_GRADIENTS.CLIP_TYPE 'l1'"):
        build_optimizer(cfg, nn.Linear(2, 2))


def test_adamw_keeps_the_parameter_groups_and_decouples_weight_decay():
    cfg = _cfg()
    cfg.SOLVER.OPTIMIZER = "AdamW"
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.WEIGHT_DECAY = 0.5
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.BatchNorm1d(2))
    optimizer = build_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["betas"] == (cfg.SOLVER.MOMENTUM, 0.999)
    assert sorted(g["weight_decay"] for g in optimizer.param_groups) == [0.0, 0.5]
    before = model[0].weight.detach().clone()
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    optimizer.step()  # zero gradients: only the decoupled decay moves the weights, by lr * wd
    torch.testing.assert_close(model[0].weight.detach(), before * (1 - 0.1 * 0.5))
    assert torch.equal(model[1].weight.detach(), torch.ones(2))


def test_unknown_optimizer_names_the_key():
    cfg = _cfg()
    cfg.SOLVER.OPTIMIZER = "LAMB"
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER 'LAMB'"):
        build_optimizer(cfg, nn.Linear(2, 2))


@pytest.mark.parametrize("name", ["SGD", "AdamW"])
def test_the_cpu_uses_the_fused_kernels_with_the_same_steps(name):
    """Backend.fused_optimizers: one kernel for all parameters; the steps equal the loop's."""
    cfg = _cfg(OPTIMIZER=name)
    torch.manual_seed(0)
    model, reference_model = _TinyNet(), _TinyNet()
    reference_model.load_state_dict(model.state_dict())
    optimizer = build_optimizer(cfg, model)
    assert all(group.get("fused") for group in optimizer.param_groups)
    reference = torch.optim.SGD if name == "SGD" else torch.optim.AdamW
    arguments = {"momentum": cfg.SOLVER.MOMENTUM} if name == "SGD" else {"betas": (cfg.SOLVER.MOMENTUM, 0.999)}
    loop = reference(get_default_optimizer_params(reference_model, base_lr=0.1, weight_decay=1e-4,
                                                  weight_decay_norm=0.0), lr=0.1, foreach=False, **arguments)
    for step in range(3):
        for net in (model, reference_model):
            for param in net.parameters():
                if param.requires_grad:
                    param.grad = torch.full_like(param, 0.1 * (step + 1))
        optimizer.step()
        loop.step()
    for (name_, fused), (_, looped) in zip(model.named_parameters(), reference_model.named_parameters()):
        torch.testing.assert_close(fused, looped, rtol=1e-6, atol=1e-7, msg=name_)
