"""Where a checkpoint lives: ``detectron2://``, ``https://``, ``http://``, ``file://`` or a plain path.

Remote files are downloaded once into the cache directory (``$MASKRCNN_MULTI_CACHE`` or
``~/.cache/maskrcnn_multi``) under ``<host>/<path>``, atomically (temp file + ``os.replace``).
"""
from __future__ import annotations

import logging
import os
import tempfile
import urllib.parse
import urllib.request

from ..config.errors import UserError

logger = logging.getLogger(__name__)

DETECTRON2_PREFIX = "detectron2://"
DETECTRON2_BASE_URL = "https://dl.fbaipublicfiles.com/detectron2/"
_CHUNK_BYTES = 1 << 20


class CheckpointError(UserError, RuntimeError):
    """A checkpoint could not be found, read or matched to the model (one-line message naming it)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


def cache_dir() -> str:
    """``$MASKRCNN_MULTI_CACHE`` if set, else ``~/.cache/maskrcnn_multi``."""
    return os.environ.get("MASKRCNN_MULTI_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "maskrcnn_multi")


def to_url(path: str) -> str:
    """Expand ``detectron2://X`` to detectron2's model-zoo URL; other strings are returned unchanged."""
    if path.startswith(DETECTRON2_PREFIX):
        return DETECTRON2_BASE_URL + path[len(DETECTRON2_PREFIX) :]
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


def download(url: str, destination: str) -> str:
    """Download ``url`` to ``destination`` with a progress bar; the file appears only when complete."""
    from tqdm import tqdm

    os.makedirs(os.path.dirname(destination), exist_ok=True)
    logger.info("Downloading %s to %s", url, destination)
    handle, temp_path = tempfile.mkstemp(dir=os.path.dirname(destination), prefix=".download-")
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(destination)) as bar:
                while True:
                    chunk = response.read(_CHUNK_BYTES)
                    if not chunk:
                        break
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(temp_path, destination)
    except Exception as error:
        if os.path.exists(temp_path):
            os.remove(temp_path)
        raise CheckpointError(f"cannot download checkpoint {url}: {type(error).__name__}: {error}") from error
    return destination


def get_local_path(path: str) -> str:
    """A local file for ``path``: remote URLs are fetched into the cache unless already there.

    Raises ``CheckpointError`` (a ``RuntimeError``) naming the path when a local file is missing.
    """
    url = to_url(path)
    if url.startswith(("https://", "http://")):
        local = cached_path_for_url(url)
        if os.path.isfile(local):
            logger.info("Using cached %s for %s", local, path)
            return local
        return download(url, local)
    if url.startswith("file://"):
        url = urllib.parse.unquote(urllib.parse.urlparse(url).path)
    local = os.path.expanduser(url)
    if not os.path.isfile(local):
        raise CheckpointNotFoundError(f"checkpoint file not found: {local}")
    return local
