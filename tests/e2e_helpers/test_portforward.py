"""The port-forward helper: kubectl's output parsed, pipes drained, restarts, reaping."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from raftkv_e2e.portforward import (
    ForwardTransport,
    PortForward,
    PortForwardError,
    parse_forwarding_port,
)
from raftkv_e2e.workload import forwarded_client

from raftkv.client import Client


@pytest.mark.parametrize(
    ("line", "port"),
    [
        ("Forwarding from 127.0.0.1:41234 -> 2379", 41234),
        ("Forwarding from 127.0.0.1:8080 -> 2379\r\n", 8080),
        ("  Forwarding from 127.0.0.1:1 -> 80  ", 1),
        ("Forwarding from [::1]:41234 -> 2379", None),
        ("Forwarding from 0.0.0.0:41234 -> 2379", None),
        ("Handling connection for 41234", None),
        ("Forwarding from 127.0.0.1:99999 -> 2379", None),
        ("Forwarding from 127.0.0.1:0 -> 2379", None),
        ("error: lost connection to pod", None),
        ("", None),
    ],
)
def test_parse_forwarding_port(line: str, port: int | None) -> None:
    assert parse_forwarding_port(line) == port


class Backend:
    """A tiny raftkv-shaped KV server: PUT deduplicated by X-Request-Id, GET with ETag.
    A PUT of key ``slow`` waits for ``release`` before answering."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, int]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.request_ids: list[str] = []
        self.revision = 0
        self.slow_started = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_PUT(self) -> None:
                key = self.path.removeprefix("/v1/kv/")
                value = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                rid = self.headers.get("X-Request-Id", "")
                with backend.lock:
                    backend.request_ids.append(rid)
                    result = backend.results.get(rid)
                    if result is None:
                        backend.revision += 1
                        backend.data[key] = (value, backend.revision)
                        result = {"revision": backend.revision, "prev_revision": 0}
                        backend.results[rid] = result
                if key == "slow" and not backend.release.is_set():
                    backend.slow_started.set()
                    backend.release.wait(10)
                    return  # never answer: the connection is cut under us
                self._send(200, json.dumps(result).encode(), {})

            def do_GET(self) -> None:
                key = self.path.removeprefix("/v1/kv/")
                with backend.lock:
                    found = backend.data.get(key)
                if found is None:
                    self._send(404, b'{"error": "not_found"}', {})
                else:
                    self._send(200, found[0], {"ETag": f'"{found[1]}"'})

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Backend:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    with Backend() as b:
        monkeypatch.setenv("FAKE_BACKEND", f"127.0.0.1:{b.port}")
        yield b


def _kill_current(forward: PortForward) -> int:
    session = forward._session
    assert session is not None
    pid = session.proc.pid
    os.kill(pid, signal.SIGKILL)
    session.proc.wait(5)
    return pid


def test_forward_starts_drains_its_pipes_and_is_reaped(fake_kubectl: str, backend: Backend) -> None:
    with PortForward(fake_kubectl, "ns", "svc/kv-client", 2379, start_timeout=20) as forward:
        port = forward.ensure()
        assert forward.port == port
        assert forward.argv[1:] == [
            "port-forward",
            "-n",
            "ns",
            "svc/kv-client",
            ":2379",
            "--address",
            "127.0.0.1",
        ]
        # The fake printed ~500 KB of "Handling connection" lines after the port: a
        # reader that did not drain the pipe would leave it blocked and never relaying.
        response = httpx.get(f"http://127.0.0.1:{port}/v1/kv/absent", timeout=10)
        assert response.status_code == 404
        assert forward.ensure() == port
        assert forward.starts == 1
        session = forward._session
        assert session is not None
    assert session.proc.returncode is not None  # terminated and waited for
    assert not any(reader.is_alive() for reader in session.readers)
    with pytest.raises(PortForwardError, match="closed"):
        forward.ensure()


def test_client_writes_survive_a_dead_forward_once(fake_kubectl: str, backend: Backend) -> None:
    forward = PortForward(fake_kubectl, "ns", "svc/kv-client", 2379, start_timeout=20)
    client: Client = forwarded_client(forward, timeout=5, retries=3)
    try:
        assert client.put("a", b"1").revision == 1
        first = forward.port
        # The pod behind the forward dies between two requests: kubectl exits.
        _kill_current(forward)
        assert client.put("b", b"2").revision == 2
        assert forward.starts == 2
        assert forward.port != first
        got = client.get("b")
        assert got is not None
        assert (got.value, got.revision) == (b"2", 2)

        # It dies while a write is in flight: the client retries through a new
        # forward with the same request id, and the server applies the write once.
        writer = threading.Thread(target=lambda: client.put("slow", b"3"))
        writer.start()
        assert backend.slow_started.wait(10)
        _kill_current(forward)
        backend.release.set()
        writer.join(20)
        assert not writer.is_alive()
        assert forward.starts == 3
        slow_ids = backend.request_ids[2:]
        assert len(slow_ids) == 2, backend.request_ids
        assert slow_ids[0] == slow_ids[1], backend.request_ids
        assert backend.revision == 3
        assert backend.data["slow"] == (b"3", 3)
    finally:
        client.close()
        forward.close()


def test_gone_answer_marks_the_forward_stale(fake_kubectl: str, backend: Backend) -> None:
    responses = iter([410, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(responses), json={"error": "gone"})

    with PortForward(fake_kubectl, "ns", "svc/kv-client", 2379, start_timeout=20) as forward:
        transport = ForwardTransport(forward, httpx.MockTransport(handler))
        with httpx.Client(transport=transport) as http:
            assert http.get("http://placeholder/x").status_code == 410
            assert http.get("http://placeholder/x").status_code == 200
        assert forward.starts == 2  # a removed member answered 410: go elsewhere


def test_forward_that_fails_to_start_reports_kubectl_output(
    fake_kubectl: str, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FORWARD", "fail")
    with (
        PortForward(fake_kubectl, "ns", "svc/kv-client", 2379, start_timeout=20) as forward,
        pytest.raises(PortForwardError, match="pod is not running"),
    ):
        forward.ensure()
    # Through the transport the same failure is a connection error, which the client
    # may retry for any request because nothing was sent.
    with PortForward(fake_kubectl, "ns", "svc/kv-client", 2379, start_timeout=20) as forward:
        transport = ForwardTransport(forward)
        with httpx.Client(transport=transport) as http, pytest.raises(httpx.ConnectError):
            http.get("http://placeholder/x")


def test_forward_that_prints_no_port_times_out_and_is_killed(
    fake_kubectl: str, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FORWARD", "silent")
    forward = PortForward(fake_kubectl, "ns", "pod/kv-0", 2379, start_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(PortForwardError, match="no local port"):
        forward.ensure()
    assert time.monotonic() - started < 10
    assert forward._session is None
    forward.close()
