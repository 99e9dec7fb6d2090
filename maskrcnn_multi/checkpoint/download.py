"""Downloading a checkpoint into the cache: bounded waits, a few retries, never a partial file.

Environment variables (read at each download):

- ``MASKRCNN_DOWNLOAD_CONNECT_TIMEOUT`` (seconds, default 15): to connect (TLS handshake included).
- ``MASKRCNN_DOWNLOAD_READ_TIMEOUT`` (seconds, default 60): the longest wait for the response or
  for its next bytes; a server that accepts and never answers fails after this.
- ``MASKRCNN_DOWNLOAD_MIN_RATE`` (bytes per second, default 1024; 0 turns it off): the slowest
  average rate accepted over each successive READ_TIMEOUT seconds of the transfer, so a server that
  drips a byte at a time (each wait short of READ_TIMEOUT) fails instead of never ending, while a
  slow but working link (a 170 MB ``R-101.pkl`` at 100 kB/s: half an hour) still gets there.
- ``MASKRCNN_DOWNLOAD_TIMEOUT`` (seconds, default unset: no limit): the longest one attempt may take,
  for those who want a hard bound whatever the rate.
- ``MASKRCNN_DOWNLOAD_RETRIES`` (default 3): further attempts after a network error, a timeout, a
  transfer too slow, a connection dropped mid-file, a file that is not a whole checkpoint or an HTTP
  408/429/5xx answer. Other HTTP errors and an HTML page (a login or error page answered with 200)
  fail at once.
- ``MASKRCNN_DOWNLOAD_BACKOFF`` (seconds, default 1): the wait before the first retry; it doubles
  after each.

Each attempt writes a locked temporary file beside the destination and moves it there only when it
is complete: as long as its ``Content-Length`` says, a whole checkpoint container (``completeness``:
a pickle read to its end, a zip archive with its central directory, which catches a transfer cut
short without a ``Content-Length``) and, where the name carries one, of the hash it names; otherwise
it is removed. Temporary files that a killed download left (their lock died with it) are removed
at the next download into the same folder. The proxy variables (``https_proxy`` ...) apply as for
urllib.

Hash rule: torch hub's, ``<name>-<hex digits>.<ext>`` where the digits start the file's SHA-256,
checked for files from ``download.pytorch.org`` (torchvision's weights, e.g. ``resnet50-0676ba61.pth``).
detectron2's model-zoo names carry no file hash: ``model_final_f10217.pkl``'s suffix names the
code's commit (detectron2's ``model_zoo.py``: "model_final_{commit}.pkl"), and the "-50" in
``R-50.pkl`` is the depth, so they are not checked.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import logging
import math
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional

from .atomic import locked_temp_file, remove_orphaned_temp_files
from .completeness import IncompleteCheckpoint, check_complete
from .errors import CheckpointError

logger = logging.getLogger(__name__)

DOWNLOAD_TEMP_PREFIX = ".download-"
HASH_CHECKED_HOSTS = ("download.pytorch.org",)
_HUB_HASH = re.compile(r"-([a-f0-9]*)\.")  # torch.hub's HASH_REGEX
_CHUNK_BYTES = 1 << 20
_RETRIED_HTTP_CODES = (408, 429)
_HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass(frozen=True)
class DownloadSettings:
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    retries: int = 3
    backoff: float = 1.0
    min_rate: float = 1024.0
    timeout: Optional[float] = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "DownloadSettings":
        """The settings the ``MASKRCNN_DOWNLOAD_*`` variables give (see the module doc)."""
        default = cls()
        prefix = "MASKRCNN_DOWNLOAD_"
        return cls(
            connect_timeout=_env_number(environ, prefix + "CONNECT_TIMEOUT", default.connect_timeout, float, True),
            read_timeout=_env_number(environ, prefix + "READ_TIMEOUT", default.read_timeout, float, True),
            retries=_env_number(environ, prefix + "RETRIES", default.retries, int, False),
            backoff=_env_number(environ, prefix + "BACKOFF", default.backoff, float, False),
            min_rate=_env_number(environ, prefix + "MIN_RATE", default.min_rate, float, False),
            timeout=_env_number(environ, prefix + "TIMEOUT", default.timeout, float, True),
        )


def _env_number(environ: Mapping[str, str], name: str, default, kind, positive: bool):
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not (value > 0 if positive else value >= 0):
        wanted = ("a number" if kind is float else "a whole number") + (" > 0" if positive else " >= 0")
        raise CheckpointError(f"environment variable {name}={environ[name]!r} is not {wanted}")
    return value


def expected_sha256_prefix(url: str) -> Optional[str]:
    """The SHA-256 prefix ``url``'s file name carries under torch hub's rule, for the hosts whose
    names follow it (see the module doc); None where nothing can be checked."""
    parsed = urllib.parse.urlparse(url)
    if parsed.hostname not in HASH_CHECKED_HOSTS:
        return None
    match = _HUB_HASH.search(os.path.basename(parsed.path))
    return match.group(1) if match and match.group(1) else None


class _ConnectTimeout(TimeoutError):
    pass


class _TooSlow(TimeoutError):
    """The transfer broke ``MASKRCNN_DOWNLOAD_MIN_RATE`` or ``MASKRCNN_DOWNLOAD_TIMEOUT``; the message says which."""


class _HtmlAnswer(http.client.HTTPException):
    """The server answered with an HTML page, not a file (not retried: it would answer the same)."""


class _NotACheckpoint(Exception):
    """The bytes received are not a whole checkpoint container (retried: a transfer may have been cut)."""


class _TransferGuard:
    """Bounds one attempt's transfer: its average rate over each successive ``window`` seconds must
    reach ``min_rate`` bytes/s, and the whole attempt must end within ``timeout`` seconds (None: no
    limit). ``clock`` is ``time.monotonic`` but for tests."""

    def __init__(self, min_rate: float, window: float, timeout: Optional[float], clock=time.monotonic):
        self._min_rate, self._window, self._timeout, self._clock = min_rate, window, timeout, clock
        self._start = self._mark_time = clock()
        self._mark_bytes = 0

    def check(self, received: int) -> None:
        """Raise ``_TooSlow`` if, with ``received`` bytes so far, a bound is broken."""
        now = self._clock()
        if self._timeout is not None and now - self._start > self._timeout:
            raise _TooSlow(f"not complete within {self._timeout:g} s (MASKRCNN_DOWNLOAD_TIMEOUT)")
        elapsed = now - self._mark_time
        if self._min_rate <= 0 or elapsed < self._window:
            return
        window_bytes = received - self._mark_bytes
        if window_bytes < self._min_rate * elapsed:
            raise _TooSlow(f"{window_bytes} bytes in {elapsed:.1f} s, under {self._min_rate:g} bytes/s "
                           f"(MASKRCNN_DOWNLOAD_MIN_RATE)")
        self._mark_time, self._mark_bytes = now, received


class _LocalWriteError(OSError):
    """Writing the downloaded bytes to the cache failed (not a network error: not retried)."""


@contextlib.contextmanager
def _local_io() -> Iterator[None]:
    """Marks the ``OSError`` of a cache-side operation (disk full, permissions) as ``_LocalWriteError``."""
    try:
        yield
    except _LocalWriteError:
        raise
    except OSError as error:
        raise _LocalWriteError(error.errno, error.strerror or str(error)) from error


def _connect_with_read_timeout(connection: http.client.HTTPConnection, connect, read_timeout: float) -> None:
    try:
        connect()
    except TimeoutError as error:
        raise _ConnectTimeout(f"no connection within {connection.timeout:g} s") from error
    connection.sock.settimeout(read_timeout)  # from here on, each wait for data


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, read_timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self._read_timeout = read_timeout

    def connect(self):
        _connect_with_read_timeout(self, super().connect, self._read_timeout)


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, read_timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self._read_timeout = read_timeout

    def connect(self):
        _connect_with_read_timeout(self, super().connect, self._read_timeout)


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read_timeout: float):
        super().__init__()
        self._read_timeout = read_timeout

    def http_open(self, req):
        return self.do_open(_HTTPConnection, req, read_timeout=self._read_timeout)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read_timeout: float):
        super().__init__()
        self._read_timeout = read_timeout

    def https_open(self, req):
        return self.do_open(_HTTPSConnection, req, context=self._context, read_timeout=self._read_timeout)


def _fetch(url: str, file, settings: DownloadSettings, progress_name: str) -> str:
    """Stream ``url`` into ``file``; returns the SHA-256 hex digest of what was written."""
    from tqdm import tqdm

    opener = urllib.request.build_opener(_HTTPHandler(settings.read_timeout), _HTTPSHandler(settings.read_timeout))
    request = urllib.request.Request(url, headers={"User-Agent": "maskrcnn_multi"})
    digest = hashlib.sha256()
    guard = _TransferGuard(settings.min_rate, settings.read_timeout, settings.timeout)
    with opener.open(request, timeout=settings.connect_timeout) as response:
        if response.headers.get("Content-Type") and response.headers.get_content_type() in _HTML_TYPES:
            raise _HtmlAnswer(f"the server sent an HTML page (Content-Type {response.headers['Content-Type']}) "
                              f"where a checkpoint was expected: a login, error or mirror page, not the file")
        total = int(response.headers.get("Content-Length") or 0) or None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=progress_name, leave=False) as bar:
            while True:
                guard.check(received)
                chunk = response.read1(_CHUNK_BYTES)  # what one wait brings: the guard sees every wait
                if not chunk:
                    break
                with _local_io():
                    file.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if total is not None and received != total:
            raise http.client.IncompleteRead(b"", total - received)
    return digest.hexdigest()


def _retried(error: BaseException) -> bool:
    if isinstance(error, _NotACheckpoint):
        return True
    if isinstance(error, _HtmlAnswer):
        return False
    if isinstance(error, urllib.error.HTTPError):
        return error.code in _RETRIED_HTTP_CODES or error.code >= 500
    if isinstance(error, urllib.error.URLError):
        return _retried(error.reason) if isinstance(error.reason, BaseException) else True
    if isinstance(error, (_LocalWriteError, ssl.SSLCertVerificationError)):
        return False
    return isinstance(error, (OSError, http.client.HTTPException))


def _describe(error: BaseException, settings: DownloadSettings) -> str:
    """One line saying why an attempt failed."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        return _describe(error.reason, settings)
    if isinstance(error, _ConnectTimeout):
        return f"{error} (MASKRCNN_DOWNLOAD_CONNECT_TIMEOUT)"
    if isinstance(error, (_TooSlow, _HtmlAnswer, _NotACheckpoint)):
        return str(error)
    if isinstance(error, TimeoutError):
        return f"no data for {settings.read_timeout:g} s (MASKRCNN_DOWNLOAD_READ_TIMEOUT)"
    if isinstance(error, http.client.IncompleteRead):
        return f"the connection closed with {error.expected} bytes still to come"
    if isinstance(error, _LocalWriteError):
        name = errno.errorcode.get(error.errno, "")
        return f"cannot write to the cache: {error.strerror}" + (f" ({name})" if name else "")
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def download(url: str, destination: str, settings: Optional[DownloadSettings] = None) -> str:
    """Download ``url`` to ``destination`` (see the module doc); returns ``destination``.

    Raises ``CheckpointError`` naming the URL when every attempt failed or the hash does not match;
    ``destination`` then does not exist and no temporary file is left.
    """
    settings = settings or DownloadSettings.from_env()
    expected_hash = expected_sha256_prefix(url)
    directory = os.path.dirname(destination)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise CheckpointError(f"cannot download checkpoint {url}: cannot create the cache folder {directory}: "
                              f"{error.strerror or error}") from error
    remove_orphaned_temp_files(directory, DOWNLOAD_TEMP_PREFIX)
    attempts = settings.retries + 1
    logger.info("Downloading %s to %s", url, destination)
    attempt = 0
    while True:
        attempt += 1
        try:
            with contextlib.ExitStack() as stack:
                with _local_io():
                    file, temp_path = stack.enter_context(locked_temp_file(directory, DOWNLOAD_TEMP_PREFIX))
                digest = _fetch(url, file, settings, os.path.basename(destination))
                with _local_io():
                    file.flush()
                    os.fsync(file.fileno())
                if expected_hash and not digest.startswith(expected_hash):
                    raise CheckpointError(
                        f"downloaded checkpoint {url} has SHA-256 {digest[:len(expected_hash)]}..., but its name says "
                        f"{expected_hash}: refusing it (nothing was cached)"
                    )
                try:
                    with _local_io():
                        check_complete(temp_path)
                except IncompleteCheckpoint as error:
                    raise _NotACheckpoint(f"the file received is not a whole checkpoint: {error}") from error
                with _local_io():
                    os.replace(temp_path, destination)
            return destination
        except (OSError, http.client.HTTPException, _NotACheckpoint) as error:
            reason = _describe(error, settings)
            if attempt == attempts or not _retried(error):
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                raise CheckpointError(
                    f"cannot download checkpoint {url}: {reason}{tries}; nothing was cached"
                ) from error
            wait = settings.backoff * 2 ** (attempt - 1)
            logger.warning("Downloading %s failed (%s); retrying in %g s (attempt %d of %d)",
                           url, reason, wait, attempt + 1, attempts)
            time.sleep(wait)
