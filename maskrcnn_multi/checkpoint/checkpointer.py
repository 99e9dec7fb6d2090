"""``DetectionCheckpointer``: load weights of any supported origin into a model; save and resume."""
from __future__ import annotations

import errno
import logging
import os
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from .atomic import remove_orphaned_temp_files, write_atomically
from .errors import CheckpointError, UnsafeCheckpointError
from .formats import read_checkpoint
from .names import incompatible_keys_table, match_by_suffix
from .paths import cached_file_hint, get_local_path

logger = logging.getLogger(__name__)

LAST_CHECKPOINT_FILE = "last_checkpoint"
# keys a model may lack in old checkpoints without harm (set from the config / recomputed)
_IGNORED_MISSING = ("pixel_mean", "pixel_std")
_IGNORED_UNEXPECTED = ("anchor_generator.cell_anchors",)


def _unwrap(model: nn.Module) -> nn.Module:
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


def _check_loads_weights_only(path: str) -> None:
    """Raise ``TypeError`` when the checkpoint just written to ``path`` would need the full unpickler:
    everything we save must load with ``torch.load(weights_only=True)``."""
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    if unsafe:
        raise TypeError(
            f"the checkpoint holds {', '.join(sorted(unsafe))}, which torch.load(weights_only=True) refuses: "
            f"a state_dict() must hold only tensors, numbers, strings and containers of them"
        )


def _os_reason(error: OSError) -> str:
    name = errno.errorcode.get(error.errno or 0)
    text = error.strerror or str(error)
    return f"{text} ({name})" if name else text


