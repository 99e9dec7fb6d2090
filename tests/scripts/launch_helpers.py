"""Helpers for the launch-script tests (imported as launch_helpers): a scratch "checkout" that runs the
repo's test/*.sh unchanged but keeps test/output/ out of the repo, tiny-model config pairs, and
snapshots of test/output/ to show that nothing in it was lost."""
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Passed after `--`: the scripts' real configs (R-101 FPN) shrunk to a from-scratch R-18 with BN (FrozenBN
# with random weights does not train), 96..128 px inputs, 3 classes, few proposals, no workers, no
# periodic checkpoint. Everything else (AMP O2, the ModelZoo's pairs, the schedule) is the scripts' own.
TINY_MODEL = [
    "MODEL.WEIGHTS", "", "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.RESNETS.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", "0", "MODEL.FPN.OUT_CHANNELS", "64",
    "MODEL.ROI_HEADS.NUM_CLASSES", "3", "MODEL.ROI_BOX_HEAD.FC_DIM", "256", "MODEL.ROI_MASK_HEAD.CONV_DIM", "64",
    "MODEL.ANCHOR_GENERATOR.SIZES", "[[16],[32],[64],[128],[256]]",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64", "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32", "TEST.DETECTIONS_PER_IMAGE", "20",
]
TINY_INPUT = ["INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128",
              "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "128"]
TINY = TINY_MODEL + TINY_INPUT + ["DATALOADER.NUM_WORKERS", "0", "SOLVER.CHECKPOINT_PERIOD", "100000"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_checkout(root: Path) -> Path:
    """A folder that looks like the repo root to the scripts: a copy of test/*.sh (so test/output/
    lands here) beside links to the package and the configs."""
    (root / "test").mkdir(parents=True)
    for script in (REPO / "test").glob("*.sh"):
        shutil.copy2(script, root / "test" / script.name)
    for name in ("maskrcnn_multi", "configs"):
        (root / name).symlink_to(REPO / name, target_is_directory=True)
    return root


def script_env(**extra) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in ("PERF_ONLY", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                          "TORCHELASTIC_USE_AGENT_STORE", "ALLOW_HF32", "ALLOW_FP32", "PYTHONPATH")}
    env.update(PYTHON=sys.executable, OMP_NUM_THREADS="1", **extra)
    return env


def start_script(checkout: Path, script: str, *args: str, **env) -> subprocess.Popen:
    """`bash test/<script> args...` from the checkout (stdout = the summary, stderr = errors)."""
    return subprocess.Popen(["bash", f"test/{script}", *args], cwd=checkout, env=script_env(**env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def run_script(checkout: Path, script: str, *args: str, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    process = start_script(checkout, script, *args, **env)
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def read_summary(checkout: Path, case_name: str, device_id: int = 0) -> dict:
    """test/output/<id>/<CaseName>.log as {key: value}."""
    path = checkout / "test" / "output" / str(device_id) / f"{case_name}.log"
    assert path.is_file(), f"no summary {path}; found {sorted(p.name for p in path.parent.iterdir())}"
    pairs = [line.split(" = ", 1) for line in path.read_text().splitlines() if " = " in line]
    return {key: value for key, value in pairs}


def train_log(checkout: Path, device_id: int = 0) -> str:
    return (checkout / "test" / "output" / str(device_id) / f"train_{device_id}.log").read_text(errors="replace")


def output_root(checkout: Path) -> Path:
    return checkout / "test" / "output"


def tree_bytes(root: Path) -> dict:
    """{relative path: bytes} of every file under `root` ({} when it does not exist)."""
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def plant_earlier_output(checkout: Path, device_id: int = 0) -> dict:
    """A previous run's test/output/<id> (log, summary, a checkpoint); returns tree_bytes(test/output)."""
    folder = output_root(checkout) / str(device_id)
    (folder / "train_dir").mkdir(parents=True)
    (folder / f"train_{device_id}.log").write_text("the earlier run's log\n")
    (folder / "Faster_Mask_RCNN_ID0101_for_PyTorch_bs8_1p_perf.log").write_text("ActualFPS = 12.5\n")
    (folder / "train_dir" / "model_final.pth").write_bytes(bytes(range(256)) * 4)
    return tree_bytes(output_root(checkout))


def one_error_line(stderr: str, script: str) -> str:
    """The single line a user error prints (`<script>: error: ...`), checked to be alone and no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert lines[0].startswith(f"{script}: error: "), lines[0]
    return lines[0]
