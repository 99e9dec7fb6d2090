"""The launch scripts check every argument, the data layout and the config pairs before touching anything:
a user error is one line naming the culprit, exit code 2, and an earlier test/output/<id> stays as it was.
`--dry_run` shows what the defaults give (every script variant) without running or writing anything."""
import shlex
import shutil

import pytest
import torch

from launch_helpers import one_error_line, output_root, plant_earlier_output, run_script, tree_bytes

# (script, images per iteration, iterations) without --batch_size / --train_steps: the ModelZoo's defaults
# (ASCEND_NOTES.md); train_full_1p is train_full_8p's images (10250 x 64) at batch 8.
DEFAULTS = [
    ("train_performance_1p.sh", 8, 400),
    ("train_performance_8p.sh", 64, 200),
    ("train_performance_multinodes.sh", 64, 200),
    ("train_full_1p.sh", 8, 82000),
    ("train_full_8p.sh", 64, 10250),
    ("train_faster_rcnn_performance_1p.sh", 8, 3000),
    ("train_faster_rcnn_performance_8p.sh", 64, 3000),
    ("train_faster_rcnn_performance_multinodes.sh", 64, 3000),
    ("train_faster_rcnn_full_1p.sh", 8, 90000),
    ("train_faster_rcnn_full_8p.sh", 64, 11250),
]


def _pairs(command_line: str) -> dict:
    """The KEY VALUE pairs of the printed train_net command (the last value of a repeated key)."""
    tokens = shlex.split(command_line)
    start = tokens.index("--data_path") + 2
    return dict(zip(tokens[start::2], tokens[start + 1::2]))


@pytest.fixture(scope="module")
def bad_layouts(tmp_path_factory, coco_root):
    """Folders that are not usable COCO 2017 layouts, each broken in one way."""
    root = tmp_path_factory.mktemp("bad")
    layouts = {}
    for name in ("no_train_json", "html_json", "empty_train", "json_is_folder"):
        layouts[name] = root / name
        shutil.copytree(coco_root, layouts[name])
    (layouts["no_train_json"] / "annotations" / "instances_train2017.json").unlink()
    (layouts["html_json"] / "annotations" / "instances_val2017.json").write_text("<html>404</html>")
    shutil.rmtree(layouts["empty_train"] / "train2017")
    (layouts["empty_train"] / "train2017").mkdir()
    (layouts["json_is_folder"] / "annotations" / "instances_train2017.json").unlink()
    (layouts["json_is_folder"] / "annotations" / "instances_train2017.json").mkdir()
    (root / "a_file").write_text("x")
    layouts["a_file"] = root / "a_file"
    return layouts


# (script, arguments, what the line must name); DATA stands for the good synthetic layout
BAD_ARGUMENTS = [
    ("train_performance_1p.sh", ["--device=cpu"], "--data_path is required"),
    ("train_performance_1p.sh", ["--data_path=/no/such/coco"], "--data_path=/no/such/coco does not exist"),
    ("train_full_8p.sh", ["--data_path={no_train_json}"], "is not a COCO 2017 layout: {no_train_json}/annotations/instances_train2017.json is missing"),
    ("train_full_1p.sh", ["--data_path={html_json}"], "instances_val2017.json is not a COCO JSON file"),
    ("train_performance_1p.sh", ["--data_path={empty_train}"], "{empty_train}/train2017 holds no images"),
    ("train_performance_1p.sh", ["--data_path={json_is_folder}"], "instances_train2017.json is not a readable file"),
    ("train_performance_1p.sh", ["--data_path={a_file}"], "--data_path={a_file} is not a folder"),
    ("train_performance_1p.sh", ["--data_path=DATA", "--bogus=1"], "unknown argument '--bogus=1'"),
    ("train_performance_1p.sh", ["--data_path", "DATA"], "--data_path takes its value after '='"),
    ("train_performance_1p.sh", ["--data_path=DATA", "--batch_size=0"], "--batch_size must be a positive integer, got '0'"),
    ("train_performance_8p.sh", ["--data_path=DATA", "--batch_size=two"], "--batch_size must be a positive integer, got 'two'"),
    ("train_performance_1p.sh", ["--data_path=DATA", "--train_steps=-5"], "--train_steps must be a positive integer, got '-5'"),
    ("train_performance_1p.sh", ["--data_path=DATA", "--train_steps="], "--train_steps must be a positive integer, got ''"),
    ("train_performance_1p.sh", ["--data_path=DATA", "--device_id=x"], "--device_id must be a non-negative integer, got 'x'"),
    ("train_performance_multinodes.sh", ["--data_path=DATA", "--master_port=70000"], "--master_port must be an integer from 1 to 65535, got '70000'"),
    ("train_performance_multinodes.sh", ["--data_path=DATA", "--nnodes=2", "--node_rank=2"], "--node_rank=2 must be below --nnodes=2"),
    ("train_performance_multinodes.sh", ["--data_path=DATA", "--master_addr=a b"], "--master_addr must be a host name or an IP address"),
    ("train_performance_1p.sh", ["--data_path=DATA", "--hf32", "--fp32"], "--hf32 and --fp32 exclude each other"),
    ("train_performance_1p.sh", ["--data_path=DATA", "--device=gpu"], "unknown --device 'gpu'"),
    ("train_performance_1p.sh", ["--data_path=DATA", "--nproc_per_node=2"], "1p scripts run one process"),
    ("train_performance_8p.sh", ["--data_path=DATA", "--nnodes=2"], "--nnodes=2: use the multinodes script"),
    ("train_performance_8p.sh", ["--data_path=DATA", "--nproc_per_node=2", "--batch_size=3"], "--batch_size=3 does not split evenly over 2 processes"),
    ("train_performance_1p.sh", ["--data_path=DATA", "--", "MODEL.DEVICE"], "must be KEY VALUE pairs"),
    ("train_performance_1p.sh", ["--data_path=DATA", "--", "SOLVER.MAX_ITER", "3", "--train_steps=3", "x"], "'--train_steps=3' comes after '--'"),
    ("train_performance_1p.sh", ["--data_path=DATA", "--device=cpu", "--", "MODEL.BOGUS", "1"], "unknown config key 'MODEL.BOGUS'"),
    ("train_full_1p.sh", ["--data_path=DATA", "--device=cpu", "--", "SOLVER.MAX_ITER", "abc"], "config key 'SOLVER.MAX_ITER' in command-line overrides expects int, got str 'abc'"),
]


