"""DetectionCheckpointer: every supported origin loads into our names; save / resume; clear errors."""
import errno
import logging
import os
import pickle
import re

import numpy as np
import pytest
import torch
from torch import nn

from maskrcnn_multi.checkpoint import CheckpointError, CheckpointNotFoundError, DetectionCheckpointer
from maskrcnn_multi.modeling.backbone import build_resnet

LOGGER = "maskrcnn_multi.checkpoint"
ALL_STAGES = ["res2", "res3", "res4", "res5"]


class Detector(nn.Module):
    """A stand-in full model: the backbone sits under ``backbone.bottom_up`` as in an FPN model."""

    def __init__(self, bottom_up, head_dim=4):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.bottom_up = bottom_up
        self.head = nn.Linear(head_dim, 2)


def _r50(**kwargs):
    return build_resnet(50, out_features=["res5"], **kwargs)


def _randomize(model):
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5)
    return model


def _c2_name(name):
    """Our backbone name -> the Caffe2 blob name detectron2's R-50.pkl uses (None: C2 has no such blob)."""
    if "running_" in name:
        return None  # Caffe2 ImageNet models use AffineChannel: no running statistics
    name = name.replace(".norm.weight", ".bn.s").replace(".norm.bias", ".bn.b")
    name = name.replace(".weight", ".w").replace(".bias", ".b")
    if name.startswith("stem."):
        name = name.replace("stem.conv1.bn.", "res.conv1.bn.").replace("stem.conv1.", "conv1.")
    else:
        for ours, theirs in (("shortcut", "branch1"), ("conv1", "branch2a"), ("conv2", "branch2b"), ("conv3", "branch2c")):
            name = name.replace(f".{ours}.", f".{theirs}.")
    return name.replace(".", "_")


def _torchvision_name(name):
    name = name.replace("stem.conv1.norm.", "bn1.").replace("stem.conv1.", "conv1.")
    name = re.sub(r"^res(\d)", lambda m: f"layer{int(m.group(1)) - 1}", name)
    name = re.sub(r"conv(\d)\.norm\.", r"bn\1.", name)
    return name.replace("shortcut.norm.", "downsample.1.").replace("shortcut.", "downsample.0.")


def _table_lines(caplog):
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(LOGGER))


def test_reference_r18_fpn_backbone_loads_every_key(reference_dir, caplog):
    from maskrcnn_multi.config import get_cfg
    from maskrcnn_multi.modeling.backbone import build_backbone

    cfg = get_cfg()
    cfg.merge_from_file(str(reference_dir / "d2_r18_shapes" / "config.yaml"))
    model = nn.Module()
    model.backbone = build_backbone(cfg)
    path = reference_dir / "d2_r18_shapes" / "model_final.pkl"
    with caplog.at_level(logging.INFO, logger=LOGGER):
        extra = DetectionCheckpointer(model).load(str(path))
    assert "__author__" in extra
    assert "backbone." not in _table_lines(caplog)  # no missing or unexpected backbone key
    with open(path, "rb") as f:
        zoo = pickle.load(f)["model"]
    state = model.state_dict()
    backbone_keys = {k for k in zoo if k.startswith("backbone.")}
    assert backbone_keys == set(state)
    for key in backbone_keys:
        assert state[key].dtype == torch.float32  # float16 file, fp32 model
        assert torch.equal(state[key], torch.from_numpy(zoo[key]).float()), key


def test_caffe2_imagenet_r50_loads_under_backbone_prefix(tmp_path):
    source = _randomize(_r50())
    blobs = {}
    for name, tensor in source.state_dict().items():
        c2_name = _c2_name(name)
        if c2_name is not None:
            blobs[c2_name] = tensor.numpy()
    assert "res2_0_branch2a_w" in blobs and "res_conv1_bn_s" in blobs and "conv1_w" in blobs
    blobs["fc1000_w"] = np.zeros((1000, 2048), dtype=np.float32)
    blobs["res2_0_branch2a_w_momentum"] = np.zeros(1, dtype=np.float32)
    path = tmp_path / "R-50.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f)

    model = Detector(_r50())
    DetectionCheckpointer(model).load(str(path))
    loaded = model.backbone.bottom_up.state_dict()
    for name, tensor in source.state_dict().items():
        if "running_mean" in name:
            assert torch.equal(loaded[name], torch.zeros_like(tensor))
        elif "running_var" in name:
            assert torch.equal(loaded[name], torch.ones_like(tensor))
        else:
            assert torch.equal(loaded[name], tensor), name


