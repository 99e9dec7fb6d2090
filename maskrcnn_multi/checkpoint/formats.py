"""Reading checkpoint files of every supported origin into one form.

``read_checkpoint(path) -> dict`` with ``"model"`` (name -> Tensor, our names where the origin is known),
``"__author__"``, ``"matching_heuristics"`` (match names by suffix) and every other entry of the file
(``optimizer``, ``iteration`` ...). Origins:

- detectron2 model zoo ``.pkl``: ``{"model": {name: ndarray}, "__author__": ...}``, detectron2's names.
- Caffe2 / Detectron ``.pkl`` (``{"blobs": ...}`` or a flat dict): Caffe2 names, renamed here.
- torchvision ResNet ``.pth`` (``conv1.weight``, ``layer1.0...``): renamed here.
- detectron2 ``.pth`` and ours: ``{"model": state_dict, ...}`` (a bare state dict is accepted too).

Files are read by ``safe_load``: weights and arrays only; a file holding code is refused unless
``MASKRCNN_ALLOW_UNSAFE_LOAD=1``.
"""
from __future__ import annotations

import logging
from typing import Any, Dict

import numpy as np
import torch

from .errors import CheckpointError
from .names import convert_basic_c2_names, convert_torchvision_resnet_names, is_torchvision_resnet
from .safe_load import load_pickle, load_torch

logger = logging.getLogger(__name__)

_ZIP_MAGIC = b"PK\x03\x04"


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _to_tensors(state: Dict[str, Any], path: str) -> Dict[str, torch.Tensor]:
    """numpy arrays (any dtype, float16 included) -> tensors; non-array entries are dropped."""
    tensors = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            tensors[key] = torch.from_numpy(np.ascontiguousarray(value))
        elif isinstance(value, torch.Tensor):
            tensors[key] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            tensors[key] = torch.as_tensor(value)
        else:
            logger.debug("%s: skipping non-array entry '%s' of type %s", path, key, type(value).__name__)
    return tensors


def _strip_prefix(state: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix) :]: value for key, value in state.items()}
    return state


def _read_pickle_file(path: str) -> Dict[str, Any]:
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(data).__name__}, not a dict")
    if "model" in data and "__author__" in data:
        logger.info("Reading %s, a detectron2-format file from '%s'", path, data["__author__"])
        checkpoint = dict(data)
        checkpoint["model"] = _to_tensors(data["model"], path)
        checkpoint["matching_heuristics"] = bool(data.get("matching_heuristics", False))
        return checkpoint
    # Caffe2 / Detectron1: detection models have "blobs", ImageNet models are flat
    blobs = data["blobs"] if "blobs" in data else data
    blobs = {k: v for k, v in blobs.items() if not k.endswith("_momentum") and isinstance(v, np.ndarray)}
    if not blobs:
        raise CheckpointError(f"checkpoint {path} has no 'model' and no Caffe2 blobs")
    original_names = sorted(blobs)
    renamed = dict(zip(convert_basic_c2_names(original_names), original_names))
    if len(renamed) != len(original_names):
        raise CheckpointError(f"checkpoint {path}: Caffe2 names collide after renaming")
    logger.info("Reading %s as Caffe2 weights (%d blobs), renaming to detectron2 names", path, len(blobs))
    model = _to_tensors({new: blobs[old] for new, old in renamed.items()}, path)
    return {"model": model, "__author__": "Caffe2", "matching_heuristics": True}


def _read_torch_file(path: str) -> Dict[str, Any]:
    data = load_torch(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(data).__name__}, not a dict")
    checkpoint = dict(data) if "model" in data else {"model": data}
    state = checkpoint["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: 'model' is a {type(state).__name__}, not a state dict")
    state = _strip_prefix(_to_tensors(state, path), "module.")
    if is_torchvision_resnet(list(state)):
        logger.info("Reading %s as a torchvision ResNet, renaming to detectron2 names", path)
        state = convert_torchvision_resnet_names(state)
        checkpoint["__author__"] = "torchvision"
    checkpoint["model"] = state
    # detectron2 matches every .pth by suffix; for exact names that is the identity
    checkpoint["matching_heuristics"] = True
    return checkpoint


def _is_zip_file(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == _ZIP_MAGIC


def read_checkpoint(path: str) -> Dict[str, Any]:
    """Read the local file ``path`` (see the module doc) without running code from it (see
    ``safe_load``); any failure is a one-line ``CheckpointError``."""
    try:
        if path.endswith(".pkl") and not _is_zip_file(path):  # a torch.save file named .pkl is read as one
            return _read_pickle_file(path)
        return _read_torch_file(path)
    except CheckpointError:
        raise
    except Exception as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {_one_line(error)}") from error
