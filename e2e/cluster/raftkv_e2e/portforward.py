"""``kubectl port-forward`` as a restartable, always-reaped local endpoint.

``kubectl port-forward svc/<name>-client :2379`` binds a free local port and prints
``Forwarding from 127.0.0.1:NNNN -> 2379``; the helper parses that line. A forward to a
Service is really a forward to *one* pod chosen when it starts, so when that pod dies
(the leader's pod is deleted, a member is scaled away) the forward dies with it, or
keeps running with every connection failing (older kubectl). Either way the next
request restarts it: :class:`ForwardTransport` routes raftkv's HTTP client through the
current forward, marks it stale on a connection failure or a ``410 Gone`` (a member
removed from Raft) and restarts it before the next attempt. Because the client keeps
one ``X-Request-Id`` for all attempts of a write, a write retried across a restart is
still applied at most once.

kubectl prints ``Handling connection for NNNN`` for every connection, so both pipes
are drained by reader threads for the life of the process (a full pipe would block
kubectl and with it every request). Every process is terminated and waited for by
:meth:`PortForward.close`, by the context manager, and as a last resort at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

import httpx

log = logging.getLogger("e2e.portforward")

_FORWARDING = re.compile(r"^Forwarding from 127\.0\.0\.1:(\d{1,5}) -> (\d{1,5})\s*$")
_HANDLING = "Handling connection for"


def parse_forwarding_port(line: str) -> int | None:
    """The local port of kubectl's ``Forwarding from 127.0.0.1:NNNN -> RRRR`` line.

    Only the IPv4 loopback line counts (the helper binds ``--address 127.0.0.1``); any
    other line, including the ``[::1]`` one, gives None."""
    match = _FORWARDING.match(line.strip())
    if match is None:
        return None
    port = int(match.group(1))
    return port if 0 < port < 65536 else None


class PortForwardError(RuntimeError):
    pass


class _Session:
    """One kubectl process with its two pipe readers."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.port: int | None = None
        self.ready = threading.Event()
        self.lines: deque[str] = deque(maxlen=40)
        self.connections = 0
        # Its own process group: terminating the group also ends any helper kubectl
        # started (an exec credential plugin), and Ctrl-C at the terminal reaches only
        # pytest, which then closes the forward itself.
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, stream: IO[str], is_stdout: bool) -> None:
        try:
            for raw in stream:
                line = raw.rstrip("\r\n")
                if line.startswith(_HANDLING):
                    self.connections += 1
                    continue
                if is_stdout and self.port is None:
                    port = parse_forwarding_port(line)
                    if port is not None:
                        self.port = port
                        self.ready.set()
                self.lines.append(line)
        except (OSError, ValueError):
            pass  # the pipe was closed under us by stop()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return " | ".join(list(self.lines)[-8:]) or "(no output)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        for reader in self.readers:
            reader.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def _signal(self, sig: signal.Signals) -> None:
        # Only called before the process is reaped, so its pid (= its group id) cannot
        # have been reused by anything else.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


_LIVE: weakref.WeakSet[PortForward] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for forward in list(_LIVE):
        forward.close()


class PortForward:
    """``kubectl port-forward -n <namespace> <target> :<remote_port>``, restartable.

    ``target`` is ``svc/<name>`` or ``pod/<name>``. :meth:`ensure` returns the local port
    of a running forward, (re)starting it when it is not running or was marked stale.
    Thread-safe; each user thread that must not be disturbed by another's restart
    should have its own forward.
    """

    def __init__(
        self,
        kubectl: str,
        namespace: str,
        target: str,
        remote_port: int,
        *,
        start_timeout: float = 60.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.argv = [
            kubectl,
            "port-forward",
            "-n",
            namespace,
            target,
            f":{remote_port}",
            "--address",
            "127.0.0.1",
            *extra_args,
        ]
        self.target = target
        self.start_timeout = start_timeout
        self.starts = 0
        self._session: _Session | None = None
        self._stale = False
        self._closed = False
        self._lock = threading.Lock()
        self.history: deque[str] = deque(maxlen=20)
        _LIVE.add(self)

    def __enter__(self) -> PortForward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int | None:
        session = self._session
        return session.port if session is not None and session.alive() else None

    def ensure(self) -> int:
        """The local port of a live forward, starting a new one if needed."""
        with self._lock:
            if self._closed:
                raise PortForwardError(f"port-forward to {self.target} is closed")
            session = self._session
            if session is not None and session.alive() and not self._stale:
                assert session.port is not None
                return session.port
            if session is not None:
                why = "marked stale" if session.alive() else f"exited {session.proc.returncode}"
                self.history.append(f"{why}: {session.output()}")
                log.info("port-forward to %s %s; restarting", self.target, why)
                session.stop()
                self._session = None
            return self._start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.ensure()}"

    def invalidate(self, port: int | None = None) -> None:
        """Restart before the next use (only if ``port`` is still the current one, so
        several failed requests of one broken forward cause one restart)."""
        with self._lock:
            session = self._session
            if session is not None and (port is None or session.port == port):
                self._stale = True

    def restart(self) -> int:
        self.invalidate()
        return self.ensure()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            session, self._session = self._session, None
        if session is not None:
            session.stop()
        _LIVE.discard(self)

    def describe(self) -> str:
        session = self._session
        now = session.output() if session is not None else "(not running)"
        return f"port-forward {self.target}: {self.starts} start(s); now: {now}; " + (
            "; ".join(self.history) or "no restarts"
        )

    def _start(self) -> int:
        self.starts += 1
        self._stale = False
        try:
            session = _Session(self.argv)
        except OSError as exc:
            raise PortForwardError(f"cannot run {self.argv[0]}: {exc}") from exc
        deadline = time.monotonic() + self.start_timeout
        try:
            while not session.ready.wait(0.05):
                if not session.alive():
                    raise PortForwardError(
                        f"kubectl port-forward {self.target} exited "
                        f"{session.proc.returncode}: {session.output()}"
                    )
                if time.monotonic() > deadline:
                    raise PortForwardError(
                        f"kubectl port-forward {self.target} printed no local port within "
                        f"{self.start_timeout:g}s: {session.output()}"
                    )
        except BaseException:
            # Also on KeyboardInterrupt or a pytest-timeout: never leave kubectl behind.
            session.stop()
            raise
        assert session.port is not None
        self._session = session
        log.info("port-forward %s on 127.0.0.1:%d", self.target, session.port)
        return session.port


