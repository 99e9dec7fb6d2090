"""The catalogue of bad inputs, fed through the real command lines (subprocesses).

Each user error must end the run with exit code 2 and exactly one line on stderr, naming the culprit,
with no traceback, and must leave an earlier run's OUTPUT_DIR (config, checkpoints, metrics) as it
was (log.txt and metrics.json may only grow; a fresh run moves checkpoints into previous_run_<time>/). Bad records that are dropped instead are counted in a warning naming the
file, and the run goes on. The model is the tiny synthetic one; every error case stops before the
first training iteration except "every training image unreadable", which stops at it.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from maskrcnn_multi.data.synthetic import generate_shapes_dataset

REPO = Path(__file__).resolve().parents[2]
CONFIG = "configs/Synthetic/mask_rcnn_R_18_FPN_shapes.yaml"
TINY = [
    "SEED", "5", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "1",
    "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "(100,)", "SOLVER.CHECKPOINT_PERIOD", "100",
    "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "96",
    "INPUT.MAX_SIZE_TEST", "128", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64", "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
]
SUFFIX = " (MASKRCNN_DEBUG=1 shows the traceback)"

pytestmark = pytest.mark.slow  # subprocesses, 2-12 s each


@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory):
    """A datasets root whose shapes/ set is tiny (4 train, 2 val images): what the CLI trains on."""
    root = tmp_path_factory.mktemp("datasets")
    generate_shapes_dataset(str(root / "shapes"), num_train=4, num_val=2, seed=4)
    return root


@pytest.fixture
def previous_run(tmp_path):
    """An OUTPUT_DIR an earlier run left: config, checkpoints, metrics and log."""
    folder = tmp_path / "previous_run"
    folder.mkdir()
    (folder / "config.yaml").write_text("# the earlier run's config\nSEED: 1\n")
    (folder / "model_0000099.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    (folder / "last_checkpoint").write_text("model_0000099.pth")
    (folder / "metrics.json").write_text('{"iteration": 99, "total_loss": 1.5}\n')
    (folder / "log.txt").write_text("the earlier run's log\n")
    return folder


def _snapshot(folder: Path) -> dict:
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _assert_nothing_lost(before: dict, folder: Path) -> None:
    """Every earlier file is still there, unchanged, in OUTPUT_DIR or, for a fresh run's moved
    checkpoints and config, in OUTPUT_DIR/previous_run_<time>/; log.txt and metrics.json may grow."""
    after = _snapshot(folder)
    kept = [name.parts[0] for name in after if name.parts[0].startswith("previous_run_")]
    for name, content in before.items():
        versions = [after[place] for place in [name, *(Path(k, name) for k in set(kept))] if place in after]
        assert versions, f"{name} was removed"
        if name.name in ("log.txt", "metrics.json"):  # a later run appends to them
            assert any(v.startswith(content) for v in versions), f"{name} lost its earlier lines"
        else:
            assert content in versions, f"{name} was changed"


def _env(datasets_root, **extra):
    env = dict(os.environ, MASKRCNN_MULTI_DATASETS=str(datasets_root), OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra)
    for name in ("PERF_ONLY", "MASKRCNN_DEBUG"):
        if name not in extra:
            env.pop(name, None)
    return env


def _run(module, args, env, cwd=REPO):
    command = [sys.executable, "-m", f"maskrcnn_multi.tools.{module}", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _train_net(datasets_root, output_dir, *args, config=CONFIG, **env):
    return _run("train_net", ["--config-file", config, *TINY, "OUTPUT_DIR", str(output_dir), *args],
                _env(datasets_root, **env))


def _assert_user_error(done, prog, pattern):
    log = f"exit code {done.returncode}\nstderr:\n{done.stderr[-3000:]}\nstdout:\n{done.stdout[-2000:]}"
    assert done.returncode == 2, log
    assert "Traceback" not in done.stderr + done.stdout, log
    lines = done.stderr.splitlines()
    assert len(lines) == 1, log
    assert lines[0].startswith(f"{prog}: error: ") and lines[0].endswith(SUFFIX), log
    assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"


# ---------------------------------------------------------------- config and command line

CONFIG_CASES = {
    "unregistered train dataset": (["DATASETS.TRAIN", "('nope',)"],
                                   r"DATASETS.TRAIN names dataset 'nope', which is not registered \(registered: .*shapes_train"),
    "unregistered test dataset": (["DATASETS.TEST", "('nope_val',)"], r"DATASETS.TEST names dataset 'nope_val'"),
    "NUM_CLASSES smaller than the categories": (
        ["MODEL.ROI_HEADS.NUM_CLASSES", "2"],
        r"MODEL.ROI_HEADS.NUM_CLASSES is 2 but dataset 'shapes_train' has 3 categories .*NUM_CLASSES 3"),
    "NUM_CLASSES larger than the categories": (
        ["MODEL.ROI_HEADS.NUM_CLASSES", "80"], r"MODEL.ROI_HEADS.NUM_CLASSES is 80 but dataset 'shapes_train' has 3"),
    "odd overrides": (["SOLVER.MAX_ITER"], r"KEY VALUE pairs; 'SOLVER.MAX_ITER' has no value"),
    "unknown config key": (["SOLVER.NOPE", "1"], r"unknown config key 'SOLVER.NOPE'"),
    "unknown device": (["MODEL.DEVICE", "gpu"], r"unknown MODEL.DEVICE 'gpu' \(choose from: cpu, cuda, npu\)"),
    "unknown option after the pairs": (["--evil-only"], r"unrecognized arguments: --evil-only"),
    "bad dist url": (["--num-gpus", "2", "--dist-url", "udp://host"], r"--dist-url 'udp://host' is not 'auto' or tcp://"),
    "master port out of range": (["--num-gpus", "2", "--master-port", "99999"], r"^train_net: error: --master-port 99999 is not in 1\.\.65535"),
    "dist url port out of range": (["--num-gpus", "2", "--dist-url", "tcp://127.0.0.1:99999"],
                                   r"--dist-url 'tcp://127.0.0.1:99999': port 99999 is not in 1\.\.65535"),
    "no processes": (["--num-gpus", "0"], r"--num-gpus 0: the number of processes per machine must be at least 1"),
    "negative processes": (["--num-gpus", "-1"], r"--num-gpus -1: "),
    "machine rank out of range": (["--num-machines", "2", "--machine-rank", "5", "--dist-url", "tcp://127.0.0.1:29511"],
                                  r"--machine-rank 5: machine rank must be in 0\.\.1"),
    "machine rank out of range, no dist url": (["--num-machines", "2", "--machine-rank", "5"],
                                               r"--machine-rank 5: machine rank must be in 0\.\.1"),
    "missing weights": (["--eval-only", "MODEL.WEIGHTS", "/nonexistent/weights.pth"], r"/nonexistent/weights\.pth"),
    "bad solver value": (["SOLVER.WARMUP_METHOD", "cosine"], r"unknown SOLVER.WARMUP_METHOD 'cosine'"),
    "negative learning rate": (["SOLVER.BASE_LR", "-1"], r"'SOLVER.BASE_LR' in command-line overrides must be >= 0"),
    "refused detectron2 key": (["MODEL.KEYPOINT_ON", "True"], r"'MODEL.KEYPOINT_ON' .* is not supported: keypoint"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_and_command_line_mistakes(datasets_root, previous_run, case):
    args, pattern = CONFIG_CASES[case]
    before = _snapshot(previous_run)
    _assert_user_error(_train_net(datasets_root, previous_run, *args), "train_net", pattern)
    _assert_nothing_lost(before, previous_run)


def test_bad_dist_timeout_is_named_before_any_rank_starts(datasets_root, previous_run):
    before = _snapshot(previous_run)
    done = _train_net(datasets_root, previous_run, "--num-gpus", "2", MASKRCNN_DIST_TIMEOUT="abc")
    _assert_user_error(done, "train_net", r"MASKRCNN_DIST_TIMEOUT='abc' is not a number of seconds")
    assert "torch.distributed.run" not in done.stdout
    _assert_nothing_lost(before, previous_run)


def test_user_error_in_the_ranks_of_num_gpus_2_exits_2_without_torchruns_report(datasets_root, tmp_path):
    """Each rank prints its one line; the launcher adds one naming the ranks, not ChildFailedError."""
    done = _train_net(datasets_root, tmp_path / "ranks", "--num-gpus", "2", "MODEL.ROI_HEADS.NUM_CLASSES", "5")
    log = f"exit code {done.returncode}\nstderr:\n{done.stderr[-3000:]}"
    assert done.returncode == 2, log
    assert "Traceback" not in done.stderr and "ChildFailedError" not in done.stderr, log
    errors = [line for line in done.stderr.splitlines() if line.startswith("train_net: error: ")]
    assert any("MODEL.ROI_HEADS.NUM_CLASSES is 5 but dataset 'shapes_train' has 3" in line for line in errors), log
    assert re.search(r"rank\(s\) [01](, 1)? of 2 stopped on the error printed above", errors[-1]), log


def test_missing_config_file(datasets_root, tmp_path):
    done = _train_net(datasets_root, tmp_path / "out", config=str(tmp_path / "nope.yaml"))
    _assert_user_error(done, "train_net", r"config file not found: .*nope\.yaml")


def test_data_path_that_is_not_a_coco_layout(datasets_root, previous_run, tmp_path):
    before = _snapshot(previous_run)
    done = _train_net(datasets_root, previous_run, "--data_path", str(tmp_path))
    _assert_user_error(done, "train_net", rf"--data_path {tmp_path} is not a COCO 2017 layout: .*instances_train2017\.json is missing")
    _assert_nothing_lost(before, previous_run)


def test_output_dir_that_is_a_file(datasets_root, tmp_path):
    blocker = tmp_path / "results.txt"
    blocker.write_text("precious results")
    done = _train_net(datasets_root, blocker)
    _assert_user_error(done, "train_net", rf"OUTPUT_DIR '{blocker}' is a file, not a folder")
    assert blocker.read_text() == "precious results"


def test_an_option_after_the_pairs_is_that_option(datasets_root, tmp_path):
    """`... SOLVER.MAX_ITER 1 --eval-only` evaluates (reported as an unknown key before)."""
    done = _train_net(datasets_root, tmp_path / "eval", "SOLVER.MAX_ITER", "1", "--eval-only")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Average Precision" in done.stdout and "step_time" not in done.stdout


def test_debug_variable_shows_the_traceback(datasets_root, tmp_path):
    done = _train_net(datasets_root, tmp_path / "out", "DATASETS.TRAIN", "('nope',)", MASKRCNN_DEBUG="1")
    assert done.returncode == 1 and "Traceback" in done.stderr and "UnknownDatasetError" in done.stderr


# ---------------------------------------------------------------- bad data

def _shapes_json(datasets_root) -> dict:
    return json.loads((datasets_root / "shapes" / "annotations" / "instances_train.json").read_text())


def _bad_dataset_args(datasets_root, folder: Path, dataset: dict, image_root=None) -> list:
    json_file = folder / "bad.json"
    json_file.write_text(json.dumps(dataset))
    image_root = image_root or datasets_root / "shapes" / "train"
    return ["--dataset", "bad_train", str(json_file), str(image_root), "DATASETS.TRAIN", "('bad_train',)"]


def _without_first_id(dataset):
    del dataset["annotations"][0]["id"]


def _set(section, index, key, value):
    def change(dataset):
        dataset[section][index][key] = value
    return change


DATA_CASES = {
    "annotation without id": (_without_first_id, r"bad\.json: annotation #0 has no 'id'"),
    "bbox holding strings": (_set("annotations", 1, "bbox", ["a", "b", "c", "d"]),
                             r"bad\.json: annotation \d+ has bbox \['a', 'b', 'c', 'd'\]"),
    "polygon holding strings": (_set("annotations", 0, "segmentation", [["1", "2", "3", "4", "5", "6"]]),
                                r"bad\.json: annotation \d+ has a polygon holding non-numbers"),
    "non-numeric height": (_set("images", 2, "height", "tall"), r"bad\.json: image \d+ has height 'tall'"),
    "unknown category": (_set("annotations", 0, "category_id", 42), r"bad\.json: annotation \d+ has category_id 42"),
    "duplicate image ids": (_set("images", 1, "id", 1), r"bad\.json: image id 1 is used by 2 images"),
    "RLE of a bad size": (_set("annotations", 0, "segmentation", {"counts": "zz", "size": [1]}),
                          r"bad\.json: annotation \d+ has an RLE of size \[1\]"),
    "RLE whose runs miss the mask": (_set("annotations", 0, "segmentation", {"counts": "zz", "size": [10, 10]}),
                                     r"bad\.json: annotation \d+ has a compressed RLE whose runs do not cover"),
    "no annotations at all": (lambda dataset: dataset.pop("annotations"),
                              r"dataset\(s\) bad_train \(.*bad\.json\) have no image with annotations"),
    "a mask model's annotation without segmentation": (
        lambda dataset: [annotation.pop("segmentation") for annotation in dataset["annotations"]],
        r"MODEL.MASK_ON is set but \d+ annotation\(s\) of .*bad\.json have no segmentation"),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_records_are_refused_by_name(datasets_root, previous_run, case):
    change, pattern = DATA_CASES[case]
    dataset = _shapes_json(datasets_root)
    change(dataset)
    before = _snapshot(previous_run)
    done = _train_net(datasets_root, previous_run, *_bad_dataset_args(datasets_root, previous_run.parent, dataset))
    _assert_user_error(done, "train_net", pattern)
    _assert_nothing_lost(before, previous_run)


def test_a_last_checkpoint_that_is_not_text(datasets_root, previous_run):
    (previous_run / "last_checkpoint").write_bytes(b"\x80\xa7\x00 not a name")
    before = _snapshot(previous_run)
    done = _train_net(datasets_root, previous_run, "--resume")
    _assert_user_error(done, "train_net", r"last_checkpoint is not a checkpoint name \(it is not text\)")
    _assert_nothing_lost(before, previous_run)


def test_a_fresh_run_keeps_the_previous_runs_checkpoints(datasets_root, previous_run):
    before = _snapshot(previous_run)
    done = _train_net(datasets_root, previous_run, "SOLVER.CHECKPOINT_PERIOD", "1", PERF_ONLY="True")
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_nothing_lost(before, previous_run)
    kept = [path for path in previous_run.glob("previous_run_*/model_0000099.pth")]
    assert len(kept) == 1 and (previous_run / "model_final.pth").is_file()
    assert (previous_run / "last_checkpoint").read_text() == "model_final.pth"


def test_benchmark_ops_repeat_must_be_positive(datasets_root):
    _assert_user_error(_run("benchmark_ops", ["--repeat", "0"], _env(datasets_root)), "benchmark_ops",
                       r"--repeat must be at least 1, got 0")


def test_every_training_image_unreadable(datasets_root, previous_run, tmp_path):
    dataset = _shapes_json(datasets_root)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    for image in dataset["images"]:
        (garbage / image["file_name"]).write_bytes(b"this is not an image")
    before = _snapshot(previous_run)
    done = _train_net(datasets_root, previous_run, *_bad_dataset_args(datasets_root, tmp_path, dataset, garbage))
    _assert_user_error(done, "train_net", r"none of the 4 training images can be read .*the last: cannot read image .*garbage")
    assert done.stdout.count("skipping image in training") == 4  # each named in a warning
    _assert_nothing_lost(before, previous_run)


def test_nan_and_orphan_records_are_dropped_with_counted_warnings(datasets_root, tmp_path):
    """NaN/inf boxes, a NaN polygon x-coordinate (once 24 GB of rasterization) and an unknown image_id
    are dropped, each reason counted once naming the file; a 16-bit PNG trains as its 8-bit image."""
    dataset = _shapes_json(datasets_root)
    annotations = dataset["annotations"]
    annotations[0]["bbox"][0] = float("nan")
    annotations[1]["bbox"][2] = float("inf")
    annotations[2]["segmentation"][0][0] = float("nan")
    annotations[3]["image_id"] = 999
    images = tmp_path / "images"
    shutil.copytree(datasets_root / "shapes" / "train", images)
    first = dataset["images"][0]
    gray = cv2.imread(str(images / first["file_name"]), cv2.IMREAD_GRAYSCALE)
    first["file_name"] = "sixteen_bit.png"
    assert cv2.imwrite(str(images / first["file_name"]), gray.astype(np.uint16) * 257)
    with Image.open(images / first["file_name"]) as image:
        assert image.mode == "I;16"  # read as all 255 before

    done = _train_net(datasets_root, tmp_path / "out", *_bad_dataset_args(datasets_root, tmp_path, dataset, images),
                      PERF_ONLY="True")
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    json_file = str(tmp_path / "bad.json")
    ids = [annotation["id"] for annotation in annotations[:4]]
    for message in (f"dropped 2 annotations with a NaN or infinite box coordinate (annotation ids: {ids[0]}, {ids[1]})",
                    f"dropped 1 polygons with a NaN or infinite coordinate (annotation ids: {ids[2]})",
                    f"dropped 1 annotations whose image_id is not among the images (annotation ids: {ids[3]})"):
        assert done.stdout.count(f"{json_file}: {message}") == 1, done.stdout[-3000:]
    assert "skipping image" not in done.stdout and "step_time = " in done.stdout


# ---------------------------------------------------------------- demo and benchmark

def _demo(datasets_root, *args, cwd=REPO):
    return _run("demo", ["--config-file", CONFIG, *args, "MODEL.WEIGHTS", "", "INPUT.MIN_SIZE_TEST", "96",
                         "INPUT.MAX_SIZE_TEST", "128"], _env(datasets_root), cwd=cwd)


def test_demo_output_that_is_a_file(datasets_root, tmp_path):
    images = sorted(str(path) for path in (datasets_root / "shapes" / "val").iterdir())
    blocker = tmp_path / "drawn.jpg"
    blocker.write_bytes(b"an earlier drawing")
    done = _demo(datasets_root, "--input", *images, "--output", str(blocker))
    _assert_user_error(done, "demo", rf"--output '{blocker}' is a file, but 2 inputs need a folder")
    assert blocker.read_bytes() == b"an earlier drawing"


def test_demo_glob_without_match_and_odd_overrides(datasets_root, tmp_path):
    done = _demo(datasets_root, "--input", str(tmp_path / "nothing*.jpg"), "--output", str(tmp_path / "out"))
    _assert_user_error(done, "demo", rf"--input '{tmp_path}/nothing\*\.jpg' matches no file")
    done = _run("demo", ["--config-file", CONFIG, "--input", "x.jpg", "--output", "o", "MODEL.WEIGHTS"], _env(datasets_root))
    _assert_user_error(done, "demo", r"KEY VALUE pairs; 'MODEL.WEIGHTS' has no value")


def test_demo_keeps_inputs_of_the_same_name_apart_and_names_an_unreadable_one(datasets_root, tmp_path):
    sources = sorted((datasets_root / "shapes" / "val").iterdir())
    for folder, source in zip(("a", "b"), sources):
        (tmp_path / folder).mkdir()
        shutil.copy(source, tmp_path / folder / "same.jpg")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "broken.jpg").write_bytes(b"not an image")
    output = tmp_path / "drawn"
    done = _demo(datasets_root, "--input", str(tmp_path / "a" / "same.jpg"), str(tmp_path / "b" / "same.jpg"),
                 str(tmp_path / "c" / "broken.jpg"), "--output", str(output))
    _assert_user_error(done, "demo", r"1 of 3 inputs could not be read \(the others were drawn\): cannot read image .*broken\.jpg")
    drawn = [cv2.imread(str(output / folder / "same.jpg")) for folder in ("a", "b")]
    assert all(image is not None for image in drawn)
    assert drawn[0].shape != drawn[1].shape or not np.array_equal(drawn[0], drawn[1])  # two images, none overwritten


@pytest.mark.parametrize("args, pattern", [
    (["--task", "inference", "--iters", "0"], r"--iters must be >= 1 and --warmup >= 0, got 0, 2"),
    (["--task", "fly"], r"argument --task: invalid choice: 'fly'"),
])
def test_benchmark_mistakes(datasets_root, args, pattern):
    done = _run("benchmark", ["--config-file", CONFIG, *args], _env(datasets_root))
    _assert_user_error(done, "benchmark", pattern)
