"""The check a download passes before it is cached: a whole pickle, zip or legacy torch file passes;
the same file cut short anywhere, an empty file or an HTML page does not; what a whole file holds
(code included) is not this check's business, and nothing in the file is run."""
import io
import os

import numpy as np
import pytest
import torch

from maskrcnn_multi.checkpoint.completeness import IncompleteCheckpoint, check_complete
from pickles import CodeRunner, python2_pickle, python3_pickle


def _model_zoo_pickle():
    return python2_pickle({"model": {"conv1.weight": np.arange(4096, dtype=np.float32).reshape(16, 256)},
                           "__author__": "Detectron2 Model Zoo"})


def _torch_file(zipped):
    buffer = io.BytesIO()
    torch.save({"model": {"conv1.weight": torch.arange(4096.0)}}, buffer, _use_new_zipfile_serialization=zipped)
    return buffer.getvalue()


CONTAINERS = {
    "python2 pickle": _model_zoo_pickle,
    "python3 pickle": lambda: python3_pickle({"model": {"w": np.ones((64, 64), dtype=np.float16)}}),
    "zip torch file": lambda: _torch_file(True),
    "legacy torch file": lambda: _torch_file(False),
}


def _write(tmp_path, content):
    path = tmp_path / "download"
    path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize("kind", sorted(CONTAINERS))
def test_whole_file_passes_and_every_truncation_fails(tmp_path, kind):
    content = CONTAINERS[kind]()
    check_complete(_write(tmp_path, content))
    for length in (0, 1, 7, len(content) // 3, len(content) // 2, len(content) - 1):
        with pytest.raises(IncompleteCheckpoint):
            check_complete(_write(tmp_path, content[:length]))


def test_html_page_and_empty_file_are_named_for_what_they_are(tmp_path):
    with pytest.raises(IncompleteCheckpoint, match=r"^neither a pickle nor a zip archive: it starts with b'<!DOCTYPE"):
        check_complete(_write(tmp_path, b"<!DOCTYPE html><html><body>Please sign in</body></html>"))
    with pytest.raises(IncompleteCheckpoint, match=r"^an empty file$"):
        check_complete(_write(tmp_path, b""))


def test_zip_archive_that_is_not_a_torch_file_fails(tmp_path):
    import zipfile

    path = tmp_path / "download"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not weights")
    with pytest.raises(IncompleteCheckpoint, match=r"^a zip archive of 1 entries, none of them torch's data.pkl$"):
        check_complete(str(path))


def test_whole_pickle_holding_code_passes_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    content = python3_pickle({"model": CodeRunner(f"touch {marker}")})
    check_complete(_write(tmp_path, content))  # refusing it is safe_load's job, when it is read
    assert not os.path.exists(marker)
