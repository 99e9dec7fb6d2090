"""engine/launch.py's launcher: sizes, --dist-url and MASKRCNN_DIST_TIMEOUT are refused by name before
anything starts, and the rendezvous between machines is bounded by MASKRCNN_DIST_TIMEOUT."""
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maskrcnn_multi.config import UserError
from maskrcnn_multi.engine.launch import TIMEOUT_ENV, launch, parse_dist_url, torchrun_command

REPO = Path(__file__).resolve().parents[2]
launch_module = importlib.import_module("maskrcnn_multi.engine.launch")  # the package exports launch()


@pytest.fixture
def torchrun_calls(monkeypatch):
    """Records what launch would hand torchrun's agent, instead of starting it."""
    calls = []
    monkeypatch.setattr(launch_module, "run_torchrun", lambda *args: calls.append(args))
    monkeypatch.setattr(launch_module, "wait_for_master", lambda *args: calls.append(("wait",) + args))
    return calls


def _never_called():
    raise AssertionError("main_func ran although the launch arguments were wrong")


@pytest.mark.parametrize("url, pattern", [
    ("tcp://127.0.0.1:99999", r"--dist-url 'tcp://127.0.0.1:99999': port 99999 is not in 1\.\.65535"),
    ("tcp://127.0.0.1:0", r"port 0 is not in 1\.\.65535"),
    ("tcp://:29500", r"--dist-url 'tcp://:29500' has no host"),
    ("tcp://host:abc", r"port 'abc' is not a number"),
    ("udp://host:1", r"--dist-url 'udp://host:1' is not 'auto' or tcp://HOST:PORT"),
    ("127.0.0.1:29500", r"is not 'auto' or tcp://HOST:PORT"),
])
def test_bad_dist_urls_are_named(url, pattern):
    with pytest.raises(UserError, match=pattern):
        parse_dist_url(url)


def test_good_dist_urls():
    assert parse_dist_url("tcp://10.1.2.3:1") == ("10.1.2.3", 1)
    assert parse_dist_url("tcp://node-0.cluster:65535") == ("node-0.cluster", 65535)


@pytest.mark.parametrize("sizes, dist_url, pattern", [
    ((0, 1, 0), None, r"--num-gpus 0: the number of processes per machine must be at least 1"),
    ((-3, 1, 0), None, r"--num-gpus -3"),
    ((1, 0, 0), None, r"--num-machines 0: the number of machines must be at least 1"),
    ((1, 2, 5), None, r"--machine-rank 5: machine rank must be in 0\.\.1 \(--num-machines 2\)"),
    ((1, 2, 5), "tcp://127.0.0.1:29500", r"--machine-rank 5: machine rank must be in 0\.\.1"),
    ((2, 1, -1), None, r"--machine-rank -1: machine rank must be in 0\.\.0"),
    ((1, 1, 0), "tcp://127.0.0.1:99999", r"--dist-url .*port 99999"),  # refused even for one process
    ((2, 1, 0), "tcp://127.0.0.1:99999", r"--dist-url .*port 99999"),
    ((1, 2, 1), None, r"--num-machines > 1 needs --dist-url"),
])
def test_launch_refuses_bad_sizes_before_starting_anything(torchrun_calls, sizes, dist_url, pattern):
    num_gpus, num_machines, machine_rank = sizes
    with pytest.raises(UserError, match=pattern):
        launch(_never_called, num_gpus, num_machines=num_machines, machine_rank=machine_rank, dist_url=dist_url)
    assert torchrun_calls == []


@pytest.mark.parametrize("raw", ["abc", "0", "-5", "nan", "inf"])
def test_bad_timeout_variable_is_named_before_torchrun_starts(torchrun_calls, monkeypatch, raw):
    monkeypatch.setenv(TIMEOUT_ENV, raw)
    with pytest.raises(UserError, match=rf"{TIMEOUT_ENV}='{raw}'"):
        launch(_never_called, 2, script_args=["--num-gpus", "2"])
    assert torchrun_calls == []


def test_one_process_runs_here():
    assert launch(lambda value: value * 2, 1, args=(21,)) == 42


def test_torchrun_gets_the_timeout_as_its_rendezvous_timeout(torchrun_calls, monkeypatch):
    monkeypatch.setenv(TIMEOUT_ENV, "4.2")
    assert launch(_never_called, 2, num_machines=2, machine_rank=1, dist_url="tcp://10.0.0.1:23456",
                  script_args=["--config-file", "c.yaml"]) is None
    (wait, host, port, timeout_s, machine_rank, _), (torchrun_args, *rest) = torchrun_calls
    assert (wait, host, port, timeout_s, machine_rank) == ("wait", "10.0.0.1", 23456, 5, 1)
    assert "--rdzv-conf=timeout=5" in torchrun_args and "--node_rank=1" in torchrun_args
    assert torchrun_args[-4:] == ["-m", "maskrcnn_multi.tools.train_net", "--config-file", "c.yaml"]
    assert rest[:5] == ["10.0.0.1", 23456, 1, 2, 4]  # host, port, machine rank, machines, world size


def test_machine_0_does_not_wait_for_itself(torchrun_calls):
    launch(_never_called, 2, script_args=[])
    assert len(torchrun_calls) == 1 and torchrun_calls[0][0][0] == "--nproc_per_node=2"


def test_torchrun_command_without_a_timeout_is_unchanged():
    command = torchrun_command(["x"], 2, 1, 0, "127.0.0.1", 29500)
    assert not any(token.startswith("--rdzv-conf") for token in command)
    assert "--rdzv-conf=timeout=7" in torchrun_command(["x"], 2, 1, 0, "127.0.0.1", 29500, rdzv_timeout_s=7)


@pytest.mark.slow
def test_a_machine_whose_master_never_comes_stops_after_the_timeout(tmp_path):
    """The hang of the fault-injection run: --machine-rank 1 with no machine 0 waited for ever."""
    _, port = parse_dist_url("auto")
    env = dict(os.environ, OMP_NUM_THREADS="1", **{TIMEOUT_ENV: "3"},
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "maskrcnn_multi.tools.train_net", "--num-machines", "2", "--machine-rank", "1",
               "--dist-url", f"tcp://127.0.0.1:{port}", "--config-file", "configs/Synthetic/mask_rcnn_R_18_FPN_shapes.yaml",
               "OUTPUT_DIR", str(tmp_path / "out")]
    start = time.monotonic()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    log = done.stderr[-3000:] + done.stdout[-2000:]
    assert done.returncode == 2, log
    assert time.monotonic() - start < 100, log
    assert "Traceback" not in done.stderr, log
    lines = done.stderr.splitlines()
    assert len(lines) == 1, log
    assert f"no master answered at 127.0.0.1:{port} (--dist-url) within 3s ({TIMEOUT_ENV})" in lines[0], log
    assert not (tmp_path / "out").exists()  # nothing written
