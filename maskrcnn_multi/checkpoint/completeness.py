"""Whether a file is a whole checkpoint container, checked without running anything from it.

A download is moved into the cache only when this check passes, so a transfer cut short without a
``Content-Length`` (or under a wrong one), or a page of text served in place of the file, is never
cached as if complete. The container is told by its first bytes, not by its name:

- a zip archive (``torch.save`` since torch 1.6, e.g. torchvision's ``.pth``): its central directory,
  which ``torch.save`` writes last, must be present and list a ``data.pkl`` record;
- torch's legacy format (a pickled magic number first): ``torch.load(weights_only=True)`` must read it;
  a file it refuses for holding code is whole as far as can be told without running it;
- anything else must be a pickle (detectron2's model zoo, Caffe2): its opcodes are walked, without
  building any object, up to the ``STOP`` that ends it.

This says nothing about what the file holds (``safe_load`` decides that when the file is read).
"""
from __future__ import annotations

import pickle
import pickletools
import zipfile

__all__ = ["IncompleteCheckpoint", "check_complete"]

_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_TORCH_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)  # torch.serialization.MAGIC_NUMBER


class IncompleteCheckpoint(ValueError):
    """The file is not a whole checkpoint container; the message says what is wrong with it."""


def _check_zip(path: str) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise IncompleteCheckpoint(f"a zip archive without its end ({error})") from error
    if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        raise IncompleteCheckpoint(f"a zip archive of {len(names)} entries, none of them torch's data.pkl")


def _check_legacy_torch(path: str) -> None:
    import torch

    try:
        torch.load(path, map_location=lambda storage, location: storage, weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" in str(error):
            return  # refused for what it holds, which is read (and refused) later
        raise IncompleteCheckpoint(f"a torch legacy file that cannot be read ({error})") from error
    except Exception as error:
        raise IncompleteCheckpoint(f"a torch legacy file that cannot be read ({type(error).__name__}: "
                                   f"{' '.join(str(error).split())})") from error


def _check_pickle(path: str, head: bytes, size: int) -> None:
    if head[:1].decode("latin-1") not in pickletools.code2op:
        raise IncompleteCheckpoint(f"neither a pickle nor a zip archive: it starts with {head!r}")
    with open(path, "rb") as file:
        try:
            for opcode, _, _ in pickletools.genops(file):
                if opcode.name == "STOP":
                    return
        except ValueError as error:
            raise IncompleteCheckpoint(f"not a whole pickle: {' '.join(str(error).split())}") from error
    raise IncompleteCheckpoint(f"a pickle that ends after {size} bytes before its STOP opcode")


def check_complete(path: str) -> None:
    """Raise ``IncompleteCheckpoint`` unless ``path`` is a whole checkpoint container (module doc).

    ``OSError`` from reading ``path`` propagates unchanged."""
    with open(path, "rb") as file:
        head = file.read(len(_LEGACY_TORCH_MAGIC))
        file.seek(0, 2)
        size = file.tell()
    if size == 0:
        raise IncompleteCheckpoint("an empty file")
    if head.startswith(_ZIP_MAGIC):
        _check_zip(path)
    elif head == _LEGACY_TORCH_MAGIC:
        _check_legacy_torch(path)
    else:
        _check_pickle(path, head, size)