@pytest.mark.parametrize("script, arguments, culprit", BAD_ARGUMENTS)
def test_bad_arguments_are_one_line_exit_2_and_touch_nothing(checkout, coco_root, bad_layouts, script, arguments, culprit):
    names = {"DATA": coco_root, **{name: str(path) for name, path in bad_layouts.items()}}
    arguments = [arg.replace("DATA", coco_root).format(**names) for arg in arguments]
    earlier = plant_earlier_output(checkout)
    done = run_script(checkout, script, *arguments, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    assert culprit.format(**names) in one_error_line(done.stderr, script)
    assert tree_bytes(output_root(checkout)) == earlier  # nothing kept aside, renamed or added


def test_an_unusable_device_or_a_bad_environment_is_refused_before_anything(checkout, coco_root):
    earlier = plant_earlier_output(checkout)
    done = run_script(checkout, "train_performance_1p.sh", f"--data_path={coco_root}", "--device=cpu",
                      MASKRCNN_DIST_TIMEOUT="soon", timeout=60)
    assert done.returncode == 2
    assert "MASKRCNN_DIST_TIMEOUT must be a positive number of seconds, got 'soon'" in one_error_line(
        done.stderr, "train_performance_1p.sh")
    if not torch.cuda.is_available():
        done = run_script(checkout, "train_performance_1p.sh", f"--data_path={coco_root}", "--device=cuda",
                          "--device_id=1", timeout=120)
        assert done.returncode == 2 and "MODEL.DEVICE 'cuda:1'" in one_error_line(done.stderr, "train_performance_1p.sh")
    assert tree_bytes(output_root(checkout)) == earlier


def test_help_lists_the_arguments_and_the_defaults(checkout):
    done = run_script(checkout, "train_full_8p.sh", "--help", timeout=30)
    assert done.returncode == 0 and done.stderr == ""
    assert "--data_path=/path/to/coco" in done.stdout and "--train_steps=10250 at batch 64" in done.stdout
    assert not output_root(checkout).exists()


@pytest.mark.parametrize("script, batch, steps", DEFAULTS)
def test_dry_run_shows_the_modelzoo_defaults_of_every_script(checkout, coco_root, script, batch, steps):
    done = run_script(checkout, script, f"--data_path={coco_root}", "--device=cpu", "--dry_run", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    plan, note, command = done.stdout.splitlines()
    assert plan.endswith(f"batch {batch} (default), {steps} iterations (default)") and "nothing written" in note
    pairs = _pairs(command)
    assert (pairs["SOLVER.IMS_PER_BATCH"], pairs["SOLVER.MAX_ITER"]) == (str(batch), str(steps))
    assert float(pairs["SOLVER.BASE_LR"]) == pytest.approx(0.0025 * batch / 8)
    assert ("torch.distributed.run" in command) == ("1p" not in script)
    assert not output_root(checkout).exists()


def test_dry_run_scales_an_accuracy_run_to_the_batch_and_keeps_a_performance_run_fixed(checkout, coco_root):
    full = run_script(checkout, "train_full_8p.sh", f"--data_path={coco_root}", "--device=cpu", "--dry_run",
                      "--batch_size=32", timeout=120)
    perf = run_script(checkout, "train_performance_8p.sh", f"--data_path={coco_root}", "--device=cpu",
                      "--dry_run", "--batch_size=16", "--", "SOLVER.MAX_ITER", "5", timeout=120)
    full_pairs, perf_pairs = _pairs(full.stdout.splitlines()[-1]), _pairs(perf.stdout.splitlines()[-1])
    assert (full_pairs["SOLVER.MAX_ITER"], full_pairs["SOLVER.STEPS"]) == ("20500", "(15944,18981)")
    assert "200 iterations (default)" in perf.stdout and perf_pairs["SOLVER.MAX_ITER"] == "5"  # the user's pair wins
    assert float(perf_pairs["SOLVER.BASE_LR"]) == pytest.approx(0.005)


@pytest.mark.parametrize("flag, precision", [("--hf32", "high"), ("--fp32", "highest")])
def test_hf32_and_fp32_set_the_float32_precision_key(checkout, coco_root, flag, precision):
    """The config, not only the environment, carries the ModelZoo's float32 mode to the backend."""
    done = run_script(checkout, "train_performance_1p.sh", f"--data_path={coco_root}", "--device=cpu", "--dry_run",
                      flag, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    pairs = _pairs(done.stdout.splitlines()[-1])
    assert (pairs["AMP"], pairs["FLOAT32_PRECISION"]) == ("0", precision)
