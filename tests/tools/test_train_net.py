"""train_net: argument parsing (detectron2's and the ModelZoo's), torchrun re-execution line, and
end-to-end runs on a tiny synthetic set printing what the ModelZoo's scripts grep."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maskrcnn_multi.config import UserError
from maskrcnn_multi.data.synthetic import generate_shapes_dataset
from maskrcnn_multi.engine.launch import parse_dist_url, torchrun_command
from maskrcnn_multi.tools.train_net import parse_args, register_datasets

REPO = Path(__file__).resolve().parents[2]
CONFIG = "configs/Synthetic/mask_rcnn_R_18_FPN_shapes.yaml"
TINY = [
    "SEED", "5", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "3",
    "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "(100,)", "SOLVER.CHECKPOINT_PERIOD", "100",
    "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "96",
    "INPUT.MAX_SIZE_TEST", "128", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64", "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
]


def test_trailing_pairs_and_opts_both_override():
    args = parse_args(["--config-file", "a.yaml", "--num-gpus", "2", "SOLVER.MAX_ITER", "5", "AMP", "1"])
    assert args.config_file == "a.yaml" and args.num_gpus == 2
    assert args.opts == ["SOLVER.MAX_ITER", "5", "AMP", "1"]
    args = parse_args(["--resume", "--opts", "SEED", "1"])
    assert args.resume and args.opts == ["SEED", "1"]
    args = parse_args(["--eval-only", "SEED", "1", "--opts", "AMP", "1"])
    assert args.eval_only and args.opts == ["SEED", "1", "AMP", "1"]


def test_modelzoo_arguments():
    args = parse_args([
        "--config-file", "c.yaml", "--device-ids", "0", "1", "2", "3", "--num-gpus", "4",
        "--master-addr", "10.0.0.1", "--master-port", "23333", "--data_path", "/coco", "AMP", "1",
    ])
    assert args.device_ids == [0, 1, 2, 3] and args.num_gpus == 4
    assert args.dist_url == "tcp://10.0.0.1:23333"
    assert args.data_path == "/coco" and args.opts == ["AMP", "1"]
    # config pairs right after the ids are not device ids
    args = parse_args(["--device-ids", "0", "1", "AMP", "1"])
    assert args.device_ids == [0, 1] and args.opts == ["AMP", "1"]


def test_odd_override_list_is_an_error():
    with pytest.raises(UserError, match="KEY VALUE pairs; 'SOLVER.MAX_ITER' has no value"):
        parse_args(["SOLVER.MAX_ITER"])


def test_options_after_the_trailing_pairs_are_options():
    args = parse_args(["--config-file", "X", "SOLVER.MAX_ITER", "3", "--eval-only"])
    assert args.eval_only and args.config_file == "X" and args.opts == ["SOLVER.MAX_ITER", "3"]
    args = parse_args(["SEED", "1", "--resume", "AMP", "1", "--num-gpus", "2", "--dataset", "a", "b.json", "c",
                       "--device-ids", "0", "1", "OPT_LEVEL", "O1"])
    assert args.resume and args.num_gpus == 2 and args.dataset == [["a", "b.json", "c"]]
    assert args.device_ids == [0, 1] and args.opts == ["SEED", "1", "AMP", "1", "OPT_LEVEL", "O1"]
    with pytest.raises(UserError, match="unrecognized arguments: --evil-only"):
        parse_args(["SEED", "1", "--evil-only"])


def test_data_path_must_be_a_coco_2017_layout(tmp_path):
    (tmp_path / "annotations").mkdir()
    with pytest.raises(UserError, match=r"--data_path .* is not a COCO 2017 layout: .*instances_train2017.json is missing"):
        register_datasets(str(tmp_path))


def test_dataset_option_registers_a_coco_json_under_a_name(tmp_path):
    from maskrcnn_multi.data import DatasetCatalog, MetadataCatalog

    generate_shapes_dataset(str(tmp_path), num_train=2, num_val=1, seed=1)
    json_file, images = str(tmp_path / "annotations" / "instances_val.json"), str(tmp_path / "val")
    args = parse_args(["--dataset", "mine_val", json_file, images, "--dataset", "mine_b", json_file, images, "SEED", "1"])
    assert args.dataset == [["mine_val", json_file, images], ["mine_b", json_file, images]] and args.opts == ["SEED", "1"]
    try:
        register_datasets(None, args.dataset)
        records = DatasetCatalog.get("mine_val")
        assert len(records) == 1 and records[0]["file_name"].startswith(images)
        assert MetadataCatalog.get("mine_val").thing_classes == ["rectangle", "ellipse", "triangle"]
        with pytest.raises(UserError, match=r"--dataset mine_c: .*nowhere.json does not exist"):
            register_datasets(None, [["mine_c", str(tmp_path / "nowhere.json"), images]])
    finally:
        for name in ("mine_val", "mine_b", "mine_c"):
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


def test_torchrun_line_and_dist_url():
    assert parse_dist_url("tcp://10.1.2.3:29500") == ("10.1.2.3", 29500)
    host, port = parse_dist_url("auto")
    assert host == "127.0.0.1" and port > 0
    with pytest.raises(ValueError, match="--dist-url 'udp://x'"):
        parse_dist_url("udp://x")
    command = torchrun_command(["--config-file", "c.yaml"], 8, 2, 1, "10.0.0.1", 23333)
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert {"--nproc_per_node=8", "--nnodes=2", "--node_rank=1", "--master_addr=10.0.0.1",
            "--master_port=23333"} <= set(command)
    assert command[-4:] == ["-m", "maskrcnn_multi.tools.train_net", "--config-file", "c.yaml"]


@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory):
    """A datasets root whose shapes/ set is tiny (6 train, 2 val images), so the CLI uses it."""
    root = tmp_path_factory.mktemp("datasets")
    generate_shapes_dataset(str(root / "shapes"), num_train=6, num_val=2, seed=4)
    return root


def _train_net(datasets_root, output_dir, *extra, perf_only=False):
    env = dict(os.environ, MASKRCNN_MULTI_DATASETS=str(datasets_root), OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("PERF_ONLY", None)
    if perf_only:
        env["PERF_ONLY"] = "True"
    command = [sys.executable, "-m", "maskrcnn_multi.tools.train_net", "--config-file", CONFIG,
               *extra, *TINY, "OUTPUT_DIR", str(output_dir)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_train_then_evaluate_prints_what_the_modelzoo_greps(datasets_root, tmp_path):
    output_dir = tmp_path / "run"
    stdout = _train_net(datasets_root, output_dir, "AMP", "1", "OPT_LEVEL", "O2", "LOSS_SCALE_VALUE", "64")
    assert stdout.count("step_time = ") == 2
    assert "FPS = " in stdout and "total_loss: " in stdout
    assert "Average Precision" in stdout
    assert "bbox AP" in stdout  # the AP table
    assert (output_dir / "config.yaml").is_file() and (output_dir / "model_final.pth").is_file()
    metrics = [json.loads(line) for line in (output_dir / "metrics.json").read_text().splitlines()]
    assert metrics[-1]["iteration"] == 2 and "total_loss" in metrics[-1] and "loss_scale" in metrics[-1]

    evaluated = _train_net(datasets_root, tmp_path / "eval", "--eval-only",
                           "MODEL.WEIGHTS", str(output_dir / "model_final.pth"))
    assert "Average Precision" in evaluated and "FPS = " not in evaluated


@pytest.mark.slow
def test_perf_only_skips_evaluation(datasets_root, tmp_path):
    stdout = _train_net(datasets_root, tmp_path / "perf", perf_only=True)
    assert "FPS = " in stdout and "total_loss: " in stdout
    assert "Average Precision" not in stdout


@pytest.mark.slow
def test_num_gpus_2_reexecutes_under_torchrun(datasets_root, tmp_path):
    """Two CPU processes (gloo, DDP) started by ``--num-gpus 2`` outside torchrun."""
    import torch

    output_dir = tmp_path / "ddp"
    stdout = _train_net(datasets_root, output_dir, "--num-gpus", "2", perf_only=True)
    assert "torch.distributed.run" in stdout and "2 process(es)" in stdout
    assert "FPS = " in stdout and stdout.count("step_time = ") == 2  # rank 0 only
    checkpoint = torch.load(output_dir / "model_final.pth", weights_only=True)
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng_states"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("signum, args, code, line", [
    (signal.SIGINT, [], 130, "train_net: interrupted"),
    (signal.SIGTERM, ["DATALOADER.NUM_WORKERS", "2"], 143, "train_net: terminated by SIGTERM"),
    (signal.SIGTERM, ["--num-gpus", "2"], 143, "train_net: terminated by SIGTERM"),
], ids=["ctrl-c", "sigterm-with-loader-workers", "sigterm-to-the-launcher-of-2-ranks"])
def test_a_stopped_run_is_one_line_and_keeps_the_checkpoints(datasets_root, tmp_path, signum, args, code, line):
    """SIGINT during training (as Ctrl-C from a terminal) or SIGTERM (kill, scancel): one line, exit code
    128 + the signal, no traceback (none from loader workers or torchrun's agent either), no process
    left, and the checkpoint last_checkpoint names still loads."""
    import torch

    output_dir = tmp_path / "stopped"
    env = dict(os.environ, MASKRCNN_MULTI_DATASETS=str(datasets_root), OMP_NUM_THREADS="1", PERF_ONLY="True",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("MASKRCNN_DEBUG", None)
    command = [sys.executable, "-m", "maskrcnn_multi.tools.train_net", "--config-file", CONFIG, *TINY,
               "SOLVER.MAX_ITER", "500", "SOLVER.CHECKPOINT_PERIOD", "1", "OUTPUT_DIR", str(output_dir), *args]
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=stdout, stderr=stderr, start_new_session=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal
        try:
            deadline = time.monotonic() + 240
            while not (output_dir / "last_checkpoint").exists() and process.poll() is None:
                assert time.monotonic() < deadline, "no checkpoint within 240 s"
                time.sleep(0.2)
            process.send_signal(signum)
            returncode = process.wait(timeout=60)
            time.sleep(1.0)
            leftover = subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True, text=True).stdout
        finally:
            if process.poll() is None:
                process.kill()
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    errors = (tmp_path / "stderr").read_text()
    assert returncode == code, errors[-3000:]
    assert "Traceback" not in errors and errors.splitlines()[-1:] == [line], errors[-3000:]
    assert leftover.strip() == "", f"processes left in the run's session: {leftover}"
    checkpoint = torch.load(output_dir / (output_dir / "last_checkpoint").read_text().strip(), weights_only=True)
    assert "model" in checkpoint and checkpoint["iteration"] >= 0


_RANK_SCRIPT = """
import torch
from maskrcnn_multi.engine.launch import all_gather_object, get_rank, init_distributed, reduce_mean
assert init_distributed("gloo")
mean = reduce_mean({"loss_a": torch.tensor(float(get_rank())), "loss_b": torch.tensor(2.0)})
print("RESULT", get_rank(), mean["loss_a"], mean["loss_b"], all_gather_object(get_rank() * 10))
"""


def _start_rank(rank, world_size, port, timeout_s="60"):
    env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), MASKRCNN_DIST_TIMEOUT=timeout_s,
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
    return subprocess.Popen([sys.executable, "-c", _RANK_SCRIPT], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_ranks_join_and_average_losses():
    _, port = parse_dist_url("auto")
    ranks = [_start_rank(rank, 2, port) for rank in range(2)]
    outputs = [process.communicate(timeout=120) for process in ranks]
    for process, (stdout, stderr) in zip(ranks, outputs):
        assert process.returncode == 0, stderr[-2000:]
    results = sorted(line for stdout, _ in outputs for line in stdout.splitlines() if line.startswith("RESULT"))
    assert results == ["RESULT 0 0.5 2.0 [0, 10]", "RESULT 1 0.5 2.0 [0, 10]"]


def test_missing_rank_is_named_after_the_timeout():
    _, port = parse_dist_url("auto")
    rank0 = _start_rank(0, 2, port, timeout_s="3")
    _, stderr = rank0.communicate(timeout=120)
    assert rank0.returncode != 0
    assert "rank(s) 1 of world size 2 did not start within 3s" in stderr