@dataclass(frozen=True)
class ForwardTLS:
    """How requests through a forward speak TLS.

    The forward ends on 127.0.0.1, but the certificate names the pod and Service DNS
    names, so the handshake sends and verifies ``server_name`` (SNI and hostname check)
    against a context that trusts the cluster CA: exactly what a client inside the
    cluster checks.

    ``plain_first``: while TLS is being turned on, members go from plain HTTP through
    "both" to HTTPS only, and a forward to the Service reaches any of them. A request
    goes in plain HTTP first; a member that speaks only TLS reads it as a broken
    handshake and closes the connection without interpreting a byte of it (it is not
    TLS), so the same request (same ``X-Request-Id``: a retried write is still applied
    at most once) goes again over HTTPS. Not the other way round: a TLS ClientHello
    sent to a plain HTTP server waits for a request line that never comes, until the
    timeout. ``fresh_connections``: one handshake per request (no keep-alive), so a
    renewed certificate is seen by the next request, not hidden behind a connection
    opened before the renewal."""

    context: ssl.SSLContext
    server_name: str
    plain_first: bool = False
    fresh_connections: bool = False


def tls_context(ca_pem: bytes) -> ssl.SSLContext:
    """A client context that trusts only ``ca_pem`` and checks host names."""
    context = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class ForwardTransport(httpx.BaseTransport):
    """An httpx transport that sends every request through a :class:`PortForward`.

    The request's own host and port are ignored (give the client any placeholder base
    URL); a failed connection or a ``410 Gone`` marks the forward stale so the next
    attempt goes through a fresh forward, probably to another pod. With ``tls`` the
    requests are HTTPS to ``tls.server_name`` (see :class:`ForwardTLS`)."""

    def __init__(
        self,
        forward: PortForward,
        inner: httpx.BaseTransport | None = None,
        *,
        tls: ForwardTLS | None = None,
    ) -> None:
        self.forward = forward
        self.tls = tls
        self.tls_fallbacks = 0
        keepalive = 0 if tls is not None and tls.fresh_connections else 20
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=keepalive)
        if inner is not None:
            self._inner = inner
        elif tls is not None:
            self._inner = httpx.HTTPTransport(verify=tls.context, limits=limits)
        else:
            self._inner = httpx.HTTPTransport()
        self._plain = httpx.HTTPTransport() if tls is not None and tls.plain_first else None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            port = self.forward.ensure()
        except PortForwardError as exc:
            # Nothing was sent: the client may retry any request after this.
            raise httpx.ConnectError(str(exc), request=request) from exc
        tls = self.tls
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=port)
        try:
            if self._plain is not None:
                try:
                    return self._checked(self._plain.handle_request(request), port)
                except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                    # Closed unanswered: a member that takes TLS only (see ForwardTLS).
                    self.tls_fallbacks += 1
            if tls is not None:
                request.url = request.url.copy_with(scheme="https")
                request.extensions = {**request.extensions, "sni_hostname": tls.server_name}
            return self._checked(self._inner.handle_request(request), port)
        except httpx.TransportError:
            self.forward.invalidate(port)
            raise

    def _checked(self, response: httpx.Response, port: int) -> httpx.Response:
        if response.status_code == 410:
            self.forward.invalidate(port)
        return response

    def close(self) -> None:
        self._inner.close()
        if self._plain is not None:
            self._plain.close()


def served_certificate(port: int, tls: ForwardTLS, timeout: float = 10.0) -> bytes:
    """The DER certificate a member presents through the forward on ``port``, after a
    full handshake that verifies it against the CA and ``tls.server_name`` (raises
    ``ssl.SSLError`` when it does not verify)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock,
        tls.context.wrap_socket(sock, server_hostname=tls.server_name) as wrapped,
    ):
        der = wrapped.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError(f"{tls.server_name}: no certificate presented")
    return der
