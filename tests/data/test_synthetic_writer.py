"""`python -m maskrcnn_multi.data.synthetic --output DIR` never loses anything: a non-empty DIR is refused
unless --overwrite, which replaces only a synthetic set; a user error is one line and exit code 2."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maskrcnn_multi.data.synthetic import OutputFolderError, generate_shapes_dataset, write_synthetic_set
from maskrcnn_multi.data.synthetic import writer as synthetic_writer
from maskrcnn_multi.data.synthetic.__main__ import main as cli_main

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--num-train", "2", "--num-val", "1", "--image-size", "64", "64"]


def _tree_bytes(root: Path) -> dict:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("maskrcnn_multi.data.synthetic: error: "), lines[0]
    return lines[0]


def test_the_real_cli_refuses_a_non_empty_output_with_one_line_and_exit_2(tmp_path):
    output = tmp_path / "set"
    command = [sys.executable, "-m", "maskrcnn_multi.data.synthetic", "--output", str(output), *SMALL]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    before = _tree_bytes(output)
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr.strip() == (f"maskrcnn_multi.data.synthetic: error: output folder {output} is not empty "
                                    "(it holds annotations, train, val); choose an empty folder, or pass "
                                    "--overwrite to replace the synthetic set in it")
    assert _tree_bytes(output) == before


def test_a_folder_with_any_file_is_refused_untouched(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert cli_main(["--output", str(tmp_path), *SMALL]) == 2
    assert f"output folder {tmp_path} is not empty (it holds notes.txt)" in _one_error_line(capsys)
    assert os.listdir(tmp_path) == ["notes.txt"] and (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_the_set_as_a_whole(tmp_path, capsys):
    output = tmp_path / "set"
    assert cli_main(["--output", str(output), "--num-train", "3", "--num-val", "2", "--seed", "1"]) == 0
    assert cli_main(["--output", str(output), "--overwrite", *SMALL, "--seed", "7"]) == 0
    fresh = generate_shapes_dataset(str(tmp_path / "fresh"), num_train=2, num_val=1, seed=7, image_size=(64, 64))
    assert _tree_bytes(output) == _tree_bytes(Path(fresh))  # no image of the larger earlier set is left
    assert not [name for name in os.listdir(output) if name.startswith(".")]
    # and from one layout to the other
    assert cli_main(["--output", str(output), "--overwrite", "--layout", "coco2017", *SMALL]) == 0
    assert sorted(os.listdir(output)) == ["annotations", "train2017", "val2017"]
    assert sorted(os.listdir(output / "annotations")) == ["instances_train2017.json", "instances_val2017.json"]


@pytest.mark.parametrize("stray", ["notes.txt", "train/holiday.png", "annotations/captions_train2017.json",
                                   "val/val_00001.jpg/inner"])
def test_overwrite_refuses_a_folder_that_holds_anything_but_a_set(tmp_path, capsys, stray):
    output = tmp_path / "set"
    write_synthetic_set(str(output), num_train=1, num_val=1, image_size=(64, 64))
    if stray.endswith("/inner"):  # a folder where an image should be
        (output / "val" / "val_00001.jpg").unlink()
        (output / stray).parent.mkdir()
    (output / stray).write_text("mine")
    before = _tree_bytes(output)
    assert cli_main(["--output", str(output), "--overwrite", *SMALL]) == 2
    line = _one_error_line(capsys)
    assert "which is not part of a synthetic set" in line
    assert str(output / stray.removesuffix("/inner")) in line
    assert _tree_bytes(output) == before


@pytest.mark.parametrize("arguments, culprit", [
    (["--num-train", "-1"], "image counts must be >= 0, got num_train=-1"),
    (["--seed", "-3"], "seed must be >= 0, got -3"),
    (["--image-size", "16", "16"], "image_size (16, 16) is too small"),
    (["--image-size", "80", "40"], "image_size must be (min, max) with 0 < min <= max, got (80, 40)"),
])
def test_bad_numbers_are_one_line_and_write_nothing(tmp_path, capsys, arguments, culprit):
    output = tmp_path / "set"
    assert cli_main(["--output", str(output), *arguments]) == 2
    assert culprit in _one_error_line(capsys)
    assert not output.exists()


def test_a_bad_option_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--output", str(tmp_path / "set"), "--num-train", "many"])
    assert exit_info.value.code == 2
    assert "argument --num-train: invalid int value: 'many'" in _one_error_line(capsys)
    assert os.listdir(tmp_path) == []


def test_an_output_that_is_a_file_or_cannot_be_made_is_named(tmp_path, capsys):
    (tmp_path / "a_file").write_text("keep me")
    assert cli_main(["--output", str(tmp_path / "a_file"), *SMALL]) == 2
    assert f"output {tmp_path / 'a_file'} exists and is not a folder" in _one_error_line(capsys)
    assert cli_main(["--output", str(tmp_path / "a_file" / "set"), *SMALL]) == 2
    assert f"cannot write the set into {tmp_path / 'a_file' / 'set'}" in _one_error_line(capsys)
    assert (tmp_path / "a_file").read_text() == "keep me"


def test_a_failed_generation_leaves_the_earlier_set_as_it_was(tmp_path, monkeypatch):
    output = tmp_path / "set"
    write_synthetic_set(str(output), num_train=2, num_val=1, image_size=(64, 64))
    before = _tree_bytes(output)

    def disk_full(root, **kwargs):
        generate_shapes_dataset(root, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(synthetic_writer, "generate_shapes_dataset", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_synthetic_set(str(output), overwrite=True, num_train=1, num_val=1, image_size=(64, 64))
    assert _tree_bytes(output) == before and sorted(os.listdir(output)) == ["annotations", "train", "val"]


def test_a_failure_while_moving_into_place_puts_the_earlier_set_back(tmp_path, monkeypatch):
    output = tmp_path / "set"
    write_synthetic_set(str(output), num_train=2, num_val=1, image_size=(64, 64))
    before = _tree_bytes(output)
    real_replace = os.replace

    def failing_replace(source, target):
        if str(target).endswith("instances_val.json") and ".synthetic-partial-" in str(source):
            raise OSError(5, "Input/output error")
        return real_replace(source, target)

    monkeypatch.setattr(synthetic_writer.os, "replace", failing_replace)
    with pytest.raises(OSError, match="Input/output error"):
        write_synthetic_set(str(output), overwrite=True, num_train=1, num_val=1, image_size=(64, 64), seed=9)
    monkeypatch.setattr(synthetic_writer.os, "replace", real_replace)
    assert _tree_bytes(output) == before


def test_leftovers_of_a_killed_run_do_not_count_and_are_cleared(tmp_path):
    output = tmp_path / "set"
    (output / ".synthetic-partial-abc" / "train").mkdir(parents=True)
    write_synthetic_set(str(output), num_train=1, num_val=1, image_size=(64, 64))
    assert sorted(os.listdir(output)) == ["annotations", "train", "val"]
    with pytest.raises(OutputFolderError, match="is not empty"):
        write_synthetic_set(str(output), num_train=1, num_val=1, image_size=(64, 64))
