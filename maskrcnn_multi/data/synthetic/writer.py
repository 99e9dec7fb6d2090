"""Writing a synthetic set into a folder a user names (the CLI's ``--output``) without losing anything.

- A folder that holds anything is refused (``OutputFolderError``, as is a file) unless ``overwrite``.
- With ``overwrite`` the folder must hold a synthetic set and nothing else: the entries this package
  writes, in either layout (``annotations/instances_{train,val}[2017].json``, ``{train,val}[2017]/``
  holding ``<split>_<n>.jpg``). Anything else is refused by name, so ``--overwrite`` can never delete
  a user's own files; the set there is replaced as a whole (no stale images of a larger earlier set).
- The new set is generated in a hidden staging folder inside the destination and moved into place at
  the end, so a failed or interrupted generation leaves the earlier content as it was; the replaced
  entries are moved to a hidden folder first and deleted only once the new set is in place. Hidden
  folders left by a killed run are this package's own and are removed by the next run.
"""
import logging
import os
import re
import shutil
import tempfile
from typing import List, Sequence

from ...config.errors import UserError
from .coco2017 import coco2017_names
from .shapes import SPLITS, check_generation_arguments, generate_shapes_dataset

__all__ = ["LAYOUTS", "OutputFolderError", "write_synthetic_set"]

LAYOUTS = ("shapes", "coco2017")
logger = logging.getLogger(__name__)

_STAGING_PREFIX = ".synthetic-partial-"
_REPLACED_PREFIX = ".synthetic-replaced-"
_ANNOTATION_FILES = {f"instances_{split}{suffix}.json" for split in SPLITS for suffix in ("", "2017")}
_SPLIT_FOLDERS = {f"{split}{suffix}": split for split in SPLITS for suffix in ("", "2017")}


class OutputFolderError(UserError, FileExistsError):
    """The destination is a file, or holds something this write would lose; the message names it."""


def _is_leftover(name: str) -> bool:
    return name.startswith(_STAGING_PREFIX) or name.startswith(_REPLACED_PREFIX)


def _list_entries(root: str) -> List[str]:
    """Names in ``root`` ([] when it does not exist); OutputFolderError when it is not a folder."""
    if not os.path.lexists(root):
        return []
    if not os.path.isdir(root):
        raise OutputFolderError(f"output {root} exists and is not a folder")
    return sorted(os.listdir(root))


def _is_set_file(folder: str, name: str) -> bool:
    """Whether ``folder/name`` is a name this package writes: an annotation file, or a split's image."""
    if folder == "annotations":
        return name in _ANNOTATION_FILES
    return re.fullmatch(rf"{_SPLIT_FOLDERS[folder]}_\d+\.jpg", name) is not None


def _foreign_entries(root: str, names: Sequence[str]) -> List[str]:
    """Paths (relative to ``root``) that are not part of a synthetic set written by this package."""
    foreign = []
    for name in names:
        path = os.path.join(root, name)
        is_folder = os.path.isdir(path) and not os.path.islink(path)
        if _is_leftover(name) and is_folder:
            continue
        if not is_folder or (name != "annotations" and name not in _SPLIT_FOLDERS):
            foreign.append(name)
            continue
        for child in sorted(os.listdir(path)):
            child_path = os.path.join(path, child)
            if not _is_set_file(name, child) or os.path.islink(child_path) or not os.path.isfile(child_path):
                foreign.append(os.path.join(name, child))
    return foreign


def _check_destination(root: str, names: Sequence[str], overwrite: bool) -> None:
    visible = [name for name in names if not _is_leftover(name)]
    if visible and not overwrite:
        shown = ", ".join(visible[:4]) + (", ..." if len(visible) > 4 else "")
        raise OutputFolderError(f"output folder {root} is not empty (it holds {shown}); choose an empty "
                                "folder, or pass --overwrite to replace the synthetic set in it")
    foreign = _foreign_entries(root, names) if overwrite else []
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise OutputFolderError(f"output folder {root} holds {os.path.join(root, foreign[0])}{more}, which is "
                                "not part of a synthetic set; --overwrite only replaces a folder that holds "
                                "nothing but a synthetic set")


def _layout_names(layout: str) -> List[tuple]:
    """(path in the generated shapes layout, path in ``layout``) of every entry of a set."""
    if layout == "coco2017":
        return coco2017_names()
    return [(name, name) for name, _ in coco2017_names()]


def write_synthetic_set(root: str, layout: str = "shapes", overwrite: bool = False, num_train: int = 400,
                        num_val: int = 40, seed: int = 0, image_size: Sequence[int] = (256, 320),
                        max_shapes: int = 4) -> str:
    """Generate the shapes set into the folder ``root`` in ``layout`` ("shapes" or "coco2017"); returns
    ``root`` (absolute).

    Raises (before writing anything) ValueError for bad generation arguments or layout, OutputFolderError
    when ``root`` is a file, holds anything and ``overwrite`` is False, or holds anything but a synthetic
    set; OSError from the file system (then the earlier content is left as it was).
    """
    check_generation_arguments(num_train, num_val, seed, image_size, max_shapes)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (choose from: {', '.join(LAYOUTS)})")
    root = os.path.abspath(root)
    names = _list_entries(root)
    _check_destination(root, names, overwrite)
    os.makedirs(root, exist_ok=True)
    for name in names:
        if _is_leftover(name):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    staging = tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=root)
    replaced = None
    try:
        generate_shapes_dataset(staging, num_train=num_train, num_val=num_val, seed=seed,
                                image_size=tuple(image_size), max_shapes=max_shapes)
        old = [name for name in names if not _is_leftover(name)]
        if old:
            replaced = tempfile.mkdtemp(prefix=_REPLACED_PREFIX, dir=root)
            for name in old:
                os.replace(os.path.join(root, name), os.path.join(replaced, name))
        _move_into_place(staging, root, layout, replaced, old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)
    logger.info("Wrote the synthetic set (%d train / %d val images, %s layout) to %s%s", num_train, num_val,
                layout, root, " (replacing the set there)" if replaced is not None else "")
    return root


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def _move_into_place(staging: str, root: str, layout: str, replaced, old: Sequence[str]) -> None:
    """Move the generated entries from ``staging`` into ``root``; on failure put the entries moved
    aside into ``replaced`` back where they were."""
    placed = []
    try:
        os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
        placed.append("annotations")
        for generated, final in _layout_names(layout):
            os.replace(os.path.join(staging, generated), os.path.join(root, final))
            placed.append(final)
    except BaseException:
        for final in reversed(placed):
            _remove(os.path.join(root, final))
        for name in old if replaced is not None else ():
            os.replace(os.path.join(replaced, name), os.path.join(root, name))
        raise
