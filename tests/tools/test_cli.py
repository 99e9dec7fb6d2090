"""The CLI contract (tools/_cli.py): a user error is one line and exit code 2; a bug keeps its traceback."""
import errno
import os
import signal
import time

import pytest

from maskrcnn_multi.backends.base import BackendUnavailableError
from maskrcnn_multi.checkpoint.paths import CheckpointError, CheckpointNotFoundError
from maskrcnn_multi.config import ConfigError, UserError
from maskrcnn_multi.data import BadImageError, DatasetError
from maskrcnn_multi.tools._cli import ArgumentParser, prepare_output_dir, run_main


def _raising(error):
    def main(argv):
        raise error
    return main


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("MASKRCNN_DEBUG", raising=False)


@pytest.mark.parametrize("error", [
    UserError("SOLVER.X must be > 0, got -1"),
    ConfigError("unknown config key 'X' in command-line overrides"),
    DatasetError("a.json: annotation 3 has bbox ['a']"),
    BadImageError("cannot read image a.jpg: truncated"),
    CheckpointNotFoundError("checkpoint file not found: w.pth"),
    BackendUnavailableError("MODEL.DEVICE 'cuda': no CUDA device"),
    FloatingPointError("Loss became infinite or NaN at iteration 3"),
    SystemExit("give either --dist-url or --master-addr"),
    OSError(errno.ENOSPC, "No space left on device", "out/config.yaml"),
])
def test_user_errors_are_one_line_and_exit_code_2(capsys, error):
    assert run_main(_raising(error), [], prog="tool") == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tool: error: ") and "Traceback" not in captured.err
    assert (error.code if isinstance(error, SystemExit) else str(error)) in lines[0]
    assert lines[0].endswith("(MASKRCNN_DEBUG=1 shows the traceback)")


def test_every_user_error_type_is_a_user_error():
    for error_type in (ConfigError, DatasetError, BadImageError, CheckpointError, BackendUnavailableError):
        assert issubclass(error_type, UserError)
    assert issubclass(UserError, ValueError)  # callers catching the ValueError of before keep working
    assert issubclass(ConfigError, KeyError) and issubclass(CheckpointNotFoundError, FileNotFoundError)


@pytest.mark.parametrize("error", [
    ValueError("a programming bug"), KeyError("field"), RuntimeError("boom"), TypeError("wrong"),
    OSError("no errno, no file"),
])
def test_other_errors_keep_their_traceback(error):
    with pytest.raises(type(error)):
        run_main(_raising(error), [])


def test_debug_variable_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("MASKRCNN_DEBUG", "1")
    with pytest.raises(UserError):
        run_main(_raising(UserError("bad")), [])


def test_ctrl_c_is_one_line_and_exit_code_130(capsys, monkeypatch):
    assert run_main(_raising(KeyboardInterrupt()), [], prog="train_net") == 130
    captured = capsys.readouterr()
    assert captured.err == "train_net: interrupted\n" and captured.out == ""
    monkeypatch.setenv("MASKRCNN_DEBUG", "1")
    with pytest.raises(KeyboardInterrupt):
        run_main(_raising(KeyboardInterrupt()), [])


def _signalled(signum):
    def main(argv):
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("the signal did not stop main")
    return main


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_is_one_line_and_128_plus_its_number(capsys, signum):
    before = signal.getsignal(signum)
    assert run_main(_signalled(signum), [], prog="train_net") == 128 + signum
    name = signal.Signals(signum).name
    assert capsys.readouterr().err == f"train_net: terminated by {name}\n"
    assert signal.getsignal(signum) is before  # put back when the tool returns


def test_an_ignored_stop_signal_stays_ignored(monkeypatch):
    """nohup's SIG_IGN (or any handler a parent set) is left as it was."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert run_main(lambda argv: signal.getsignal(signal.SIGHUP) is signal.SIG_IGN and 7, []) == 7
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_torchruns_ranks_keep_the_default_stop_signals(monkeypatch):
    """The agent stops a rank with SIGTERM and reads -15 from it: a rank keeps the default action."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    assert run_main(lambda argv: signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and 5, []) == 5


def test_exit_statuses_and_results_pass_through():
    with pytest.raises(SystemExit) as info:
        run_main(_raising(SystemExit(0)), [])
    assert info.value.code == 0
    assert run_main(lambda argv: {"bbox": {}}, []) == 0  # train_net returns its results
    assert run_main(lambda argv: 3, []) == 3


def test_a_data_loader_workers_traceback_becomes_its_last_line(capsys):
    """DataLoader re-raises a worker's error as the same type with the worker's traceback in the message."""
    message = ("Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
               '  File "x.py", line 1, in f\n    raise DatasetError(...)\n'
               "maskrcnn_multi.data.validation.DatasetError: none of the 4 training images can be read\n")
    assert run_main(_raising(DatasetError(message)), [], prog="train_net") == 2
    assert capsys.readouterr().err == (
        "train_net: error: none of the 4 training images can be read (MASKRCNN_DEBUG=1 shows the traceback)\n"
    )


def test_argument_parser_mistakes_are_user_errors(capsys):
    parser = ArgumentParser(prog="tool")
    parser.add_argument("--iters", type=int)
    with pytest.raises(UserError, match=r"argument --iters: invalid int value: 'x' \(see tool --help\)"):
        parser.parse_args(["--iters", "x"])
    with pytest.raises(UserError, match="unrecognized arguments: --nope"):
        parser.parse_args(["--nope"])
    assert capsys.readouterr().err == ""  # no usage block


def test_prepare_output_dir(tmp_path):
    target = tmp_path / "a" / "b"
    assert prepare_output_dir(str(target), "OUTPUT_DIR") == str(target) and target.is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    with pytest.raises(UserError, match=f"OUTPUT_DIR '{blocker}' is a file, not a folder"):
        prepare_output_dir(str(blocker), "OUTPUT_DIR")
    with pytest.raises(UserError, match=f"OUTPUT_DIR '{blocker}/sub' cannot be created: Not a directory"):
        prepare_output_dir(str(blocker / "sub"), "OUTPUT_DIR")
    assert blocker.read_text() == "keep me"