def test_torchvision_r50_loads_and_warns_about_stride_in_1x1(tmp_path, caplog):
    source = _randomize(_r50(stride_in_1x1=False))
    state = {_torchvision_name(k): v for k, v in source.state_dict().items()}
    assert "layer1.0.downsample.0.weight" in state and "bn1.running_mean" in state
    state["layer1.0.bn1.num_batches_tracked"] = torch.tensor(10)
    state["fc.weight"] = torch.zeros(1000, 2048)
    path = tmp_path / "resnet50-0676ba61.pth"
    torch.save(state, path)

    model = Detector(_r50(stride_in_1x1=False))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        DetectionCheckpointer(model).load(str(path))
    assert "STRIDE_IN_1X1" not in _table_lines(caplog)
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.backbone.bottom_up.state_dict()[name], tensor), name

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        DetectionCheckpointer(Detector(_r50(stride_in_1x1=True))).load(str(path))
    assert "STRIDE_IN_1X1 False" in _table_lines(caplog)


def test_save_resume_and_load_weights_only(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(2, 3)).sum().backward()
    optimizer.step()
    checkpointer = DetectionCheckpointer(model, str(tmp_path), optimizer=optimizer)
    assert not checkpointer.has_checkpoint() and checkpointer.get_checkpoint_file() == ""
    saved = checkpointer.save("model_0000009", iteration=9)
    assert checkpointer.has_checkpoint() and checkpointer.get_checkpoint_file() == saved
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000009.pth"]  # no temp files

    fresh = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    fresh_optimizer = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    resumed = DetectionCheckpointer(fresh, str(tmp_path), optimizer=fresh_optimizer)
    extra = resumed.resume_or_load("", resume=True)
    assert extra == {"iteration": 9}
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    assert fresh_optimizer.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()

    other_optimizer = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    weights_only = DetectionCheckpointer(fresh, str(tmp_path / "new"), optimizer=other_optimizer)
    assert weights_only.resume_or_load(saved, resume=True)["iteration"] == 9  # unused entries come back
    assert other_optimizer.state_dict()["state"] == {}  # weights only: no optimizer state
    assert DetectionCheckpointer(fresh).load("") == {}


def test_minority_shape_mismatch_is_skipped_with_a_warning(tmp_path, caplog):
    source = Detector(_r50(), head_dim=4)
    path = tmp_path / "model.pth"
    torch.save({"model": source.state_dict()}, path)
    target = Detector(_r50(), head_dim=6)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        DetectionCheckpointer(target).load(str(path))
    table = _table_lines(caplog)
    assert "head.weight: checkpoint (2, 4) vs model (2, 6)" in table
    assert torch.equal(target.head.bias, source.head.bias)


def test_other_architecture_raises_one_line_error_naming_the_file(tmp_path):
    r18_path = tmp_path / "r18.pth"
    torch.save({"model": build_resnet(18, res2_out_channels=64, out_features=ALL_STAGES).state_dict()}, r18_path)
    with pytest.raises(CheckpointError, match="another architecture") as info:
        DetectionCheckpointer(_r50()).load(str(r18_path))
    assert str(r18_path) in str(info.value) and "\n" not in str(info.value)

    unrelated = tmp_path / "vgg.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, unrelated)
    with pytest.raises(CheckpointError, match="matches none of the model's"):
        DetectionCheckpointer(_r50()).load(str(unrelated))


@pytest.mark.parametrize("name,payload", [("broken.pth", b"\x00not a checkpoint"), ("broken.pkl", b"\x80\x04truncated")])
def test_corrupted_file_raises_one_line_error(tmp_path, name, payload):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as info:
        DetectionCheckpointer(nn.Linear(2, 2)).load(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="nope.pkl"):
        DetectionCheckpointer(nn.Linear(2, 2)).load(str(tmp_path / "nope.pkl"))


def _two_layer_checkpointer(save_dir):
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return DetectionCheckpointer(model, str(save_dir), optimizer=optimizer)


