"""The default hooks on a tiny model: FPS, LR recording, checkpoint cadence, evaluation, writers."""
import json
import logging
import random

import pytest
import torch
from torch import nn

from maskrcnn_multi.engine import hooks
from maskrcnn_multi.engine.events import ConsoleWriter, JSONWriter
from maskrcnn_multi.engine.train_loop import SimpleTrainer
from maskrcnn_multi.solver import WarmupMultiStepLR


class _Quadratic(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))

    def forward(self, batch):
        noise = torch.randn(3) * 0.01  # draws from the global RNG, like proposal sampling does
        return {"loss_a": ((self.weight - batch) ** 2).sum() + noise.sum() * 0, "loss_b": self.weight.abs().sum() * 0.1}


def _stream():
    while True:
        yield torch.zeros(3)


def _trainer(lr=0.1):
    model = _Quadratic()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    return SimpleTrainer(model, _stream(), optimizer)


def test_iteration_timer_logs_fps_after_warmup(caplog):
    trainer = _trainer()
    timer = hooks.IterationTimer(ims_per_batch=16, warmup_iter=10)
    trainer.register_hooks([timer])
    with caplog.at_level(logging.INFO, logger="maskrcnn_multi.engine.hooks"):
        trainer.train(0, 14)
    fps_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("FPS = ")]
    assert len(fps_lines) == 1
    fps = float(fps_lines[0].split(" = ")[1])
    assert fps_lines[0] == "FPS = {:.3f}".format(fps)
    seconds = timer._seconds[10:]
    assert fps == pytest.approx(16 * 4 / sum(seconds), rel=1e-3)
    assert len(trainer.storage.history("time").values()) == 14


def test_iteration_timer_short_run_still_reports_fps(caplog):
    trainer = _trainer()
    trainer.register_hooks([hooks.IterationTimer(ims_per_batch=2, warmup_iter=10)])
    with caplog.at_level(logging.INFO, logger="maskrcnn_multi.engine.hooks"):
        trainer.train(0, 3)
    assert any(r.getMessage().startswith("FPS = ") for r in caplog.records)


def test_lr_scheduler_hook_records_lr_then_steps():
    trainer = _trainer(lr=1.0)
    scheduler = WarmupMultiStepLR(trainer.optimizer, [2], gamma=0.5, warmup_iters=0)
    trainer.register_hooks([hooks.LRScheduler(trainer.optimizer, scheduler)])
    trainer.train(0, 4)
    assert [value for value, _ in trainer.storage.history("lr").values()] == [1.0, 1.0, 0.5, 0.5]


class _FakeCheckpointer:
    def __init__(self):
        self.saved = []

    def save(self, name, **extra):
        self.saved.append((name, extra))


def test_periodic_checkpointer_saves_at_period_and_final():
    trainer = _trainer()
    checkpointer = _FakeCheckpointer()
    trainer.register_hooks([hooks.PeriodicCheckpointer(checkpointer, 3, lambda: {"marker": 1})])
    trainer.train(0, 7)
    assert [name for name, _ in checkpointer.saved] == ["model_0000002", "model_0000005", "model_final"]
    assert [extra["iteration"] for _, extra in checkpointer.saved] == [2, 5, 6]
    assert all(extra["marker"] == 1 for _, extra in checkpointer.saved)
    with pytest.raises(ValueError, match="SOLVER.CHECKPOINT_PERIOD"):
        hooks.PeriodicCheckpointer(checkpointer, 0)


def _rng_pair():
    capture = lambda: (random.getstate(), torch.get_rng_state())  # noqa: E731

    def restore(state):
        random.setstate(state[0])
        torch.set_rng_state(state[1])

    return capture, restore


def test_eval_hook_period_final_and_rng_untouched():
    calls = []

    def evaluate():
        calls.append(torch.rand(1).item())  # evaluation draws random numbers...
        return {"bbox": {"AP": 50.0, "AP50": float("nan")}}

    def run(with_eval):
        torch.manual_seed(0)
        trainer = _trainer()
        if with_eval:
            trainer.register_hooks([hooks.EvalHook(2, evaluate, rng_state=_rng_pair())])
        trainer.train(0, 5)
        return trainer, torch.rand(1).item()

    trainer, after_with_eval = run(with_eval=True)
    assert len(calls) == 3  # after iterations 1 and 3, and the final one (4)
    assert trainer.storage.history("bbox/AP").latest() == 50.0
    assert "bbox/AP50" not in trainer.storage.histories()  # NaN results are not logged as scalars
    _, after_without_eval = run(with_eval=False)
    assert after_with_eval == after_without_eval  # ...but the training run does not see them


def test_eval_hook_rejects_non_numeric_results():
    trainer = _trainer()
    trainer.register_hooks([hooks.EvalHook(0, lambda: {"bbox": {"AP": "high"}})])
    with pytest.raises(ValueError, match="'bbox/AP'"):
        trainer.train(0, 1)


def test_periodic_writer_json_and_console(tmp_path, caplog):
    trainer = _trainer()
    json_file = tmp_path / "metrics.json"
    writers = [JSONWriter(str(json_file)), ConsoleWriter(max_iter=25)]
    trainer.register_hooks([hooks.IterationTimer(8), hooks.PeriodicWriter(writers, period=20)])
    with caplog.at_level(logging.INFO, logger="maskrcnn_multi.engine.events"):
        trainer.train(0, 25)
    lines = [json.loads(line) for line in json_file.read_text().splitlines()]
    assert [line["iteration"] for line in lines] == [19, 24]
    assert {"total_loss", "loss_a", "loss_b", "time", "data_time"} <= set(lines[0])
    console = [r.getMessage() for r in caplog.records if "iter: " in r.getMessage()]
    assert len(console) == 2
    assert "iter: 19" in console[0] and "total_loss: " in console[0] and "loss_a: " in console[0]


def test_tensorboard_writer_writes_each_new_scalar_once():
    from maskrcnn_multi.engine.events import TensorboardWriter

    class _FakeSummaryWriter:
        def __init__(self, log_dir):
            self.scalars = []

        def add_scalar(self, name, value, step):
            self.scalars.append((name, step))

        def flush(self):
            pass

        def close(self):
            pass

    trainer = _trainer()
    writer = TensorboardWriter("unused", _FakeSummaryWriter)
    trainer.register_hooks([hooks.PeriodicWriter([writer], period=2)])
    trainer.train(0, 3)
    written = writer._writer.scalars
    assert ("total_loss", 1) in written and ("total_loss", 2) in written
    assert len(written) == len(set(written))
