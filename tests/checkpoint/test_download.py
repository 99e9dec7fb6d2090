"""Downloads against a local HTTP server in a thread: a server that never answers, or drips bytes,
fails within its bound, a dropped connection or a file cut short is retried, an HTML page or a file
whose name's hash does not match is refused, a broken cached file is named with what to do, and
nothing partial is ever left in the cache. Nothing leaves this machine."""
import hashlib
import http.server
import logging
import os
import re
import socket
import threading
import time

import numpy as np
import pytest
from torch import nn

from maskrcnn_multi.checkpoint import (
    CheckpointError, DetectionCheckpointer, DownloadSettings, UnsafeCheckpointError, cached_path_for_url,
    get_local_path,
)
from maskrcnn_multi.checkpoint.download import _TooSlow, _TransferGuard, expected_sha256_prefix
from pickles import CodeRunner, python2_pickle

# a detectron2 model-zoo file of 1 MiB and a little
BODY = python2_pickle({"model": {"conv1.weight": np.arange(1 << 18, dtype=np.float32)}, "__author__": "test"})
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        self.server.answer(self, len(self.server.requests))

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    """Start a local server whose ``answer(handler, request_number)`` is set by the test."""
    servers = []

    def start(answer):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.requests, server.answer = [], answer
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    connections, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connections.append(listener.accept()[0])
            except socket.timeout:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", connections
    stop.set()
    thread.join()
    for connection in connections:
        connection.close()
    listener.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache, short timeouts and retries, and no proxy unless a test sets one."""
    root = tmp_path / "cache"
    monkeypatch.setenv("MASKRCNN_MULTI_CACHE", str(root))
    monkeypatch.setenv("MASKRCNN_DOWNLOAD_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("MASKRCNN_DOWNLOAD_READ_TIMEOUT", "0.5")
    monkeypatch.setenv("MASKRCNN_DOWNLOAD_RETRIES", "1")
    monkeypatch.setenv("MASKRCNN_DOWNLOAD_BACKOFF", "0.05")
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return root


def _files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def _serve(body):
    def answer(handler, request_number):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return answer


def test_server_that_never_answers_fails_within_the_timeout(cache, silent_server):
    base, connections = silent_server
    url = f"{base}/models/model_final.pkl"
    start = time.monotonic()
    with pytest.raises(CheckpointError) as info:
        get_local_path(url)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert message == f"cannot download checkpoint {url}: no data for 0.5 s (MASKRCNN_DOWNLOAD_READ_TIMEOUT) " \
                      f"after 2 attempts; nothing was cached"
    assert 1.0 <= elapsed < 10.0  # two attempts of 0.5 s and a 0.05 s pause; far from forever
    assert len(connections) == 2
    assert _files_under(cache) == []


def test_connection_dropped_mid_body_is_retried(cache, http_server, caplog):
    def answer(handler, request_number):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(BODY)))
        handler.end_headers()
        if request_number == 1:  # half the file, then the connection dies
            handler.wfile.write(BODY[: len(BODY) // 2])
            handler.wfile.flush()
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        handler.wfile.write(BODY)

    server, base = http_server(answer)
    with caplog.at_level(logging.WARNING, logger="maskrcnn_multi.checkpoint"):
        local = get_local_path(f"{base}/detectron2/R-50.pkl")
    assert open(local, "rb").read() == BODY
    assert len(server.requests) == 2
    assert any(f"closed with {len(BODY) - len(BODY) // 2} bytes still to come" in r.getMessage() and "retrying" in r.getMessage()
               for r in caplog.records)
    assert _files_under(cache) == [os.path.join(f"127.0.0.1:{server.server_address[1]}", "detectron2", "R-50.pkl")]


def test_torchvision_name_with_a_wrong_hash_is_refused_and_nothing_cached(cache, http_server, monkeypatch):
    # torchvision's weights live on download.pytorch.org; reach it through a local proxy
    server, base = http_server(_serve(b"these bytes are not the weights"))
    monkeypatch.setenv("http_proxy", base)
    url = "http://download.pytorch.org/models/resnet18-f37072fd.pth"
    with pytest.raises(CheckpointError) as info:
        get_local_path(url)
    digest = hashlib.sha256(b"these bytes are not the weights").hexdigest()
    assert str(info.value) == (f"downloaded checkpoint {url} has SHA-256 {digest[:8]}..., but its name says f37072fd: "
                               f"refusing it (nothing was cached)")
    assert server.requests == [url]  # not retried
    assert _files_under(cache) == []


def test_correct_download_is_cached_and_reused(cache, http_server, monkeypatch):
    server, base = http_server(_serve(BODY))
    monkeypatch.setenv("http_proxy", base)
    url = f"http://download.pytorch.org/models/resnet18-{hashlib.sha256(BODY).hexdigest()[:8]}.pth"
    local = get_local_path(url)
    assert local == str(cache / "download.pytorch.org" / "models" / os.path.basename(url))
    assert open(local, "rb").read() == BODY
    assert get_local_path(url) == local and len(server.requests) == 1  # the second time from the cache
    assert _files_under(cache) == [os.path.join("download.pytorch.org", "models", os.path.basename(url))]


def test_http_error_fails_at_once_and_server_errors_are_retried(cache, http_server):
    server, base = http_server(lambda handler, n: handler.send_error(404 if "missing" in handler.path else 503))
    with pytest.raises(CheckpointError, match=r"^cannot download checkpoint .*/missing.pkl: HTTP 404 Not Found; "):
        get_local_path(f"{base}/missing.pkl")
    assert len(server.requests) == 1
    with pytest.raises(CheckpointError, match=r"HTTP 503 Service Unavailable after 2 attempts"):
        get_local_path(f"{base}/busy.pkl")
    assert len(server.requests) == 3
    assert _files_under(cache) == []


def test_partial_file_left_by_a_killed_download_is_removed(cache, http_server):
    server, base = http_server(_serve(BODY))
    folder = cache / f"127.0.0.1:{server.server_address[1]}"
    folder.mkdir(parents=True)
    (folder / ".download-k1ll3d").write_bytes(BODY[:1000])  # no process holds its lock any more
    get_local_path(f"{base}/R-50.pkl")
    assert sorted(os.listdir(folder)) == ["R-50.pkl"]


def test_settings_come_from_the_environment():
    assert DownloadSettings.from_env({}) == DownloadSettings(15.0, 60.0, 3, 1.0, 1024.0, None)
    assert DownloadSettings.from_env({
        "MASKRCNN_DOWNLOAD_CONNECT_TIMEOUT": "5", "MASKRCNN_DOWNLOAD_READ_TIMEOUT": "2.5",
        "MASKRCNN_DOWNLOAD_RETRIES": "0", "MASKRCNN_DOWNLOAD_BACKOFF": "0",
        "MASKRCNN_DOWNLOAD_MIN_RATE": "0", "MASKRCNN_DOWNLOAD_TIMEOUT": "3600",
    }) == DownloadSettings(5.0, 2.5, 0, 0.0, 0.0, 3600.0)
    for name, value in [("MASKRCNN_DOWNLOAD_READ_TIMEOUT", "0"), ("MASKRCNN_DOWNLOAD_CONNECT_TIMEOUT", "soon"),
                        ("MASKRCNN_DOWNLOAD_RETRIES", "1.5"), ("MASKRCNN_DOWNLOAD_BACKOFF", "-1"),
                        ("MASKRCNN_DOWNLOAD_READ_TIMEOUT", "inf"), ("MASKRCNN_DOWNLOAD_MIN_RATE", "-5"),
                        ("MASKRCNN_DOWNLOAD_TIMEOUT", "0"), ("MASKRCNN_DOWNLOAD_MIN_RATE", "1kB")]:
        with pytest.raises(CheckpointError, match=f"^environment variable {name}='{value}' is not "):
            DownloadSettings.from_env({name: value})


def test_only_names_that_carry_a_hash_are_checked():
    assert expected_sha256_prefix("https://download.pytorch.org/models/resnet50-0676ba61.pth") == "0676ba61"
    vgg = "https://download.pytorch.org/models/vgg16_features-amdegroot-88682ab5.pth"
    assert expected_sha256_prefix(vgg) == "88682ab5"
    # detectron2's suffixes name a commit, and R-50's "-50" is a depth: not hashes
    assert expected_sha256_prefix("https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl") is None
    assert expected_sha256_prefix(
        "https://dl.fbaipublicfiles.com/detectron2/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x/137849600/"
        "model_final_f10217.pkl") is None
    assert expected_sha256_prefix("https://example.com/models/model-20240101.pth") is None
    assert expected_sha256_prefix("https://download.pytorch.org/models/resnet50_fbgemm_bf931d71.pth") is None


def _drip(piece, pause, content_length=None, pieces=400):
    """An answer that sends ``piece`` every ``pause`` seconds, ``pieces`` times at most (until the
    client hangs up), under ``content_length`` when given."""
    def answer(handler, request_number):
        handler.send_response(200)
        if content_length is not None:
            handler.send_header("Content-Length", str(content_length))
        handler.end_headers()
        try:
            for index in range(pieces):
                handler.wfile.write(piece(index) if callable(piece) else piece)
                handler.wfile.flush()
                time.sleep(pause)
        except OSError:  # the client gave up
            pass
    return answer


def test_server_dripping_bytes_fails_by_the_minimum_rate(cache, http_server):
    # each byte comes well within READ_TIMEOUT (0.5 s), so only the rate rule can end this
    server, base = http_server(_drip(b"\x80", 0.05, content_length=10 ** 9))
    url = f"{base}/drip/model_final.pkl"
    start = time.monotonic()
    with pytest.raises(CheckpointError) as info:
        get_local_path(url)
    elapsed = time.monotonic() - start
    assert re.fullmatch(rf"cannot download checkpoint {re.escape(url)}: \d+ bytes in 0\.\d s, under 1024 bytes/s "
                        r"\(MASKRCNN_DOWNLOAD_MIN_RATE\) after 2 attempts; nothing was cached", str(info.value))
    assert elapsed < 10.0  # two windows of 0.5 s and a pause
    assert len(server.requests) == 2
    assert _files_under(cache) == []


def test_slow_but_steady_download_outlasts_the_rate_window(cache, http_server, monkeypatch):
    monkeypatch.setenv("MASKRCNN_DOWNLOAD_MIN_RATE", "20000")
    body = python2_pickle({"model": {"w": np.arange(50_000, dtype=np.float32)}, "__author__": "test"})
    piece = 4096  # every 0.02 s: about 200 kB/s for about a second, twice the 0.5 s window
    pieces = [body[i:i + piece] for i in range(0, len(body), piece)]
    server, base = http_server(_drip(lambda index: pieces[index], 0.02, len(body), len(pieces)))
    local = get_local_path(f"{base}/slow/R-101.pkl")
    assert open(local, "rb").read() == body
    assert len(server.requests) == 1


def test_total_deadline_bounds_an_attempt_whatever_the_rate(cache, http_server, monkeypatch):
    monkeypatch.setenv("MASKRCNN_DOWNLOAD_MIN_RATE", "0")
    monkeypatch.setenv("MASKRCNN_DOWNLOAD_TIMEOUT", "0.3")
    monkeypatch.setenv("MASKRCNN_DOWNLOAD_RETRIES", "0")
    server, base = http_server(_drip(b"\x80" * 100, 0.02, content_length=10 ** 9))
    url = f"{base}/steady/model.pkl"
    with pytest.raises(CheckpointError) as info:
        get_local_path(url)
    assert str(info.value) == (f"cannot download checkpoint {url}: not complete within 0.3 s "
                               f"(MASKRCNN_DOWNLOAD_TIMEOUT); nothing was cached")
    assert _files_under(cache) == []


def test_rate_is_measured_over_each_window_not_over_one_wait():
    now = [0.0]
    guard = _TransferGuard(min_rate=1000, window=10, timeout=None, clock=lambda: now[0])
    now[0] = 9.9
    guard.check(0)  # a stall shorter than the window is READ_TIMEOUT's business
    now[0] = 10.0
    guard.check(10_000)  # 1000 bytes/s over the first window
    now[0] = 15.0
    guard.check(10_001)  # the second window is not over yet
    now[0] = 20.0
    with pytest.raises(_TooSlow, match=r"^1 bytes in 10.0 s, under 1000 bytes/s \(MASKRCNN_DOWNLOAD_MIN_RATE\)$"):
        guard.check(10_001)
    unbounded = _TransferGuard(min_rate=0, window=10, timeout=None, clock=lambda: now[0])
    now[0] = 1e6
    unbounded.check(0)


def test_file_cut_short_without_content_length_is_retried_not_cached(cache, http_server, caplog):
    def answer(handler, request_number):  # HTTP/1.0, no Content-Length: the end of the body is the close
        handler.send_response(200)
        handler.end_headers()
        handler.wfile.write(BODY[: len(BODY) // 2] if request_number == 1 else BODY)

    server, base = http_server(answer)
    with caplog.at_level(logging.WARNING, logger="maskrcnn_multi.checkpoint"):
        local = get_local_path(f"{base}/flaky/model_final.pkl")
    assert open(local, "rb").read() == BODY
    assert len(server.requests) == 2
    assert any("the file received is not a whole checkpoint: not a whole pickle" in r.getMessage()
               and "retrying" in r.getMessage() for r in caplog.records)


def test_content_length_shorter_than_the_file_is_refused(cache, http_server):
    def answer(handler, request_number):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(BODY) // 2))
        handler.end_headers()
        handler.wfile.write(BODY)

    server, base = http_server(answer)
    url = f"{base}/short/model_final.pkl"
    with pytest.raises(CheckpointError, match=rf"^cannot download checkpoint {re.escape(url)}: the file received is "
                                              r"not a whole checkpoint: not a whole pickle: .* after 2 attempts; "
                                              r"nothing was cached$"):
        get_local_path(url)
    assert len(server.requests) == 2
    assert _files_under(cache) == []


def test_html_page_served_as_200_is_refused_at_once(cache, http_server):
    page = b"<html><body>Please log in</body></html>"

    def answer(handler, request_number):
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(page)))
        handler.end_headers()
        handler.wfile.write(page)

    server, base = http_server(answer)
    url = f"{base}/html/model_final.pkl"
    with pytest.raises(CheckpointError) as info:
        get_local_path(url)
    assert str(info.value) == (f"cannot download checkpoint {url}: the server sent an HTML page (Content-Type "
                               f"text/html; charset=utf-8) where a checkpoint was expected: a login, error or "
                               f"mirror page, not the file; nothing was cached")
    assert len(server.requests) == 1
    assert _files_under(cache) == []


def test_html_page_without_its_content_type_is_refused_too(cache, http_server):
    page = b"<html><body>Please log in</body></html>"
    server, base = http_server(_serve(page))
    with pytest.raises(CheckpointError, match=r"not a whole checkpoint: neither a pickle nor a zip archive: it starts "
                                              r"with b'<html><body>Ple' after 2 attempts; nothing was cached$"):
        get_local_path(f"{base}/html/model.pth")
    assert _files_under(cache) == []


def test_broken_cached_file_is_named_with_what_to_do(cache):
    url = "http://127.0.0.1:9/cached/model_final.pkl"  # never contacted: the file is in the cache
    local = cached_path_for_url(url)
    os.makedirs(os.path.dirname(local))
    with open(local, "wb") as f:
        f.write(BODY[: len(BODY) // 2])  # cached by an older version that did not check
    checkpointer = DetectionCheckpointer(nn.Linear(2, 2))
    with pytest.raises(CheckpointError) as info:
        checkpointer.load(url)
    assert str(info.value).startswith(f"cannot read checkpoint {local}: ")
    assert str(info.value).endswith(f"; {local} is the cached download of {url}: delete it to download it again")
    with open(local, "wb") as f:
        f.write(python2_pickle({"model": CodeRunner("true")}))
    with pytest.raises(UnsafeCheckpointError) as info:  # deleting would not help: the opt-in is named instead
        checkpointer.load(url)
    assert "delete it" not in str(info.value) and "MASKRCNN_ALLOW_UNSAFE_LOAD=1" in str(info.value)


def test_temp_file_of_a_killed_download_is_removed_on_a_cache_hit(cache, http_server):
    server, base = http_server(_serve(BODY))
    get_local_path(f"{base}/models/R-50.pkl")
    folder = cache / f"127.0.0.1:{server.server_address[1]}" / "models"
    (folder / ".download-k1ll3d").write_bytes(b"")  # its writer was killed: no lock is held
    assert get_local_path(f"{base}/models/R-50.pkl") == str(folder / "R-50.pkl")
    assert sorted(os.listdir(folder)) == ["R-50.pkl"] and len(server.requests) == 1