class DetectionCheckpointer:
    """Saves and loads ``model`` plus named ``checkpointables`` (optimizer, scheduler ...).

    ``load`` reads detectron2 model-zoo ``.pkl``/``.pth``, Caffe2 ImageNet ``.pkl``, torchvision ResNet
    ``.pth`` and our own files, from a path, ``file://``, ``http(s)://`` or ``detectron2://`` URL.

    ``model_state`` (default ``model.state_dict``) gives what ``save`` writes as "model": O2 training
    passes its optimizer's fp32 master weights there.

    Saving is atomic (temporary file, fsync, ``os.replace``): a kill or a full disk leaves the previous
    checkpoint and ``last_checkpoint`` as they were; ``resume_or_load`` removes the temporary files a
    killed run left. Loading never runs code from the file (see ``safe_load``).
    """

    def __init__(self, model: nn.Module, save_dir: str = "", save_to_disk: bool = True, *,
                 model_state: Optional[Callable[[], Dict[str, torch.Tensor]]] = None, **checkpointables: Any):
        self.model = _unwrap(model)
        self.save_dir = save_dir
        self.save_to_disk = save_to_disk
        self.model_state = model_state if model_state is not None else self.model.state_dict
        self.checkpointables = dict(checkpointables)

    # ------------------------------------------------------------------ saving / resuming
    def save(self, name: str, **extra: Any) -> Optional[str]:
        """Write ``<save_dir>/<name>.pth`` with ``model``, each checkpointable's state and ``extra``
        (e.g. ``iteration``), atomically, and record it in ``last_checkpoint``. Returns the path."""
        if not self.save_dir or not self.save_to_disk:
            return None
        data: Dict[str, Any] = {"model": self.model_state()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(extra)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        logger.info("Saving checkpoint to %s", save_file)
        try:
            os.makedirs(self.save_dir, exist_ok=True)
            write_atomically(save_file, lambda f: torch.save(data, f), verify=_check_loads_weights_only)
        except OSError as error:
            raise CheckpointError(
                f"cannot save checkpoint {save_file}: {_os_reason(error)}; {self._unchanged_note()}"
            ) from error
        self.tag_last_checkpoint(basename)
        return save_file

    def tag_last_checkpoint(self, basename: str) -> None:
        """Make ``last_checkpoint`` name ``basename`` (atomically: the old record or the new one)."""
        record = os.path.join(self.save_dir, LAST_CHECKPOINT_FILE)
        try:
            write_atomically(record, lambda f: f.write(basename.encode("utf-8")))
        except OSError as error:
            raise CheckpointError(
                f"cannot write {record} (to name {basename}): {_os_reason(error)}; {self._unchanged_note()}"
            ) from error

    def _unchanged_note(self) -> str:
        previous = self.get_checkpoint_file()
        if previous:
            return f"{LAST_CHECKPOINT_FILE} still names {os.path.basename(previous)}, which is unchanged"
        return "no earlier checkpoint was touched"

    def has_checkpoint(self) -> bool:
        """Whether ``save_dir`` holds a ``last_checkpoint`` record."""
        return bool(self.save_dir) and os.path.isfile(os.path.join(self.save_dir, LAST_CHECKPOINT_FILE))

    def get_checkpoint_file(self) -> str:
        """The file ``last_checkpoint`` points to, or "" when there is none."""
        record = os.path.join(self.save_dir, LAST_CHECKPOINT_FILE)
        try:
            with open(record, encoding="utf-8") as f:
                last_saved = f.read().strip()
        except OSError:
            return ""
        except UnicodeDecodeError:
            raise CheckpointError(f"{record} is not a checkpoint name (it is not text): delete it, or write the "
                                  "name of the checkpoint to resume from into it") from None
        if not last_saved or os.sep in last_saved or "\0" in last_saved:
            raise CheckpointError(f"{record} names {last_saved!r}, not a checkpoint file in {self.save_dir}")
        return os.path.join(self.save_dir, last_saved)

    def get_all_checkpoint_files(self) -> List[str]:
        if not os.path.isdir(self.save_dir):
            return []
        names = sorted(os.listdir(self.save_dir))
        return [os.path.join(self.save_dir, n) for n in names if n.endswith(".pth") and not n.startswith(".")]

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """With ``resume`` and a ``last_checkpoint`` in ``save_dir``: load it with every checkpointable
        (continue training). Otherwise load only the model weights from ``path``.

        Either way, a run starts here: the temporary files a killed save left in ``save_dir`` are
        removed first (files another live process is writing are left alone)."""
        if self.save_dir:
            remove_orphaned_temp_files(self.save_dir)
        if resume and self.has_checkpoint():
            return self.load(self.get_checkpoint_file())
        return self.load(path, checkpointables=[])

    def keep_previous_run(self) -> Optional[str]:
        """Move the checkpoints, ``last_checkpoint`` and ``config.yaml`` of an earlier run in ``save_dir``
        into ``save_dir/previous_run_<YYYYmmdd-HHMMSS>/`` (a fresh run would overwrite them); returns that
        folder, or None when there was no checkpoint to keep. (log.txt and metrics.json are appended to.)"""
        if not self.save_dir or not os.path.isdir(self.save_dir):
            return None
        names = [name for name in sorted(os.listdir(self.save_dir))
                 if name == LAST_CHECKPOINT_FILE or (name.endswith(".pth") and not name.startswith("."))]
        if not names:
            return None
        if os.path.isfile(os.path.join(self.save_dir, "config.yaml")):
            names.append("config.yaml")
        folder = os.path.join(self.save_dir, "previous_run_" + time.strftime("%Y%m%d-%H%M%S"))
        suffix = 1
        while os.path.exists(folder):
            folder = f"{folder.rsplit('.', 1)[0]}.{suffix}"
            suffix += 1
        os.makedirs(folder)
        for name in names:
            os.replace(os.path.join(self.save_dir, name), os.path.join(folder, name))
        logger.warning("%s held another run's checkpoints and a new run starts there (no --resume): they are "
                       "kept in %s", self.save_dir, folder)
        return folder

    # ------------------------------------------------------------------ loading
    def load(self, path: str, checkpointables: Optional[Iterable[str]] = None) -> Dict[str, Any]:
        """Load ``path`` into the model and the named ``checkpointables`` (default: all that the file
        holds). Returns the file's other entries (``iteration`` ...). An empty ``path`` loads nothing."""
        if not path:
            logger.info("No checkpoint given: the model keeps its initialization")
            return {}
        local_path = get_local_path(path)
        logger.info("Loading checkpoint from %s", path)
        try:
            checkpoint = read_checkpoint(local_path)
        except UnsafeCheckpointError:
            raise  # deleting the file would not help: it says how to opt in
        except CheckpointError as error:
            hint = cached_file_hint(path, local_path)
            if not hint:
                raise
            raise CheckpointError(f"{error}{hint}") from error
        self._load_model(checkpoint, source=path)
        names = self.checkpointables.keys() if checkpointables is None else checkpointables
        for key in names:
            if key in checkpoint:
                logger.info("Loading %s from %s", key, path)
                try:
                    self.checkpointables[key].load_state_dict(checkpoint.pop(key))
                except (KeyError, ValueError, TypeError, RuntimeError) as error:
                    raise CheckpointError(
                        f"{path}: its {key} state does not fit this run's {key} ({type(error).__name__}: "
                        f"{str(error).splitlines()[0] if str(error) else 'no detail'}); was it written with another "
                        "SOLVER.OPTIMIZER, LR schedule or AMP / OPT_LEVEL? Resume with the settings it was trained with, "
                        "or start a new run from its weights (MODEL.WEIGHTS, without --resume)"
                    ) from error
        for key in ("model", "matching_heuristics"):
            checkpoint.pop(key, None)
        return checkpoint

    def _load_model(self, checkpoint: Dict[str, Any], source: str) -> None:
        model_state = self.model.state_dict()
        ckpt_state: Dict[str, torch.Tensor] = checkpoint["model"]
        if checkpoint.get("__author__") == "torchvision":
            self._warn_if_stride_in_1x1()
        if checkpoint.get("matching_heuristics", False):
            try:
                pairs = match_by_suffix(list(model_state), list(ckpt_state))
            except ValueError as error:
                raise CheckpointError(f"cannot load {source}: {error}") from error
        else:
            pairs = {key: key for key in ckpt_state if key in model_state}

        to_load, mismatched = {}, []
        for model_key, ckpt_key in pairs.items():
            value, target = ckpt_state[ckpt_key], model_state[model_key]
            if tuple(value.shape) != tuple(target.shape):
                mismatched.append((model_key, tuple(value.shape), tuple(target.shape)))
                continue
            # keep the model's dtype: float16 zoo files load into fp32 parameters
            to_load[model_key] = value.to(target.dtype) if value.is_floating_point() else value

        self._check_same_architecture(source, ckpt_state, to_load, mismatched)
        incompatible = self.model.load_state_dict(to_load, strict=False)
        mismatched_keys = {key for key, _, _ in mismatched}
        missing = [
            k for k in incompatible.missing_keys if k not in mismatched_keys and k.rsplit(".", 1)[-1] not in _IGNORED_MISSING
        ]
        matched_ckpt_keys = set(pairs.values())
        unexpected = [
            k for k in ckpt_state if k not in matched_ckpt_keys and not any(p in k for p in _IGNORED_UNEXPECTED)
        ]
        table = incompatible_keys_table(source, missing, unexpected, mismatched)
        if table:
            logger.warning(table)

    def _check_same_architecture(
        self,
        source: str,
        ckpt_state: Dict[str, torch.Tensor],
        loaded: Dict[str, torch.Tensor],
        mismatched: List[Tuple[str, tuple, tuple]],
    ) -> None:
        """Raise when the file is clearly for another network: nothing loads, or most of the conv /
        linear weights that match by name have other shapes (a few, e.g. a new class count, are skipped)."""
        if not ckpt_state:
            raise CheckpointError(f"checkpoint {source} holds no weights")
        if not loaded:
            raise CheckpointError(
                f"checkpoint {source} matches none of the model's {len(self.model.state_dict())} keys "
                f"({len(ckpt_state)} keys, {len(mismatched)} with other shapes): is it for another architecture?"
            )
        # judge by conv / linear weights: 1-D norm vectors often agree in shape across architectures
        loaded_weights = [key for key, value in loaded.items() if value.dim() > 1]
        mismatched_weights = [entry for entry in mismatched if len(entry[2]) > 1]
        if not loaded_weights and not mismatched_weights:
            loaded_weights, mismatched_weights = list(loaded), mismatched
        if len(mismatched_weights) > len(loaded_weights):
            first_key, ckpt_shape, model_shape = mismatched_weights[0]
            raise CheckpointError(
                f"checkpoint {source} is for another architecture: {len(mismatched_weights)} of "
                f"{len(mismatched_weights) + len(loaded_weights)} weight tensors matching by name differ in shape "
                f"(e.g. {first_key}: checkpoint {ckpt_shape} vs model {model_shape})"
            )

    def _warn_if_stride_in_1x1(self) -> None:
        # torchvision's bottlenecks stride in the 3x3 conv; a model striding in the 1x1 loads the
        # weights fine but computes different features
        for name, module in self.model.named_modules():
            conv1, conv3 = getattr(module, "conv1", None), getattr(module, "conv3", None)
            if conv3 is not None and isinstance(conv1, nn.Conv2d) and conv1.stride != (1, 1):
                logger.warning(
                    "torchvision ResNet weights stride in the 3x3 conv but %s.conv1 has stride %s: "
                    "set MODEL.RESNETS.STRIDE_IN_1X1 False (and RGB input with torchvision's PIXEL_MEAN/STD)",
                    name,
                    conv1.stride,
                )
                return
