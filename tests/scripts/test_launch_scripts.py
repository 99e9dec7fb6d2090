"""The ModelZoo launch scripts (test/*.sh) end to end on the CPU: gloo, synthetic COCO 2017 data, a tiny
model passed after `--`, AMP O2 (bf16 on the CPU) as the scripts set it. Each run goes through the
real script, torchrun and train_net; only the model and input sizes are shrunk. (Bad arguments:
test_launch_arguments.py; defaults and earlier outputs: test_launch_output.py.)"""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from launch_helpers import TINY, free_port, make_checkout, read_summary, run_script, start_script, train_log

MASK = "Faster_Mask_RCNN_ID0101_for_PyTorch"
FASTER = "Faster_RCNN_ID0101_for_PyTorch"


def _ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout[-2000:]}\nstderr:\n{done.stderr[-4000:]}"
    return done.stdout


def _positive(value: str) -> bool:
    return float(value) > 0


@pytest.mark.slow
def test_performance_1p_writes_fps_and_compile_time(checkout, coco_root):
    stdout = _ok(run_script(checkout, "train_performance_1p.sh", f"--data_path={coco_root}", "--device=cpu",
                            "--train_steps=6", "--batch_size=2", "--", *TINY))
    summary = read_summary(checkout, f"{MASK}_bs2_1p_perf")
    assert stdout.count(" = ") == len(summary)  # the summary is also printed
    assert summary["RankSize"] == "1" and summary["BatchSize"] == "2" and summary["Network"] == MASK
    assert _positive(summary["ActualFPS"]) and _positive(summary["CompileTime"])
    assert float(summary["TrainingTime"]) == pytest.approx(2 * 1000 / float(summary["ActualFPS"]), rel=1e-2)
    assert float(summary["ActualLoss"]) > 0 and "TrainAccuracy" not in summary
    log = train_log(checkout)
    # the ModelZoo's pairs, the LR scaled to the batch (0.0025 per 8 images), AMP O2 (bf16 on the CPU)
    assert "AMP 1 OPT_LEVEL O2 LOSS_SCALE_VALUE 64" in log and "SEED 1234" in log
    assert "MODEL.RPN.NMS_THRESH 0.8" in log and "SOLVER.BASE_LR 0.000625 SOLVER.MAX_ITER 6" in log
    assert "AMP: O2 (torch.bfloat16" in log and "PERF_ONLY=True" in log and "Average Precision" not in log
    assert "skipped_steps: 0" in log
    assert not [p for p in (checkout / "test").iterdir() if p.name not in {"output"} and p.suffix != ".sh"]


@pytest.mark.slow
def test_performance_8p_runs_nproc_per_node_ranks(checkout, coco_root):
    _ok(run_script(checkout, "train_performance_8p.sh", f"--data_path={coco_root}", "--device=cpu",
                   "--train_steps=3", "--batch_size=2", "--nproc_per_node=2", f"--master_port={free_port()}",
                   "--", *TINY))
    summary = read_summary(checkout, f"{MASK}_bs2_2p_perf")
    assert summary["RankSize"] == "2" and _positive(summary["ActualFPS"]) and "CompileTime" not in summary
    log = train_log(checkout)
    assert "rank 1 of 2 joined the gloo process group" in log and "1 per batch on this rank" in log


