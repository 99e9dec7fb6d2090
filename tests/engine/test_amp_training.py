"""Mixed precision through the backend (CPU: bfloat16 autocast): O0, O1, O2 with a static and a
dynamic loss scale train and converge; non-finite gradients skip the step and are counted."""
import pytest
import torch
from torch import nn

from maskrcnn_multi.backends import LossScaler, get_backend
from maskrcnn_multi.backends.amp import apply_opt_level
from maskrcnn_multi.engine.train_loop import SimpleTrainer


class _TinyConvNet(nn.Module):
    """conv -> batch norm -> pooled linear; returns a dict of losses like a detector."""

    def __init__(self, poison_at=None, poison_from=None):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 2)
        self.poison_at = poison_at
        self.poison_from = poison_from
        self.calls = 0

    def forward(self, batch):
        images, targets = batch
        dtype = self.conv.weight.dtype  # the O2 model is half: feed it its own dtype
        features = torch.relu(self.norm(self.conv(images.to(dtype))))
        logits = self.head(features.mean(dim=(2, 3)))
        loss_cls = nn.functional.cross_entropy(logits.float(), targets)
        loss_reg = 0.001 * self.head.weight.float().pow(2).sum()
        if self.calls == self.poison_at or (self.poison_from is not None and self.calls >= self.poison_from):
            loss_cls = loss_cls * float("inf")
        self.calls += 1
        return {"loss_cls": loss_cls, "loss_reg": loss_reg}


def _batches():
    generator = torch.Generator().manual_seed(1)
    while True:
        targets = torch.randint(0, 2, (8,), generator=generator)
        images = torch.randn(8, 3, 8, 8, generator=generator) * 0.5
        images[:, 0] += targets.view(-1, 1, 1) * 1.5 - 0.75  # the class shifts channel 0
        yield images, targets


def _amp_trainer(opt_level, loss_scale, poison_at=None, poison_from=None):
    backend = get_backend("cpu")
    model = _TinyConvNet(poison_at, poison_from)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    optimizer = apply_opt_level(model, optimizer, opt_level, backend.amp_dtype())
    scaler = LossScaler(loss_scale) if opt_level != "O0" else None
    trainer = SimpleTrainer(model, _batches(), optimizer, autocast=lambda: backend.autocast(opt_level), loss_scaler=scaler)
    return trainer, model


def _totals(trainer):
    return [value for value, _ in trainer.storage.history("total_loss").values()]


@pytest.mark.parametrize(
    "opt_level, loss_scale", [("O0", None), ("O1", "dynamic"), ("O2", 64.0), ("O2", "dynamic")]
)
def test_losses_finite_and_falling(opt_level, loss_scale):
    trainer, _ = _amp_trainer(opt_level, loss_scale)
    trainer.train(0, 30)
    totals = _totals(trainer)
    assert all(torch.isfinite(torch.tensor(totals)))
    first, last = sum(totals[:5]) / 5, sum(totals[-5:]) / 5
    assert last < 0.7 * first, (opt_level, totals)
    if opt_level != "O0":
        assert trainer.storage.history("skipped_steps").latest() == 0


def test_o2_keeps_fp32_masters_and_fp32_norms():
    trainer, model = _amp_trainer("O2", 64.0)
    trainer.train(0, 3)
    assert model.conv.weight.dtype == torch.bfloat16
    assert model.norm.weight.dtype == torch.float32
    masters = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert all(p.dtype == torch.float32 for p in masters)


def test_inf_gradients_skip_the_step_and_count_it_in_o2_dynamic(caplog):
    trainer, model = _amp_trainer("O2", "dynamic", poison_at=4)
    weights = {}
    original_run_step = trainer.run_step

    def run_step_recording():
        weights[trainer.iter] = model.conv.weight.detach().clone()
        original_run_step()
        weights[f"after{trainer.iter}"] = model.conv.weight.detach().clone()

    trainer.run_step = run_step_recording
    with caplog.at_level("WARNING"):
        trainer.train(0, 8)
    assert torch.equal(weights[4], weights["after4"])  # the poisoned step changed nothing
    assert not torch.equal(weights[5], weights["after5"])  # and training went on
    skipped = dict((it, value) for value, it in trainer.storage.history("skipped_steps").values())
    assert skipped[3] == 0 and skipped[4] == 1 and skipped[7] == 1
    scales = dict((it, value) for value, it in trainer.storage.history("loss_scale").values())
    assert scales[4] == scales[3] / 2
    assert any("iteration 4" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)
    assert all(torch.isfinite(torch.tensor(_totals(trainer)[5:])))


@pytest.mark.parametrize("loss_scale, limit", [("dynamic", 32), (64.0, 10)], ids=["dynamic", "static64"])
def test_a_run_of_skipped_steps_stops_training_naming_the_iteration(loss_scale, limit):
    """A broken loss must not train on for ever skipping every step (nor exit 0 at the end)."""
    trainer, _ = _amp_trainer("O2", loss_scale, poison_from=5)
    last = 5 + limit - 1
    with pytest.raises(FloatingPointError, match=rf"^{limit} optimizer steps in a row skipped .* the last at iteration {last} "):
        trainer.train(0, 200)
    assert trainer.iter == last


def test_a_short_run_whose_every_step_was_skipped_fails():
    trainer, _ = _amp_trainer("O2", "dynamic", poison_from=0)
    with pytest.raises(FloatingPointError, match=r"no optimizer step was taken in 6 iteration\(s\) \(up to iteration 5\)"):
        trainer.train(0, 6)


# The detector itself, through DefaultTrainer (helpers shared with the resume test).
from test_resume import DefaultTrainer, _one_thread_no_eval, tiny_cfg  # noqa: E402,F401


@pytest.mark.slow
@pytest.mark.parametrize("amp", [
    ("AMP", "0"),
    ("AMP", "1", "OPT_LEVEL", "O1"),
    ("AMP", "1", "OPT_LEVEL", "O2", "LOSS_SCALE_VALUE", "64"),
    ("AMP", "1", "OPT_LEVEL", "O2", "LOSS_SCALE_VALUE", "dynamic"),
], ids=["O0", "O1", "O2-static64", "O2-dynamic"])
def test_mask_rcnn_trains_under_each_opt_level(tiny_shapes, tmp_path, amp):
    trainer = DefaultTrainer(tiny_cfg(tmp_path, 20, 1000, "SOLVER.STEPS", "(1000,)", *amp))
    trainer.resume_or_load(resume=False)
    trainer.train()
    totals = _totals(trainer)
    assert len(totals) == 20 and all(torch.isfinite(torch.tensor(totals)))
    # batches of 2 make single losses noisy: compare the start (at init) with a longer late window
    assert sum(totals[-6:]) / 6 < 0.9 * sum(totals[:3]) / 3, totals
    if amp[1] == "1":
        assert trainer.storage.history("skipped_steps").latest() == 0
        assert trainer.storage.history("loss_scale").latest() == (64.0 if "64" in amp else 2.0**16)
    if "O2" in amp:  # the final checkpoint holds the fp32 masters, not the half model's roundings
        saved = torch.load(tmp_path / "model_final.pth", weights_only=True)["model"]
        half = {name: p for name, p in trainer.unwrapped_model.named_parameters() if p.dtype == torch.bfloat16}
        assert half and all(value.dtype == torch.float32 for value in saved.values() if value.is_floating_point())
        assert all(torch.equal(saved[name].to(torch.bfloat16), param) for name, param in half.items())
        assert any(not torch.equal(saved[name], param.float()) for name, param in half.items())
