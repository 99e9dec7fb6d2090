"""Every key of our defaults is read by the code, or refused with a reason (config/refused.py).

The walk is dynamic: the default tree's nodes are tagged with their path (clones keep the tag), the
config's reads are recorded while real work runs (a short training with evaluation through
train_net, the builders of every optional branch, every YAML in configs/), and each leaf key must
have been read at least once, or be listed as refused or inert.
"""
import contextlib
import glob
import io
import os
from pathlib import Path

import pytest
import torch

from maskrcnn_multi.config import config as config_module
from maskrcnn_multi.config import defaults, get_cfg, refused

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TRAINING_CONFIG = REPO / "configs" / "Synthetic" / "mask_rcnn_R_18_FPN_shapes.yaml"


def leaf_keys(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, config_module.CfgNode):
            yield from leaf_keys(value, f"{prefix}{key}.")
        else:
            yield prefix + key


class ReadRecorder:
    """Records the full keys read through attribute access, [] and .get() on tagged nodes."""

    def __init__(self):
        self.read = set()

    def tag(self, node, prefix=""):
        object.__setattr__(node, "_traced_path", prefix)
        for key, value in node.items():
            if isinstance(value, config_module.CfgNode):
                self.tag(value, f"{prefix}{key}.")

    def install(self, monkeypatch):
        cls = config_module.CfgNode
        recorder = self
        yacs_getattr, dict_getitem, dict_get = cls.__getattr__, dict.__getitem__, dict.get

        def note(node, name):
            path = node.__dict__.get("_traced_path")
            if path is not None and isinstance(name, str) and dict.__contains__(node, name):
                recorder.read.add(path + name)

        def traced_getattr(self, name):
            note(self, name)
            return yacs_getattr(self, name)

        def traced_getitem(self, name):
            note(self, name)
            return dict_getitem(self, name)

        def traced_get(self, name, default=None):
            note(self, name)
            return dict_get(self, name, default)

        monkeypatch.setattr(cls, "__getattr__", traced_getattr)
        monkeypatch.setattr(cls, "__getitem__", traced_getitem)
        monkeypatch.setattr(cls, "get", traced_get)
        tagged = defaults._C.clone()
        self.tag(tagged)
        monkeypatch.setattr(defaults, "_C", tagged)


@pytest.fixture
def recorder(monkeypatch):
    recorder = ReadRecorder()
    recorder.install(monkeypatch)
    return recorder


def test_dumping_or_cloning_a_config_reads_no_key(recorder):
    cfg = get_cfg()
    cfg.clone().dump()
    assert recorder.read == set()
    _ = cfg.clone().MODEL.RPN.NMS_THRESH
    assert recorder.read == {"MODEL", "MODEL.RPN", "MODEL.RPN.NMS_THRESH"}


def _short_training(output_dir, *extra):
    """train_net in this process: 2 iterations at 96 px with an evaluation at the end."""
    from maskrcnn_multi.tools import train_net

    argv = ["--config-file", str(TRAINING_CONFIG),
            "OUTPUT_DIR", str(output_dir), "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "(1,)", "SOLVER.CHECKPOINT_PERIOD", "2",
            "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128",
            "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "128", "DATALOADER.NUM_WORKERS", "0",
            "TEST.EVAL_PERIOD", "2", *extra]
    with contextlib.redirect_stdout(io.StringIO()):
        return train_net.main(argv)


def _build_every_config():
    """Every model our configs/ folder describes, built on the CPU (weights not loaded)."""
    from maskrcnn_multi.modeling import build_model

    for path in sorted(glob.glob(str(REPO / "configs" / "**" / "*.yaml"), recursive=True)):
        cfg = get_cfg()
        cfg.merge_from_file(path)
        cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])
        build_model(cfg)


def _build_optional_branches():
    """The builders whose keys only one value of another key reads."""
    from maskrcnn_multi.solver import build_lr_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    for name in ("WarmupMultiStepLR", "WarmupCosineLR"):
        cfg = get_cfg()
        cfg.SOLVER.LR_SCHEDULER_NAME = name
        build_lr_scheduler(cfg, optimizer)


def test_every_default_key_is_read_or_refused(recorder, tiny_shapes, tmp_path):
    _short_training(tmp_path / "train")
    _build_every_config()
    _build_optional_branches()
    everything = set(leaf_keys(defaults._C))
    accounted = {key for key in everything if refused.refusal_reason(key) or key in refused.INERT}
    unread = sorted(everything - recorder.read - accounted)
    assert unread == [], f"{len(unread)} keys are neither read nor refused: {unread}"
