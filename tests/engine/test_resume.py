"""Kill and resume: a run interrupted after a checkpoint and resumed with resume_or_load(True) is the
same run: on the CPU its losses equal the uninterrupted run's exactly, with or without loader workers."""
import os
from pathlib import Path

import pytest
import torch

from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.engine.hooks import HookBase
from maskrcnn_multi.engine.trainer import DefaultTrainer

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "Synthetic" / "mask_rcnn_R_18_FPN_shapes.yaml"
LOSSES = ("loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask", "total_loss")


@pytest.fixture(autouse=True)
def _one_thread_no_eval(monkeypatch):
    """One intra-op thread (the test machine's cores are shared) and no evaluation hook."""
    monkeypatch.setenv("PERF_ONLY", "True")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_cfg(output_dir, max_iter, checkpoint_period, *extra):
    """The synthetic R18-FPN Mask R-CNN at 96-128 px, 2 images per batch, a short schedule."""
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG))
    cfg.merge_from_list([
        "OUTPUT_DIR", str(output_dir), "SEED", "3",
        "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128",
        "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "128",
        "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.OPTIMIZER", "SGD", "SOLVER.BASE_LR", "0.01", "SOLVER.WEIGHT_DECAY", "0.0001",
        "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "(4,)", "SOLVER.MAX_ITER", str(max_iter),
        "SOLVER.CHECKPOINT_PERIOD", str(checkpoint_period),
        "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "300", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64",
        "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "64", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
        *extra,
    ])
    return cfg


def losses_by_iteration(trainer):
    """{iteration: {loss name: value}} of a finished run."""
    result = {}
    for name in LOSSES:
        for value, iteration in trainer.storage.history(name).values():
            result.setdefault(iteration, {})[name] = value
    return result


class _Kill(HookBase):
    """Simulates the process dying just before ``at`` (after the hooks of the previous iteration)."""

    def __init__(self, at):
        self.at = at

    def before_step(self):
        if self.trainer.iter == self.at:
            raise KeyboardInterrupt(f"killed before iteration {self.at}")


def _run(cfg, resume=False, kill_at=None):
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    if kill_at is not None:
        trainer.register_hooks([_Kill(kill_at)])
        with pytest.raises(KeyboardInterrupt):
            trainer.train()
    else:
        trainer.train()
    return trainer


@pytest.mark.slow
@pytest.mark.parametrize("amp", [("AMP", "0"), ("AMP", "1", "OPT_LEVEL", "O2", "LOSS_SCALE_VALUE", "dynamic"),
                                 ("AMP", "0", "DATALOADER.NUM_WORKERS", "2")],
                         ids=["O0", "O2-dynamic", "O0-2-workers"])
def test_resumed_run_equals_uninterrupted_run(tiny_shapes, tmp_path, amp):
    max_iter, period = 6, 3
    uninterrupted = losses_by_iteration(_run(tiny_cfg(tmp_path / "full", max_iter, period, *amp)))
    assert sorted(uninterrupted) == list(range(max_iter))

    interrupted_dir = tmp_path / "interrupted"
    _run(tiny_cfg(interrupted_dir, max_iter, period, *amp), kill_at=period + 1)
    assert (interrupted_dir / "last_checkpoint").read_text().strip() == f"model_{period - 1:07d}.pth"
    checkpoint = torch.load(interrupted_dir / f"model_{period - 1:07d}.pth", weights_only=True)
    assert {"model", "optimizer", "scheduler", "iteration", "rng_states", "data_batches"} <= set(checkpoint)
    assert checkpoint["iteration"] == period - 1

    resumed_trainer = _run(tiny_cfg(interrupted_dir, max_iter, period, *amp), resume=True)
    assert resumed_trainer.start_iter == period
    resumed = losses_by_iteration(resumed_trainer)
    assert sorted(resumed) == list(range(period, max_iter))
    for iteration in range(period, max_iter):
        assert resumed[iteration] == uninterrupted[iteration], f"iteration {iteration}"
    assert os.path.isfile(interrupted_dir / "model_final.pth")


def test_ranks_that_disagree_on_the_resume_point_fail_instead_of_hanging(monkeypatch):
    from maskrcnn_multi.engine import trainer

    monkeypatch.setattr(trainer, "get_world_size", lambda: 2)
    monkeypatch.setattr(trainer, "all_gather_object", lambda value: [value, 0])
    trainer._check_ranks_agree_on_start(0, "/out")  # both start fresh: fine
    with pytest.raises(RuntimeError, match=r"rank 0: 5000, rank 1: 0.*/out/last_checkpoint"):
        trainer._check_ranks_agree_on_start(5000, "/out")
