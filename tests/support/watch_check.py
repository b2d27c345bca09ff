"""Watchers that survive member loss, and the checker of what they saw.

A `Watcher` is a thread holding one `GET /v1/watch` stream on a prefix; when the stream
breaks (a member killed, paused, cut off) it watches again on the next member from the
last revision it knows complete + 1, as a client should. It records every event.

`check_watcher` proves, for one watcher: events come in revision order, none twice
(by revision and key), replaying them gives exactly the final state, and every write
that was acknowledged (key, value) appears among them.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import httpx


@dataclass
class Watcher:
    endpoints: Sequence[str]
    start: int
    prefix: str
    events: list[tuple[int, str, str, str]] = field(default_factory=list)
    """(mod_revision, "PUT" | "DELETE", key, value) in the order received."""
    seen_rev: int = 0
    reconnects: int = 0
    error: str = ""
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start_thread(self) -> None:
        self.thread = threading.Thread(target=self.run, daemon=True, name="watcher")
        self.thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def run(self) -> None:
        i = 0
        next_rev = self.start
        while not self.stop.is_set():
            url = self.endpoints[i % len(self.endpoints)]
            try:
                with (
                    httpx.Client(timeout=httpx.Timeout(3.0, read=2.0)) as h,
                    h.stream(
                        "GET",
                        f"{url}/v1/watch",
                        params={
                            "key": self.prefix,
                            "prefix": "true",
                            "start_revision": next_rev,
                            "heartbeat": 0.5,
                        },
                    ) as r,
                ):
                    if r.status_code != 200:
                        raise httpx.HTTPError(f"status {r.status_code}")
                    for line in r.iter_lines():
                        if self.stop.is_set():
                            return
                        if line.strip():
                            next_rev = self._take(line, next_rev)
            except (httpx.HTTPError, OSError):
                pass
            except AssertionError as exc:
                self.error = str(exc)
                return
            i += 1
            self.reconnects += 1
            self.stop.wait(0.05)

    def _take(self, line: str, next_rev: int) -> int:
        msg = json.loads(line)
        assert not msg.get("canceled"), f"watch cancelled: {msg}"
        rev = int(msg["header"]["revision"])
        for ev in msg.get("events", ()):
            kv = ev["kv"]
            self.events.append(
                (
                    int(kv["mod_revision"]),
                    ev["type"],
                    base64.b64decode(kv["key"]).decode(),
                    base64.b64decode(kv["value"]).decode(),
                )
            )
        self.seen_rev = max(self.seen_rev, rev)
        return max(next_rev, rev + 1)


def check_watcher(
    w: Watcher, final: dict[str, str], acknowledged: Iterable[tuple[str, str]]
) -> list[str]:
    """What is wrong with what `w` saw (empty: nothing). `final` is the key space under
    the prefix at the end (key -> value); `acknowledged` the (key, value) of every
    write whose client got a success."""
    problems: list[str] = []
    if w.error:
        problems.append(w.error)
    revs = [e[0] for e in w.events]
    if revs != sorted(revs):
        problems.append("events out of revision order")
    seen = {(e[0], e[2]) for e in w.events}
    if len(seen) != len(w.events):
        problems.append("an event was delivered twice")
    state: dict[str, str] = {}
    for _, typ, key, value in w.events:
        if typ == "PUT":
            state[key] = value
        else:
            state.pop(key, None)
    if state != final:
        diff = {k for k in set(state) | set(final) if state.get(k) != final.get(k)}
        problems.append(f"replayed view differs from the final state on {sorted(diff)[:5]}")
    puts = {(e[2], e[3]) for e in w.events if e[1] == "PUT"}
    lost = [kv for kv in acknowledged if kv not in puts]
    if lost:
        problems.append(f"{len(lost)} acknowledged writes never seen, e.g. {lost[:3]}")
    return problems
