"""tools.benchmark: the table of modes x threads, and its one-line errors."""
import subprocess
import sys
from pathlib import Path

from maskrcnn_multi.tools.benchmark import format_table


CONFIG = Path(__file__).resolve().parents[2] / "configs" / "Synthetic" / "mask_rcnn_R_18_FPN_shapes.yaml"


def _result(mode, task, threads, seconds, detections=100, peak=1000.0):
    return {"mode": mode, "task": task, "threads": threads, "seconds": seconds, "detections": detections,
            "peak_mb": peak}


def test_the_table_has_a_row_per_mode_and_a_column_per_task_and_thread_count():
    results = [_result(m, t, n, s) for m, s in (("exact", 5.0), ("fast", 1.2)) for t in ("inference", "train")
               for n in (1, 2)] + [_result("compiled", "inference", n, 1.0) for n in (1, 2)]
    table = format_table(results, ["exact", "fast", "compiled"], ["inference", "train"], [1, 2]).splitlines()
    assert table[0].startswith("| mode | inference s/image, 1 thread | inference s/image, 2 threads |")
    assert "training s/iter (2 images), 2 threads" in table[0] and "peak MB (train)" in table[0]
    assert table[2] == "| exact | 5.000 | 5.000 | 5.000 | 5.000 | 100 | 1000 | 1000 |"
    assert table[4] == "| compiled | 1.000 | 1.000 | - | - | 100 | 1000 | - |"  # inference-only mode


def test_a_bad_mode_is_one_line_and_exit_2():
    done = subprocess.run([sys.executable, "-m", "maskrcnn_multi.tools.benchmark", "--config-file",
                           str(CONFIG), "--modes", "turbo"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--modes 'turbo'" in done.stderr and "exact" in done.stderr
