"""test/eval.sh and test/inference.sh (test/eval_common.sh on test/common.sh): arguments checked before
anything is written, one line and exit code 2 for a user error, and real runs on the CPU on the tiny
synthetic COCO 2017 set with a random-init checkpoint of the shapes config (3 classes, as the set)."""
import json
import shlex

import pytest
import torch

from launch_helpers import REPO, TINY_INPUT, free_port, one_error_line, output_root, read_summary, run_script

NETWORK = "Faster_Mask_RCNN_ID0101_for_PyTorch"
CONFIG = "configs/Synthetic/mask_rcnn_R_18_FPN_shapes.yaml"
FAST = ["DATALOADER.NUM_WORKERS", "0", *TINY_INPUT, "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
        "TEST.DETECTIONS_PER_IMAGE", "20"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    from maskrcnn_multi.checkpoint import DetectionCheckpointer
    from maskrcnn_multi.config import get_cfg
    from maskrcnn_multi.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / CONFIG))
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("checkpoint")
    DetectionCheckpointer(build_model(cfg), save_dir=str(folder)).save("model_final")
    return str(folder / "model_final.pth")


def _pairs(command_line: str) -> dict:
    tokens = shlex.split(command_line)
    start = tokens.index("MODEL.WEIGHTS")
    return dict(zip(tokens[start::2], tokens[start + 1::2]))


@pytest.mark.slow  # checks the config with python: ~3 s a script
@pytest.mark.parametrize("script, skip_eval", [("eval.sh", False), ("inference.sh", True)])
def test_dry_run_shows_test_nets_command(checkout, coco_root, checkpoint, script, skip_eval):
    done = run_script(checkout, script, f"--data_path={coco_root}", f"--checkpoint={checkpoint}", "--device=cpu",
                      "--batch_size=4", "--nproc_per_node=2", "--infer_steps=3", "--dry_run", "--", "SEED", "3")
    assert done.returncode == 0, done.stderr
    plan, _, command = done.stdout.strip().splitlines()
    assert plan.startswith("evaluation: 2 process(es)" if not skip_eval else "inference: 2 process(es)")
    assert "-m torch.distributed.run" in command and "--nproc_per_node 2" in command
    assert ("--skip-eval" in command) == skip_eval and "--infer-steps 3" in command
    pairs = _pairs(command)
    assert pairs["MODEL.WEIGHTS"] == checkpoint and pairs["TEST.IMS_PER_BATCH"] == "2"  # per process
    assert pairs["DATASETS.TEST"] == "('coco_2017_val',)" and pairs["SEED"] == "3"
    assert not output_root(checkout).exists()


@pytest.mark.parametrize("args, message", [
    (["--checkpoint={checkpoint}"], "--data_path is required"),
    (["--data_path={data}"], "--checkpoint is required"),
    (["--data_path={data}", "--checkpoint=/no/such/model.pth"], "--checkpoint=/no/such/model.pth does not exist"),
    (["--data_path={data}", "--checkpoint={data}"], "is not a readable file"),
    (["--data_path={data}", "--checkpoint={checkpoint}", "--config=/no/cfg.yaml"], "--config=/no/cfg.yaml does not exist"),
    (["--data_path={data}", "--checkpoint={checkpoint}", "--batch_size=3", "--nproc_per_node=2"],
     "--batch_size=3 does not split evenly over --nproc_per_node=2 processes"),
    (["--data_path={data}", "--checkpoint={checkpoint}", "--infer_steps=0"], "--infer_steps must be a positive integer"),
    (["--data_path={data}", "--checkpoint={checkpoint}", "--device=gpu"], "unknown --device 'gpu'"),
    (["--data_path={data}", "--checkpoint={checkpoint}", "--batch_size", "2"], "--batch_size takes its value after '='"),
    (["--data_path={data}", "--checkpoint={checkpoint}", "--train_steps=3"], "unknown argument '--train_steps=3'"),
    (["--data_path={data}", "--checkpoint={checkpoint}", "--", "--amp"], "'--amp' comes after '--'"),
    pytest.param(["--data_path={data}", "--checkpoint={checkpoint}", "--device=cpu", "--", "TEST.NOPE", "1"],
                 "unknown config key 'TEST.NOPE'", marks=pytest.mark.slow),
])
def test_bad_arguments_are_one_line_and_nothing_is_written(checkout, coco_root, checkpoint, args, message):
    args = [arg.format(data=coco_root, checkpoint=checkpoint) for arg in args]
    for script in ("eval.sh", "inference.sh"):
        done = run_script(checkout, script, *args)
        assert done.returncode == 2, done.stderr
        assert message in one_error_line(done.stderr, script)
    assert not output_root(checkout).exists()


@pytest.mark.slow
def test_eval_writes_ap_fps_and_latency(checkout, coco_root, checkpoint):
    done = run_script(checkout, "eval.sh", f"--data_path={coco_root}", f"--checkpoint={checkpoint}", "--device=cpu",
                      f"--config={REPO / CONFIG}", "--batch_size=2", "--", *FAST)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    summary = read_summary(checkout, f"{NETWORK}_bs2_1p_eval", device_id="eval_0")
    assert summary["RankSize"] == "1" and summary["BatchSize"] == "2" and float(summary["ActualFPS"]) > 0
    assert 0 < float(summary["LatencyP50"]) <= float(summary["LatencyP99"])
    assert float(summary["bbox AP"]) >= 0 and float(summary["segm AP"]) >= 0 and summary["Images"] == "2"
    folder = output_root(checkout) / "eval_0"
    log = (folder / "eval_0.log").read_text()
    assert "Total inference time: " in log and "Average Precision" in log
    assert json.loads((folder / "summary.json").read_text())["batch_size"] == 2
    assert (folder / "eval_dir" / "inference" / "coco_2017_val" / "coco_instances_results.json").is_file()


@pytest.mark.slow
def test_inference_on_two_processes_writes_fps_without_ap(checkout, coco_root, checkpoint):
    done = run_script(checkout, "inference.sh", f"--data_path={coco_root}", f"--checkpoint={checkpoint}",
                      "--device=cpu", f"--config={REPO / CONFIG}", "--batch_size=2", "--nproc_per_node=2",
                      f"--master_port={free_port()}", "--infer_steps=1", "--", *FAST)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    summary = read_summary(checkout, f"{NETWORK}_bs2_2p_infer", device_id="infer_0")
    assert summary["RankSize"] == "2" and float(summary["ActualFPS"]) > 0 and "bbox AP" not in summary
    assert summary["Images"] == "2"  # one batch of one image on each process
    log = (output_root(checkout) / "infer_0" / "infer_0.log").read_text()
    assert "on 2 devices" in log and "Average Precision" not in log
