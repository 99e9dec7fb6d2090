"""SimpleTrainer / TrainerBase on a tiny regression model: the loop, its logging and its errors."""
import logging

import pytest
import torch
from torch import nn

from maskrcnn_multi.engine.train_loop import HookBase, SimpleTrainer


class _Regression(nn.Module):
    """Returns a dict of two losses, like a detector in training mode."""

    def __init__(self, poison_at=None):
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.poison_at = poison_at
        self.calls = 0

    def forward(self, batch):
        inputs, targets = batch
        error = self.linear(inputs).squeeze(1) - targets
        loss_fit = (error ** 2).mean()
        loss_small = 0.01 * self.linear.weight.pow(2).sum()
        if self.poison_at is not None and self.calls == self.poison_at:
            loss_fit = loss_fit * float("nan")
        self.calls += 1
        return {"loss_fit": loss_fit, "loss_small": loss_small}


def _batches(seed=0):
    generator = torch.Generator().manual_seed(seed)
    true_weight = torch.tensor([1.0, -2.0, 0.5, 3.0])
    while True:
        inputs = torch.randn(8, 4, generator=generator)
        yield inputs, inputs @ true_weight


class _Recorder(HookBase):
    def __init__(self):
        self.calls = []

    def before_train(self):
        self.calls.append("before_train")

    def after_step(self):
        self.calls.append(("after_step", self.trainer.iter, self.trainer.storage.iter))

    def after_train(self):
        self.calls.append(("after_train", self.trainer.iter))


def _trainer(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    return SimpleTrainer(model, _batches(), optimizer)


def test_losses_fall_and_hooks_run_in_order():
    trainer = _trainer(_Regression())
    recorder = _Recorder()
    trainer.register_hooks([recorder, None])
    trainer.train(0, 30)
    totals = [value for value, _ in trainer.storage.history("total_loss").values()]
    assert len(totals) == 30
    assert sum(totals[-5:]) / 5 < 0.2 * sum(totals[:5]) / 5
    assert recorder.calls[0] == "before_train"
    assert recorder.calls[1] == ("after_step", 0, 0)
    assert recorder.calls[-1] == ("after_train", 30)
    assert set(trainer.storage.histories()) >= {"total_loss", "loss_fit", "loss_small", "data_time"}


def test_step_time_logged_for_the_first_two_iterations(caplog):
    with caplog.at_level(logging.INFO, logger="maskrcnn_multi.engine.train_loop"):
        _trainer(_Regression()).train(0, 4)
    step_times = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step_time = ")]
    assert len(step_times) == 2
    assert all(len(line.split(" = ")[1].split(".")[1]) == 4 for line in step_times)


def test_nan_loss_stops_fp32_training_naming_iteration_and_terms():
    trainer = _trainer(_Regression(poison_at=3))
    recorder = _Recorder()
    trainer.register_hooks([recorder])
    with pytest.raises(FloatingPointError) as error:
        trainer.train(0, 10)
    message = str(error.value)
    assert "\n" not in message
    assert "iteration 3" in message
    assert "loss_fit=nan" in message and "loss_small=" in message
    assert recorder.calls[-1][0] == "after_train"  # hooks still close their files


def test_eval_mode_model_is_an_error():
    model = _Regression()
    trainer = _trainer(model)
    model.eval()
    with pytest.raises(RuntimeError, match="eval mode"):
        trainer.train(0, 1)


def test_non_dict_output_is_an_error():
    class _ReturnsTensor(_Regression):
        def forward(self, batch):
            return super().forward(batch)["loss_fit"]

    with pytest.raises(TypeError, match="not a dict of losses"):
        _trainer(_ReturnsTensor()).train(0, 1)


def test_start_iter_counts_from_there():
    trainer = _trainer(_Regression())
    trainer.train(5, 8)
    iterations = [it for _, it in trainer.storage.history("total_loss").values()]
    assert iterations == [5, 6, 7]
