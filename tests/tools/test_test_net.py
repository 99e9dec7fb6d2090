"""test_net: detectron2's / NVIDIA's options, the files and lines it writes, the JSON summary, bad
input as one line, the same code path as train_net --eval-only, and detectron2's AP on the d2_r18 case."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maskrcnn_multi.config import UserError, get_cfg
from maskrcnn_multi.data.synthetic import generate_shapes_dataset
from maskrcnn_multi.tools._cli import run_main
from maskrcnn_multi.tools.test_net import _check_json_summary, main, parse_args

REPO = Path(__file__).resolve().parents[2]
CONFIG = "configs/Synthetic/mask_rcnn_R_18_FPN_shapes.yaml"
TINY = ["DATALOADER.NUM_WORKERS", "0", "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "160",
        "MODEL.RPN.POST_NMS_TOPK_TEST", "50", "TEST.DETECTIONS_PER_IMAGE", "20"]
SUFFIX = " (MASKRCNN_DEBUG=1 shows the traceback)"


def test_options_and_trailing_pairs():
    args = parse_args(["--config-file", "c.yaml", "MODEL.WEIGHTS", "w.pth", "--skip-eval", "--infer-steps", "3",
                       "--json-summary", "s.json", "TEST.IMS_PER_BATCH", "4"])
    assert args.config_file == "c.yaml" and args.skip_eval and args.infer_steps == 3
    assert args.json_summary == "s.json" and args.opts == ["MODEL.WEIGHTS", "w.pth", "TEST.IMS_PER_BATCH", "4"]
    assert args.eval_only and args.num_gpus == 1 and parse_args([]).infer_steps is None


@pytest.mark.parametrize("steps", ["0", "-1", "two"])
def test_bad_infer_steps_is_one_line_and_exit_2(capsys, steps):
    assert run_main(main, ["--infer-steps", steps], prog="test_net") == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("test_net: error: argument --infer-steps: must be a positive")


def test_json_summary_folder_must_exist(tmp_path):
    _check_json_summary(str(tmp_path / "summary.json"))
    with pytest.raises(UserError, match=r"--json-summary .*nowhere/s.json: folder .*nowhere does not exist"):
        _check_json_summary(str(tmp_path / "nowhere" / "s.json"))
    with pytest.raises(UserError, match="is a folder"):
        _check_json_summary(str(tmp_path))


@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory):
    """A datasets root whose shapes/ set is tiny (6 val images of 96..160 px: the sizes differ)."""
    root = tmp_path_factory.mktemp("datasets")
    generate_shapes_dataset(str(root / "shapes"), num_train=1, num_val=6, seed=4, image_size=(96, 160))
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """A random-init checkpoint of the shapes config (test_net refuses to run without weights)."""
    from maskrcnn_multi.checkpoint import DetectionCheckpointer
    from maskrcnn_multi.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / CONFIG))
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    DetectionCheckpointer(build_model(cfg), save_dir=str(folder)).save("random")
    return str(folder / "random.pth")


def _run(module, datasets_root, *args, timeout=600):
    env = dict(os.environ, MASKRCNN_MULTI_DATASETS=str(datasets_root), OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for name in ("PERF_ONLY", "MASKRCNN_DEBUG", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    command = [sys.executable, "-m", f"maskrcnn_multi.tools.{module}", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(done) -> str:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_skip_eval_infer_steps_prints_throughput_and_writes_the_summary(datasets_root, weights, tmp_path):
    summary_file = tmp_path / "summary.json"
    stdout = _ok(_run("test_net", datasets_root, "--config-file", CONFIG, "--skip-eval", "--infer-steps", "2",
                      "--json-summary", str(summary_file), "MODEL.WEIGHTS", weights, "TEST.IMS_PER_BATCH", "2",
                      "OUTPUT_DIR", str(tmp_path / "out"), *TINY))
    assert re.search(r"Total inference time: \d:\d\d:\d\d \(\d+\.\d{6} s / iter per device, on 1 devices\)", stdout)
    assert re.search(r"Total inference pure compute time: \d:\d\d:\d\d \(\d+\.\d{6} s / iter per device", stdout)
    assert re.search(r"Total inference throughput: \d+\.\d\d images/s \(4 images in 2 batches", stdout)
    assert "Inference latency (ms / batch): avg " in stdout and "Average Precision" not in stdout
    summary = json.loads(summary_file.read_text())
    assert summary["images"] == 4 and summary["batches"] == 2 and summary["batch_size"] == 2
    assert summary["images_per_s"] > 0 and summary["ap"] is None and summary["skip_eval"] is True
    assert set(summary["latency_ms"]) == {"avg", "p50", "p90", "p95", "p99"} and summary["latency_ms"]["p99"] > 0
    assert summary["device"] == "cpu" and summary["precision"] == "exact" and summary["num_devices"] == 1
    folder = tmp_path / "out" / "inference" / "shapes_val"
    predictions = torch.load(folder / "instances_predictions.pth", weights_only=False)
    assert len(predictions) == 4 and (folder / "coco_instances_results.json").is_file()
    assert not (folder / "coco_eval_metrics.json").exists()


@pytest.mark.slow
def test_evaluation_is_train_nets_eval_only(datasets_root, weights, tmp_path):
    """Same weights, same batches: test_net and train_net --eval-only write the same predictions and AP."""
    pairs = ["MODEL.WEIGHTS", weights, "TEST.IMS_PER_BATCH", "3", "TEST.AMP.ENABLED", "True", *TINY]
    summary_file = tmp_path / "summary.json"
    tested = _ok(_run("test_net", datasets_root, "--config-file", CONFIG, "--json-summary", str(summary_file),
                      "OUTPUT_DIR", str(tmp_path / "test"), *pairs))
    evaluated = _ok(_run("train_net", datasets_root, "--config-file", CONFIG, "--eval-only",
                         "OUTPUT_DIR", str(tmp_path / "eval"), *pairs))
    for stdout in (tested, evaluated):
        assert "Average Precision" in stdout and "Total inference throughput" in stdout
        assert "(6 images in 2 batches" in stdout
    files = [tmp_path / run / "inference" / "shapes_val" for run in ("test", "eval")]
    for name in ("coco_instances_results.json", "coco_eval_metrics.json"):
        assert (files[0] / name).read_text() == (files[1] / name).read_text()
    summary = json.loads(summary_file.read_text())
    metrics = json.loads((files[0] / "coco_eval_metrics.json").read_text())
    assert summary["ap"] == {"bbox": metrics["bbox"]["AP"], "segm": metrics["segm"]["AP"]}
    assert summary["precision"] == "bf16" and (tmp_path / "test" / "config.yaml").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("case, args, pattern", [
    ("missing checkpoint", ["MODEL.WEIGHTS", "/nonexistent/model.pth"],
     r"MODEL.WEIGHTS /nonexistent/model\.pth: checkpoint file not found"),
    ("no checkpoint", ["MODEL.WEIGHTS", ""], r"MODEL.WEIGHTS is empty"),
    ("unknown dataset", ["DATASETS.TEST", "('nope_val',)"], r"DATASETS.TEST names dataset 'nope_val'"),
    ("bad batch", ["TEST.IMS_PER_BATCH", "0"], r"TEST.IMS_PER_BATCH must be a positive integer"),
    ("bad infer steps", ["--infer-steps", "0"], r"argument --infer-steps: must be a positive number"),
])
def test_bad_input_is_one_line_and_exit_2(datasets_root, weights, tmp_path, case, args, pattern):
    done = _run("test_net", datasets_root, "--config-file", CONFIG, "MODEL.WEIGHTS", weights,
                "OUTPUT_DIR", str(tmp_path / "out"), *TINY, *args)
    log = f"{case}: exit {done.returncode}\n{done.stderr[-3000:]}"
    assert done.returncode == 2 and "Traceback" not in done.stderr, log
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("test_net: error: ") and lines[0].endswith(SUFFIX), log
    assert re.search(pattern, lines[0]), log


@pytest.mark.slow
def test_two_processes_share_the_images(datasets_root, weights, tmp_path):
    summary_file = tmp_path / "summary.json"
    stdout = _ok(_run("test_net", datasets_root, "--config-file", CONFIG, "--num-gpus", "2",
                      "--json-summary", str(summary_file), "MODEL.WEIGHTS", weights,
                      "OUTPUT_DIR", str(tmp_path / "out"), *TINY))
    assert "torch.distributed.run" in stdout and "on 2 devices" in stdout
    summary = json.loads(summary_file.read_text())
    assert summary["num_devices"] == 2 and summary["images"] == 6 and summary["ap"] is not None
    predictions = torch.load(tmp_path / "out" / "inference" / "shapes_val" / "instances_predictions.pth",
                             weights_only=False)
    assert sorted(p["image_id"] for p in predictions) == list(range(1, 7))


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 4])
def test_d2_r18_on_the_shapes_val_split_gives_detectron2s_ap(reference_dir, tmp_path, batch):
    """The done-when criterion: test_net on the shared d2_r18 case reproduces train_ap.json (within 0.1)
    at batch 1 and batch 4 (the split's images share one size, so batching pads nothing more)."""
    shapes, d2_dir = reference_dir / "shapes", reference_dir / "d2_r18_shapes"
    expected = json.loads((d2_dir / "train_ap.json").read_text())
    summary_file = tmp_path / "summary.json"
    _ok(_run("test_net", tmp_path / "datasets", "--config-file", str(d2_dir / "config.yaml"),
             "--dataset", "ref_shapes_val", str(shapes / "annotations" / "instances_val.json"), str(shapes / "val"),
             "--json-summary", str(summary_file), "MODEL.WEIGHTS", str(d2_dir / "model_final.pkl"),
             "MODEL.DEVICE", "cpu", "DATASETS.TEST", "('ref_shapes_val',)", "DATALOADER.NUM_WORKERS", "0",
             "TEST.IMS_PER_BATCH", str(batch), "OUTPUT_DIR", str(tmp_path / "out")))
    summary = json.loads(summary_file.read_text())
    assert summary["images"] == 40 and summary["batches"] == 40 // batch
    assert summary["ap"]["bbox"] == pytest.approx(expected["bbox_AP"], abs=0.1)
    assert summary["ap"]["segm"] == pytest.approx(expected["segm_AP"], abs=0.1)
