"""Where a checkpoint lives: ``detectron2://``, ``catalog://``, ``https://``, ``http://``, ``file://`` or a plain path.

Remote files are downloaded once into the cache directory (``$MASKRCNN_MULTI_CACHE`` or
``~/.cache/maskrcnn_multi``) under ``<host>/<path>``, by ``download.download`` (timeouts, a minimum
rate, retries, hash and completeness checks, never a partial file). The temporary files a killed
download left in a file's cache folder are removed whenever that file is asked for, cached or not.
"""
from __future__ import annotations

import logging
import os
import urllib.parse

from .atomic import remove_orphaned_temp_files
from .download import DOWNLOAD_TEMP_PREFIX, download
from .errors import CheckpointError, CheckpointNotFoundError


logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointError", "CheckpointNotFoundError", "cache_dir", "to_url", "is_remote", "cached_path_for_url",
    "cached_file_hint", "download", "get_local_path",
]

DETECTRON2_PREFIX = "detectron2://"
DETECTRON2_BASE_URL = "https://dl.fbaipublicfiles.com/detectron2/"
# detectron2's ModelCatalog: ``catalog://ImageNetPretrained/<name>`` names Detectron's Caffe2 ImageNet files
CATALOG_PREFIX = "catalog://ImageNetPretrained/"
DETECTRON_BASE_URL = "https://dl.fbaipublicfiles.com/detectron/"
C2_IMAGENET_MODELS = {
    "MSRA/R-50": "ImageNetPretrained/MSRA/R-50.pkl",
    "MSRA/R-101": "ImageNetPretrained/MSRA/R-101.pkl",
    "FAIR/R-50-GN": "ImageNetPretrained/47261647/R-50-GN.pkl",
    "FAIR/R-101-GN": "ImageNetPretrained/47592356/R-101-GN.pkl",
    "FAIR/X-101-32x8d": "ImageNetPretrained/20171220/X-101-32x8d.pkl",
    "FAIR/X-101-64x4d": "ImageNetPretrained/FBResNeXt/X-101-64x4d.pkl",
    "FAIR/X-152-32x8d-IN5k": "ImageNetPretrained/25093814/X-152-32x8d-IN5k.pkl",
}


def cache_dir() -> str:
    """``$MASKRCNN_MULTI_CACHE`` if set, else ``~/.cache/maskrcnn_multi``."""
    return os.environ.get("MASKRCNN_MULTI_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "maskrcnn_multi")


def to_url(path: str) -> str:
    """Expand ``detectron2://X`` and ``catalog://ImageNetPretrained/X`` to the URLs detectron2 gives
    them; other strings are returned unchanged."""
    if path.startswith(DETECTRON2_PREFIX):
        return DETECTRON2_BASE_URL + path[len(DETECTRON2_PREFIX) :]
    if path.startswith("catalog://"):
        name = path[len(CATALOG_PREFIX):] if path.startswith(CATALOG_PREFIX) else None
        if name not in C2_IMAGENET_MODELS:
            raise CheckpointNotFoundError(
                f"MODEL.WEIGHTS {path!r}: not in detectron2's catalog (known: "
                f"{', '.join(CATALOG_PREFIX + known for known in C2_IMAGENET_MODELS)})")
        return DETECTRON_BASE_URL + C2_IMAGENET_MODELS[name]
    return path


def is_remote(path: str) -> bool:
    return to_url(path).startswith(("https://", "http://"))


def cached_path_for_url(url: str, root: str | None = None) -> str:
    """The cache file a URL downloads to: ``<root>/<host>/<url path>``."""
    parsed = urllib.parse.urlparse(url)
    relative = parsed.path.lstrip("/")
    if not parsed.netloc or not relative or relative.endswith("/"):
        raise CheckpointError(f"checkpoint URL '{url}' does not name a file")
    parts = [part for part in relative.split("/") if part not in ("", ".", "..")]
    return os.path.join(root or cache_dir(), parsed.netloc, *parts)


def cached_file_hint(path: str, local_path: str) -> str:
    """What to tell a user whose ``local_path`` (given as ``path``) cannot be read: for a remote
    ``path``, that ``local_path`` is its cached download and deleting it downloads it afresh; else ''."""
    if not is_remote(path):
        return ""
    return f"; {local_path} is the cached download of {to_url(path)}: delete it to download it again"


def get_local_path(path: str) -> str:
    """A local file for ``path``: remote URLs are fetched into the cache unless already there.

    Raises ``CheckpointError`` (a ``RuntimeError``) naming the path when a local file is missing.
    """
    url = to_url(path)
    if url.startswith(("https://", "http://")):
        local = cached_path_for_url(url)
        if os.path.isfile(local):
            remove_orphaned_temp_files(os.path.dirname(local), DOWNLOAD_TEMP_PREFIX)
            logger.info("Using cached %s for %s", local, path)
            return local
        return download(url, local)
    if url.startswith("file://"):
        url = urllib.parse.unquote(urllib.parse.urlparse(url).path)
    local = os.path.expanduser(url)
    if not os.path.isfile(local):
        raise CheckpointNotFoundError(f"checkpoint file not found: {local}")
    return local
