"""Checkpoints: load detectron2 / Caffe2 / torchvision / our weights into a model; save and resume."""
from .checkpointer import LAST_CHECKPOINT_FILE, DetectionCheckpointer
from .formats import read_checkpoint
from .download import DownloadSettings
from .errors import CheckpointError, CheckpointNotFoundError, UnsafeCheckpointError
from .names import convert_basic_c2_names, convert_torchvision_resnet_names, match_by_suffix
from .paths import cache_dir, cached_path_for_url, get_local_path, to_url
from .safe_load import UNSAFE_LOAD_ENV

__all__ = [
    "DetectionCheckpointer",
    "LAST_CHECKPOINT_FILE",
    "read_checkpoint",
    "convert_basic_c2_names",
    "convert_torchvision_resnet_names",
    "match_by_suffix",
    "CheckpointError",
    "CheckpointNotFoundError",
    "UnsafeCheckpointError",
    "UNSAFE_LOAD_ENV",
    "DownloadSettings",
    "cache_dir",
    "cached_path_for_url",
    "get_local_path",
    "to_url",
]
