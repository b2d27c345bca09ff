"""A client that keeps one lease alive through faults, and the check of its promise.

The keeper grants a lease, attaches a key, and sends a keep-alive every TTL/3 to any
member that answers (moving on when one does not). It records the longest gap
between two answered keep-alives. The promise to check: if that gap never reached
the TTL, the lease was never lost and its key is still there at the end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx


@dataclass
class LeaseKeeper:
    endpoints: Sequence[str]
    key: str
    ttl: int = 5
    lease: int = 0
    lost: str = ""
    """The answer that said the lease is gone, if one did."""
    longest_gap: float = 0.0
    renewals: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        with httpx.Client(base_url=self.endpoints[0], timeout=5) as h:
            r = h.post("/v1/leases", json={"ttl": self.ttl})
            r.raise_for_status()
            self.lease = int(r.json()["id"])
            h.put(f"/v1/kv/{self.key}", params={"lease": self.lease}, content=b"held")
        self.thread = threading.Thread(target=self._run, daemon=True, name="lease-keeper")
        self.thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def _run(self) -> None:
        last_ok = time.monotonic()
        i = 0
        while not self.stop.is_set():
            url = self.endpoints[i % len(self.endpoints)]
            try:
                r = httpx.post(f"{url}/v1/leases/{self.lease}/keepalive", timeout=1.0)
            except httpx.HTTPError:
                i += 1
                continue
            now = time.monotonic()
            if r.status_code == 404:
                self.lost = r.text
                return
            if r.status_code != 200:
                i += 1
                self.stop.wait(0.05)
                continue
            self.longest_gap = max(self.longest_gap, now - last_ok)
            last_ok = now
            self.renewals += 1
            self.stop.wait(self.ttl / 3)

    def problems(self, endpoints: Sequence[str]) -> list[str]:
        """After `close`: what broke the promise (empty: nothing, or it did not apply)."""
        if self.longest_gap >= self.ttl:
            return []  # the client itself went without answers for a TTL: no promise
        if self.lost:
            return [f"lease {self.lease} lost while kept alive: {self.lost}"]
        for url in endpoints:
            try:
                r = httpx.get(f"{url}/v1/kv/{self.key}", timeout=3)
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                return []
            return [f"the key of kept-alive lease {self.lease} is gone ({r.status_code})"]
        return ["no member answered the lease check"]
