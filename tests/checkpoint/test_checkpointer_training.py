"""What DefaultTrainer writes through DetectionCheckpointer loads with torch.load(weights_only=True):
model, optimizer (O2: with the fp32 masters), scheduler, loss scaler, RNG and data-stream state, in
O0, O1 and O2 with a static and a dynamic loss scale."""
import importlib.util
import os
from pathlib import Path

import pytest
import torch


def _engine_test_helpers():
    """tests/engine/test_resume.py's tiny synthetic set and config (loaded by path: tests/ is no package)."""
    path = Path(__file__).resolve().parents[1] / "engine" / "test_resume.py"
    spec = importlib.util.spec_from_file_location("_engine_resume_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_helpers = _engine_test_helpers()
_one_thread_no_eval = _helpers._one_thread_no_eval  # autouse fixture: 1 thread, PERF_ONLY


@pytest.mark.slow
@pytest.mark.parametrize("amp", [
    ("AMP", "0"),
    ("AMP", "1", "OPT_LEVEL", "O1", "LOSS_SCALE_VALUE", "128"),
    ("AMP", "1", "OPT_LEVEL", "O1", "LOSS_SCALE_VALUE", "dynamic"),
    ("AMP", "1", "OPT_LEVEL", "O2", "LOSS_SCALE_VALUE", "128"),
    ("AMP", "1", "OPT_LEVEL", "O2", "LOSS_SCALE_VALUE", "dynamic", "SOLVER.OPTIMIZER", "AdamW"),
], ids=["O0", "O1-static", "O1-dynamic", "O2-static", "O2-dynamic-AdamW"])
def test_every_checkpoint_of_a_training_run_loads_weights_only(tiny_shapes, tmp_path, amp):
    trainer = _helpers.DefaultTrainer(_helpers.tiny_cfg(tmp_path, 2, 1, "SOLVER.STEPS", "(1,)", *amp))
    trainer.resume_or_load(resume=False)
    trainer.train()

    saved = sorted(name for name in os.listdir(tmp_path) if name.endswith(".pth"))
    assert saved == ["model_0000000.pth", "model_final.pth"]
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]  # no temporary files
    expected = {"model", "optimizer", "scheduler", "iteration", "rng_states", "data_batches", "world_size", "seed"}
    if amp[1] == "1":
        expected.add("scaler")
    for name in saved:
        path = tmp_path / name
        assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []
        checkpoint = torch.load(path, weights_only=True)
        assert set(checkpoint) == expected, name
        assert all(value.dtype == torch.float32 for value in checkpoint["model"].values() if value.is_floating_point())
        if "O2" in amp:
            assert len(checkpoint["optimizer"]["master_params"]) > 0
    # and our own loader resumes from it without the opt-in
    resumed = _helpers.DefaultTrainer(_helpers.tiny_cfg(tmp_path, 4, 1, "SOLVER.STEPS", "(1,)", *amp))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 2