@pytest.mark.parametrize("fails_at", ["write", "fsync"])
def test_disk_full_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, fails_at):
    from test_atomic import fill_disk_after

    checkpointer = _two_layer_checkpointer(tmp_path)
    previous = checkpointer.save("model_0000004", iteration=4)
    previous_bytes = open(previous, "rb").read()
    if fails_at == "write":
        fill_disk_after(monkeypatch, 1024)
    else:  # delayed allocation / NFS: the writes succeed, the flush to disk does not
        def full_at_fsync(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(os, "fsync", full_at_fsync)
    with pytest.raises(CheckpointError) as info:
        checkpointer.save("model_0000009", iteration=9)
    monkeypatch.undo()
    new_file = tmp_path / "model_0000009.pth"
    assert str(info.value) == (
        f"cannot save checkpoint {new_file}: No space left on device (ENOSPC); "
        f"last_checkpoint still names model_0000004.pth, which is unchanged"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000004.pth"]
    assert open(previous, "rb").read() == previous_bytes
    assert _two_layer_checkpointer(tmp_path).resume_or_load("", resume=True)["iteration"] == 4


def test_disk_full_writing_last_checkpoint_keeps_the_old_record(tmp_path, monkeypatch):
    from maskrcnn_multi.checkpoint import checkpointer as checkpointer_module

    checkpointer = _two_layer_checkpointer(tmp_path)
    checkpointer.save("model_0000004", iteration=4)
    real_write = checkpointer_module.write_atomically

    def full_for_the_record(path, write, verify=None):
        if path.endswith("last_checkpoint"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real_write(path, write, verify)

    monkeypatch.setattr(checkpointer_module, "write_atomically", full_for_the_record)
    expected = (r"cannot write .*last_checkpoint \(to name model_0000009.pth\): No space left on device \(ENOSPC\); "
                r"last_checkpoint still names model_0000004.pth")
    with pytest.raises(CheckpointError, match=expected):
        checkpointer.save("model_0000009", iteration=9)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"


def test_resume_or_load_removes_temp_files_left_by_a_kill(tmp_path):
    from maskrcnn_multi.checkpoint.atomic import locked_temp_file

    checkpointer = _two_layer_checkpointer(tmp_path)
    checkpointer.save("model_0000004", iteration=4)
    (tmp_path / ".tmp-killedsave").write_bytes(b"PK\x03\x04 half a checkpoint")  # its writer's lock died with it
    with locked_temp_file(str(tmp_path), ".tmp-") as (_, live):  # another process saving right now
        assert _two_layer_checkpointer(tmp_path).resume_or_load("", resume=True)["iteration"] == 4
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["last_checkpoint", "model_0000004.pth", os.path.basename(live)])
    _two_layer_checkpointer(tmp_path).resume_or_load("", resume=False)  # a fresh start cleans up too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000004.pth"]


class _Schedule:
    """A stand-in for a scheduler object that a state_dict() must not hold."""


class _LeakyScheduler:
    def state_dict(self):
        return {"last_epoch": 3, "schedule": _Schedule()}


def test_save_refuses_state_that_would_not_load_weights_only(tmp_path):
    model = nn.Linear(2, 2)
    checkpointer = DetectionCheckpointer(model, str(tmp_path), scheduler=_LeakyScheduler())
    with pytest.raises(TypeError, match=r"holds test_checkpointer\._Schedule, which torch\.load\(weights_only=True\)"):
        checkpointer.save("model_0000003")
    assert list(tmp_path.iterdir()) == []


def test_optimizer_state_of_another_amp_level_is_a_one_line_error(tmp_path):
    """An O0 run's checkpoint resumed under AMP O2: the O2 optimizer finds no fp32 masters."""
    import torch

    from maskrcnn_multi.backends.amp import apply_opt_level

    model = torch.nn.Linear(2, 2)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    DetectionCheckpointer(model, str(tmp_path), optimizer=sgd).save("model_o0")
    half = torch.nn.Linear(2, 2)
    o2 = apply_opt_level(half, torch.optim.SGD(half.parameters(), lr=0.1), "O2", torch.bfloat16)
    with pytest.raises(CheckpointError, match=r"model_o0\.pth: its optimizer state does not fit this run's optimizer "
                                              r"\(KeyError.*AMP / OPT_LEVEL"):
        DetectionCheckpointer(half, str(tmp_path), optimizer=o2).load(str(tmp_path / "model_o0.pth"))
