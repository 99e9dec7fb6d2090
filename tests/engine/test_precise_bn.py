"""TEST.PRECISE_BN: BatchNorm statistics recomputed as the plain average over fresh batches."""
import pytest
import torch
from torch import nn

from maskrcnn_multi.engine.precise_bn import PreciseBN, get_bn_modules, update_bn_stats

from test_resume import DefaultTrainer, losses_by_iteration, tiny_cfg  # noqa: E402


def test_the_statistics_are_the_average_of_the_batches_and_the_momentum_is_kept():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, momentum=0.1)).train()
    batches = [torch.randn(2, 3, 5, 5) * (i + 1) + i for i in range(3)]
    update_bn_stats(model, iter(batches), get_bn_modules(model), num_iter=3)
    bn = model[1]
    with torch.no_grad():
        outputs = [model[0](batch) for batch in batches]
    means = torch.stack([out.mean(dim=(0, 2, 3)) for out in outputs]).mean(0)
    variances = torch.stack([out.transpose(0, 1).reshape(4, -1).var(dim=1) for out in outputs]).mean(0)
    torch.testing.assert_close(bn.running_mean, means)
    torch.testing.assert_close(bn.running_var, variances)
    assert bn.momentum == 0.1


def test_too_few_batches_is_an_error_that_says_so():
    model = nn.BatchNorm2d(2).train()
    with pytest.raises(RuntimeError, match="ran out after 1 of 2"):
        update_bn_stats(model, iter([torch.randn(2, 2, 3, 3)]), get_bn_modules(model), num_iter=2)


def test_frozen_or_eval_mode_layers_take_no_part():
    model = nn.Sequential(nn.BatchNorm2d(2).eval(), nn.GroupNorm(1, 2))
    assert get_bn_modules(model) == []


@pytest.mark.slow
def test_precise_bn_in_a_training_run_does_not_change_the_run(tiny_shapes, tmp_path, monkeypatch):
    monkeypatch.setenv("PERF_ONLY", "")
    common = ("MODEL.RESNETS.NORM", "BN", "MODEL.FPN.NORM", "", "DATASETS.TEST", "()", "TEST.EVAL_PERIOD", "1",
              "SOLVER.STEPS", "(2,)")
    plain = DefaultTrainer(tiny_cfg(tmp_path / "plain", 3, 10, *common))
    plain.train()
    precise = DefaultTrainer(tiny_cfg(tmp_path / "precise", 3, 10, *common, "TEST.PRECISE_BN.ENABLED", "True",
                                      "TEST.PRECISE_BN.NUM_ITER", "2"))
    hook = next(h for h in precise._hooks if isinstance(h, PreciseBN))
    calls = []
    original = hook.update_stats
    monkeypatch.setattr(hook, "update_stats", lambda: (calls.append(precise.iter), original())[1])
    precise.train()
    assert calls == [0, 1, 2]  # after every iteration (EVAL_PERIOD 1)
    assert losses_by_iteration(precise) == losses_by_iteration(plain)  # its forwards drew no random numbers
    assert not any(isinstance(h, PreciseBN) for h in plain._hooks)
