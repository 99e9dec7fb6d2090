"""Untrusted checkpoints never run code: a pickle whose __reduce__ calls os.system is refused in every
checkpoint format with one line naming the file and the global; MASKRCNN_ALLOW_UNSAFE_LOAD=1 loads it."""
import logging
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from maskrcnn_multi.checkpoint import (
    UNSAFE_LOAD_ENV, CheckpointError, DetectionCheckpointer, UnsafeCheckpointError, read_checkpoint,
)

from pickles import CodeRunner, python2_pickle

FORMATS = ["pkl", "pkl-python2", "pth-zip", "pth-legacy"]


def _model():
    torch.manual_seed(3)
    return nn.Linear(3, 2)


def _write_malicious(tmp_path, fmt, marker):
    """A checkpoint of ``_model()``'s weights that also holds code touching ``marker`` when unpickled."""
    weights = _model().state_dict()
    payload = CodeRunner(f"touch {marker}")
    if fmt.startswith("pkl"):
        path = tmp_path / "model_final.pkl"
        content = {"model": {k: v.numpy() for k, v in weights.items()}, "__author__": "zoo", "payload": payload}
        path.write_bytes(python2_pickle(content) if fmt == "pkl-python2" else pickle.dumps(content, protocol=2))
    else:
        path = tmp_path / "model_final.pth"
        torch.save({"model": weights, "payload": payload}, path, _use_new_zipfile_serialization=fmt == "pth-zip")
    return path


@pytest.fixture(autouse=True)
def _no_opt_in(monkeypatch):
    monkeypatch.delenv(UNSAFE_LOAD_ENV, raising=False)


@pytest.mark.parametrize("fmt", FORMATS)
def test_code_in_a_checkpoint_is_refused_and_never_runs(tmp_path, fmt):
    marker = tmp_path / "MARKER"
    path = _write_malicious(tmp_path, fmt, marker)
    model = _model()
    with torch.no_grad():
        model.weight.zero_()
    with pytest.raises(UnsafeCheckpointError) as info:
        DetectionCheckpointer(model).load(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert f"checkpoint {path} holds posix.system" in message
    assert f"{UNSAFE_LOAD_ENV}=1" in message
    assert not marker.exists()
    assert torch.count_nonzero(model.weight) == 0  # nothing loaded
    assert isinstance(info.value, CheckpointError)  # the CLI: one line, exit code 2


@pytest.mark.parametrize("fmt", FORMATS)
def test_opt_in_loads_it_after_a_warning(tmp_path, fmt, monkeypatch, caplog):
    marker = tmp_path / "MARKER"
    path = _write_malicious(tmp_path, fmt, marker)
    monkeypatch.setenv(UNSAFE_LOAD_ENV, "1")
    model = nn.Linear(3, 2)
    with caplog.at_level(logging.WARNING, logger="maskrcnn_multi.checkpoint"):
        extra = DetectionCheckpointer(model).load(str(path))
    assert marker.exists()  # the full unpickler ran the file's code: that is what the opt-in allows
    assert extra["payload"] == 0  # os.system's exit status
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), _model().state_dict().values()))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{UNSAFE_LOAD_ENV}=1" in w and str(path) in w and "posix.system" in w for w in warnings)


def test_opt_in_is_not_consulted_for_safe_files(tmp_path, monkeypatch, caplog):
    path = tmp_path / "weights.pth"
    torch.save({"model": _model().state_dict()}, path)
    monkeypatch.setenv(UNSAFE_LOAD_ENV, "1")
    with caplog.at_level(logging.WARNING, logger="maskrcnn_multi.checkpoint"):
        DetectionCheckpointer(nn.Linear(3, 2)).load(str(path))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("value, refused", [("0", True), ("no", True), ("", True), ("yes", False), ("TRUE", False)])
def test_opt_in_values(tmp_path, monkeypatch, value, refused):
    path = _write_malicious(tmp_path, "pth-zip", tmp_path / "MARKER")
    monkeypatch.setenv(UNSAFE_LOAD_ENV, value)
    if refused:
        with pytest.raises(UnsafeCheckpointError):
            read_checkpoint(str(path))
    else:
        assert "payload" in read_checkpoint(str(path))
    assert (tmp_path / "MARKER").exists() is not refused


def test_unclear_opt_in_value_is_an_error_naming_the_variable(tmp_path, monkeypatch):
    path = _write_malicious(tmp_path, "pkl", tmp_path / "MARKER")
    monkeypatch.setenv(UNSAFE_LOAD_ENV, "maybe")
    with pytest.raises(CheckpointError, match=f"{UNSAFE_LOAD_ENV}='maybe' is not 1 or 0"):
        read_checkpoint(str(path))
    assert not (tmp_path / "MARKER").exists()


def test_every_unsafe_global_of_a_zip_file_is_named(tmp_path):
    path = tmp_path / "many.pth"
    torch.save({"a": CodeRunner("true"), "b": eval, "c": pickle.loads}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"holds builtins\.eval, pickle\.loads, posix\.system, not"):
        read_checkpoint(str(path))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_numpy_arrays_in_a_pth_load_weights_only(tmp_path, legacy):
    # e.g. a model-zoo .pkl re-saved with torch.save: {"model": {name: ndarray}}
    weights = {k: v.numpy() for k, v in _model().state_dict().items()}
    path = tmp_path / "converted.pth"
    torch.save({"model": weights, "iteration": np.int64(7)}, path, _use_new_zipfile_serialization=not legacy)
    model = nn.Linear(3, 2)
    extra = DetectionCheckpointer(model).load(str(path))
    assert extra["iteration"] == 7
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), _model().state_dict().values()))


def test_object_array_in_a_pth_is_refused(tmp_path):
    path = tmp_path / "objects.pth"
    torch.save({"model": _model().state_dict(), "names": np.array([None, "x"], dtype=object)}, path)
    with pytest.raises(UnsafeCheckpointError, match="holds a numpy array of dtype object"):
        read_checkpoint(str(path))


def test_corrupt_pth_is_a_read_error_not_an_unsafe_one(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"\x80\x02}q\x00(X\x01")
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {path}") as info:
        read_checkpoint(str(path))
    assert not isinstance(info.value, UnsafeCheckpointError) and "\n" not in str(info.value)
