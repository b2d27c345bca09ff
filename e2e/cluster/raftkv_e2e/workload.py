"""KV traffic through the client Service: a retrying facade and a background writer."""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from raftkv.client import Client, GetResult, Indeterminate, RaftKVError, Unavailable
from raftkv_e2e.portforward import ForwardTLS, ForwardTransport, PortForward
from raftkv_e2e.writelog import Observed, WriteLog

log = logging.getLogger("e2e.workload")
T = TypeVar("T")

#: Any base URL will do: :class:`ForwardTransport` sends every request to the forward.
PLACEHOLDER_URL = "http://raftkv-client.e2e.invalid"
#: Statuses after which a request certainly had no effect and may be sent again
#: (410: the member behind the forward was removed from Raft; 0: no answer at all).
RETRYABLE_STATUS = frozenset({0, 410, 502, 503, 504})


def forwarded_client(
    forward: PortForward,
    *,
    timeout: float = 10.0,
    retries: int = 4,
    tls: ForwardTLS | None = None,
) -> Client:
    """raftkv's own client, through ``forward`` (over HTTPS with ``tls``). Its timeout
    is above the members' 5 s request timeout so a slow write reads as the server's
    honest 503."""
    return Client(
        PLACEHOLDER_URL,
        transport=ForwardTransport(forward, tls=tls),
        timeout=timeout,
        retries=retries,
        backoff=0.25,
        max_backoff=2.0,
    )


def retryable(exc: RaftKVError) -> bool:
    return isinstance(exc, Unavailable | Indeterminate) or exc.status in RETRYABLE_STATUS


class KV:
    """Calls through the client Service that keep trying until a deadline.

    For the suite's own foreground steps, which must succeed eventually: the
    cluster being briefly without a leader, or the forward's pod going away, is
    retried; anything else (a 4xx) is an answer and raised."""

    def __init__(
        self,
        forward: PortForward,
        log_: WriteLog,
        default_timeout: float,
        tls: ForwardTLS | None = None,
    ) -> None:
        self.forward = forward
        self.client = forwarded_client(forward, tls=tls)
        self.writes = log_
        self.default_timeout = default_timeout

    def close(self) -> None:
        self.client.close()

    def retrying(self, what: str, call: Callable[[Client], T], timeout: float | None = None) -> T:
        limit = self.default_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        failures = 0
        while True:
            try:
                return call(self.client)
            except RaftKVError as exc:
                if not retryable(exc):
                    raise
                failures += 1
                if failures % 3 == 0:
                    self.forward.invalidate()  # perhaps a pod that cannot serve: try another
                if time.monotonic() > deadline:
                    raise AssertionError(f"{what}: still failing after {limit:g}s: {exc}") from exc
                log.info("%s: %s (retrying)", what, exc)
                time.sleep(min(0.5 * failures, 3.0))

    def put(self, key: str, value: bytes, timeout: float | None = None) -> int:
        """Write until acknowledged; returns the revision and records the write."""

        def attempt(client: Client) -> int:
            try:
                return client.put(key, value).revision
            except Indeterminate:
                self.writes.indeterminate(key, value)
                raise

        revision = self.retrying(f"PUT {key}", attempt, timeout)
        self.writes.acked(key, value, revision)
        return revision

    def delete(self, key: str, timeout: float | None = None) -> int:
        revision = self.retrying(f"DELETE {key}", lambda c: c.delete(key).revision, timeout)
        self.writes.acked_delete(key, revision)
        return revision

    def get(self, key: str, timeout: float | None = None) -> GetResult | None:
        return self.retrying(f"GET {key}", lambda c: c.get(key), timeout)

    def read(self, key: str) -> Observed | None:
        """A linearizable read in the shape :meth:`WriteLog.check` wants."""
        got = self.get(key)
        return None if got is None else Observed(got.value, got.revision)


class Writer:
    """Writes ``<prefix>0000001``, ``<prefix>0000002``, ... at up to ``rate`` per second
    through its own forward, recording each outcome, until stopped.

    Each key is attempted once (the client's own retries reuse the request id, so they
    are safe); an unknown outcome is recorded as such and the writer moves on. With
    ``retries=0`` every failed attempt counts (a workload that must see no failure)."""

    def __init__(
        self,
        forward: PortForward,
        writes: WriteLog,
        prefix: str,
        rate: float,
        *,
        tls: ForwardTLS | None = None,
        retries: int = 3,
    ) -> None:
        self.forward = forward
        self.writes = writes
        self.prefix = prefix
        self.interval = 1.0 / rate
        self.client = forwarded_client(forward, retries=retries, tls=tls)
        self.acks = 0
        self.indeterminate = 0
        self.failed = 0
        self.unexpected: list[str] = []
        #: The latest failed attempts of any kind, for the report.
        self.errors: deque[str] = deque(maxlen=20)
        self.ack_times: list[float] = []
        self.crashed: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="e2e-writer", daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
        self.client.close()
        self.forward.close()
        if self._thread.is_alive():
            raise AssertionError("the writer thread did not stop within 120s")

    def longest_gap(self) -> float:
        """The longest time between two acknowledgements (the worst unavailability)."""
        times = self.ack_times
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def summary(self) -> str:
        return (
            f"writer: {self.acks} acknowledged, {self.indeterminate} indeterminate, "
            f"{self.failed} not applied, longest gap {self.longest_gap():.1f}s; "
            f"{self.forward.describe()}"
        )

    def _run(self) -> None:
        seq = 0
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                seq += 1
                key = f"{self.prefix}{seq:07d}"
                value = f"{seq}:{secrets.token_hex(6)}".encode()
                self._write(key, value)
                next_at += self.interval
                now = time.monotonic()
                if next_at < now:
                    next_at = now  # behind (an outage): do not burst to catch up
                self._stop.wait(next_at - now)
        except BaseException as exc:  # a bug in the writer must fail the test, not hide
            self.crashed = exc
            log.exception("writer crashed")

    def _write(self, key: str, value: bytes) -> None:
        try:
            result = self.client.put(key, value)
        except Indeterminate as exc:
            self.indeterminate += 1
            self.errors.append(f"PUT {key}: {exc}")
            self.writes.indeterminate(key, value)
        except RaftKVError as exc:
            self.errors.append(f"PUT {key}: {exc}")
            if not retryable(exc):
                self.unexpected.append(f"PUT {key}: {exc}")
            self.failed += 1
            self.writes.not_applied()
        else:
            self.acks += 1
            self.ack_times.append(time.monotonic())
            self.writes.acked(key, value, result.revision)
