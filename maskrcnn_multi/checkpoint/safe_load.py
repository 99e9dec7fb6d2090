"""Reading checkpoint files without running code from them, and the explicit opt-in that does.

- ``.pkl``: ``unpickler.safe_pickle_load``, which admits numpy arrays of plain dtypes, builtin
  containers and ``OrderedDict`` (what detectron2's model zoo and Caffe2 write).
- ``.pth``, ``.pt`` and other torch files: ``torch.load(weights_only=True)``, which admits tensors,
  builtin containers and torch's own types, plus numpy arrays rebuilt as for ``.pkl``.

A file holding anything else (a class, a function: unpickling it could run code) is refused with
``UnsafeCheckpointError``, one line naming the file and the global it held. Setting the environment
variable ``MASKRCNN_ALLOW_UNSAFE_LOAD=1`` loads such a file with the full unpickler after a warning:
only for files whose source you trust.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
from typing import Any, List, Mapping

import torch

from .errors import CheckpointError, UnsafeCheckpointError
from .unpickler import TORCH_NUMPY_GLOBALS, RefusedContent, resolve_placeholders, safe_pickle_load

logger = logging.getLogger(__name__)

UNSAFE_LOAD_ENV = "MASKRCNN_ALLOW_UNSAFE_LOAD"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
_NAMES_SHOWN = 3


def keep_on_host(storage, location):
    """``map_location`` that keeps every storage where deserialization put it (host memory)."""
    return storage


def unsafe_load_allowed(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``MASKRCNN_ALLOW_UNSAFE_LOAD`` opts in to the full unpickler (1/true/yes/on)."""
    value = environ.get(UNSAFE_LOAD_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise CheckpointError(
        f"environment variable {UNSAFE_LOAD_ENV}={environ[UNSAFE_LOAD_ENV]!r} is not 1 or 0 "
        f"(1 loads checkpoints that hold code, 0 or unset refuses them)"
    )


def _refuse_unless_allowed(path: str, what: str) -> None:
    """Raise ``UnsafeCheckpointError`` for ``path``, or warn and return when the opt-in is set."""
    if not unsafe_load_allowed():
        raise UnsafeCheckpointError(
            f"checkpoint {path} holds {what}, not just weights: refusing to unpickle it, as that could run "
            f"code from the file; if you trust its source, set {UNSAFE_LOAD_ENV}=1 to load it anyway"
        )
    logger.warning(
        "%s=1: loading %s with the full unpickler although it holds %s; this runs any code the file carries",
        UNSAFE_LOAD_ENV, path, what,
    )


def load_pickle(path: str) -> Any:
    """The object pickled in ``path`` (a ``.pkl``), through the restricted unpickler."""
    with open(path, "rb") as f:
        try:
            return safe_pickle_load(f)
        except RefusedContent as refused:
            _refuse_unless_allowed(path, refused.what)
        f.seek(0)
        return pickle.load(f, encoding="latin1")


def _describe_names(names: List[str]) -> str:
    names = sorted(names)
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown if len(names) <= _NAMES_SHOWN else f"{shown} and {len(names) - _NAMES_SHOWN} more"


def _weights_only_detail(text: str) -> str:
    """The reason in torch's multi-line weights-only message, on one line."""
    match = re.search(r"WeightsUnpickler error:(.*?)(?:Check the documentation|$)", text, re.DOTALL)
    detail = " ".join((match.group(1) if match else text).split())
    return detail.rstrip(".") or "the weights-only unpickler stopped"


def _weights_only_refusal(path: str, error: pickle.UnpicklingError) -> str | None:
    """The globals the weights-only unpickler refused in ``path``, by name; None when ``error`` is
    not a refused global (a corrupt or foreign file)."""
    cause: BaseException | None = error
    while cause is not None:  # torch re-raises our refusal as its own UnpicklingError
        if isinstance(cause, RefusedContent):
            return cause.what
        cause = cause.__cause__ or cause.__context__
    text = str(error)
    if "Weights only load failed" not in text:
        return None
    try:  # lists every unsafe global without executing anything; zip files only
        with torch.serialization.safe_globals(TORCH_NUMPY_GLOBALS):
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # the legacy format: take the name from the message
        names = []
    if names:
        return _describe_names(names)
    match = re.search(r"GLOBAL ([\w.]+)", text)
    return match.group(1) if match else None


def load_torch(path: str) -> Any:
    """The object ``torch.save`` wrote to ``path``, through ``torch.load(weights_only=True)``."""
    try:
        with torch.serialization.safe_globals(TORCH_NUMPY_GLOBALS):
            data = torch.load(path, map_location=keep_on_host, weights_only=True)
        return resolve_placeholders(data)
    except pickle.UnpicklingError as error:
        what = _weights_only_refusal(path, error)
        if what is None:
            raise CheckpointError(f"cannot read checkpoint {path}: {_weights_only_detail(str(error))}") from error
    _refuse_unless_allowed(path, what)
    return torch.load(path, map_location=keep_on_host, weights_only=False)