@pytest.mark.slow
def test_multinodes_two_nodes_train_as_one_job(tmp_path, coco_root):
    """Two "machines" (two checkouts) on this host, one process each: one job of 2 ranks."""
    port = str(free_port())
    nodes = [make_checkout(tmp_path / f"node{rank}") for rank in range(2)]
    processes = [
        start_script(node, "train_performance_multinodes.sh", f"--data_path={coco_root}", "--device=cpu",
                     "--train_steps=3", "--batch_size=2", "--nnodes=2", f"--node_rank={rank}",
                     "--master_addr=127.0.0.1", f"--master_port={port}", "--nproc_per_node=1", "--", *TINY,
                     MASKRCNN_DIST_TIMEOUT="120")
        for rank, node in enumerate(nodes)
    ]
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        _ok(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    summary = read_summary(nodes[0], f"{MASK}_bs2_2p_perf")
    assert summary["RankSize"] == "2" and _positive(summary["ActualFPS"])
    assert "rank 1 of 2 joined" in train_log(nodes[1])


@pytest.mark.slow
def test_full_1p_evaluates_and_writes_train_accuracy(checkout, coco_root):
    _ok(run_script(checkout, "train_full_1p.sh", f"--data_path={coco_root}", "--device=cpu",
                   "--train_steps=4", "--batch_size=2", "--", *TINY))
    summary = read_summary(checkout, f"{MASK}_bs2_1p_acc")
    assert 0.0 <= float(summary["TrainAccuracy"]) <= 1.0  # a fraction, not "None"
    assert "CompileTime" not in summary and _positive(summary["ActualFPS"])
    log = train_log(checkout)
    assert "segm" in log and "PERF_ONLY" not in log


@pytest.mark.slow
def test_faster_rcnn_performance_1p(checkout, coco_root):
    _ok(run_script(checkout, "train_faster_rcnn_performance_1p.sh", f"--data_path={coco_root}", "--device=cpu",
                   "--train_steps=4", "--batch_size=2", "--fp32", "--", *TINY))
    summary = read_summary(checkout, f"{FASTER}_bs2_1p_perf")
    assert summary["Network"] == FASTER and _positive(summary["ActualFPS"]) and _positive(summary["CompileTime"])
    log = train_log(checkout)
    assert "AMP 0 OPT_LEVEL O0" in log and "faster_rcnn_R_101_FPN_3x.yaml" in log and "loss_mask" not in log


@pytest.mark.slow
def test_faster_rcnn_full_8p_on_two_ranks(checkout, coco_root):
    _ok(run_script(checkout, "train_faster_rcnn_full_8p.sh", f"--data_path={coco_root}", "--device=cpu",
                   "--train_steps=3", "--batch_size=2", "--nproc_per_node=2", f"--master_port={free_port()}",
                   "--", *TINY))
    summary = read_summary(checkout, f"{FASTER}_bs2_2p_acc")
    assert summary["RankSize"] == "2" and 0.0 <= float(summary["TrainAccuracy"]) <= 1.0


def _parent(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return 0


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        pid = _parent(pid)
    return False


def _rank_pids(ancestor: int, rank: str):
    """Descendants of `ancestor` whose environment says RANK=<rank> (torchrun's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            if (f"RANK={rank}".encode() in environ and any(v.startswith(b"TORCHELASTIC_RUN_ID=") for v in environ)
                    and _descends_from(int(entry.name), ancestor)):
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.slow
def test_killed_rank_stops_the_job_with_a_named_error(checkout, coco_root):
    process = start_script(checkout, "train_performance_8p.sh", f"--data_path={coco_root}", "--device=cpu",
                           "--train_steps=500", "--batch_size=2", "--nproc_per_node=2",
                           f"--master_port={free_port()}", "--", *TINY, MASKRCNN_DIST_TIMEOUT="60")
    log_file = checkout / "test" / "output" / "0" / "train_0.log"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if log_file.is_file() and "step_time = " in log_file.read_text(errors="replace"):
            break
        time.sleep(0.5)
    assert process.poll() is None, process.communicate()[1][-3000:]
    victims = _rank_pids(process.pid, "1")
    assert victims, "rank 1 not found"
    os.kill(victims[0], signal.SIGKILL)
    killed_at = time.monotonic()
    try:
        _, stderr = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode != 0 and time.monotonic() - killed_at < 60
    assert "training failed" in stderr and "SIGKILL" in stderr and "rank: 1" in stderr, stderr[-3000:]


def test_one_node_of_two_times_out_naming_the_missing_node(checkout, coco_root):
    started = time.monotonic()
    done = run_script(checkout, "train_performance_multinodes.sh", f"--data_path={coco_root}", "--device=cpu",
                      "--nnodes=2", "--node_rank=0", f"--master_port={free_port()}", "--nproc_per_node=1",
                      "--train_steps=2", MASKRCNN_DIST_TIMEOUT="3", timeout=120)
    assert done.returncode != 0 and time.monotonic() - started < 60
    assert "training failed" in done.stderr and "1/2 clients joined" in done.stderr, done.stderr[-3000:]
