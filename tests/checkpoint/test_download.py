"""Downloads against a local HTTP server in a thread: a server that never answers, or drips bytes,
fails within its bound, a dropped connection or a file cut short is retried, an HTML page or a file
whose name's hash does not match is refused, a broken cached file is named with what to do, and
nothing partial is ever left in the cache. Nothing leaves this machine."""
import hashlib
import http.server
import logging
import os
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
