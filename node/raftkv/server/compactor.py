"""Automatic compaction, as etcd's `--auto-compaction-mode` / `--auto-compaction-retention`.

Pure decisions, driven by the leader's ticker with a monotonic clock; the leader
proposes the chosen compaction through Raft like a client's `POST /v1/compact`.

- periodic: keep `retention` of time. The compactor samples the store revision every
  retention/10 (at least every second, at most every hour, etcd's cadence) and
  compacts to the revision it saw `retention` ago, so reads at any revision from
  the last `retention` keep working.
- revision: keep the last `retention` revisions; checked every 5 minutes (etcd's
  interval), compacting to current - retention.

A retention of 0 turns it off. Only the leader runs it (`reset` on taking the lead);
a compaction that is lost to a leader change is simply decided again later.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")
REVISION_CHECK_INTERVAL = 300.0


def parse_retention(mode: str, text: str) -> float:
    """Seconds (periodic) or revisions (revision); ValueError with the reason."""
    t = text.strip()
    if mode == "revision":
        if not t.isdigit():
            raise ValueError(
                f"--auto-compaction-retention must be a revision count in revision mode, "
                f"got {text!r}"
            )
        return float(int(t))
    if mode != "periodic":
        raise ValueError(f"--auto-compaction-mode must be periodic or revision, got {mode!r}")
    try:
        return float(t) * 3600  # etcd: a bare number is hours
    except ValueError:
        pass
    m = _DURATION.match(t)
    if not t or m is None:
        raise ValueError(
            f"--auto-compaction-retention must be a duration like 1h, 30m or 90s, got {text!r}"
        )
    h, mi, se = (float(x) if x else 0.0 for x in m.groups())
    return h * 3600 + mi * 60 + se


@dataclass
class AutoCompactor:
    mode: str
    retention: float
    interval: float = 0.0
    _samples: deque[tuple[float, int]] = field(default_factory=deque)
    _next: float | None = None

    @staticmethod
    def from_config(mode: str, retention: str) -> AutoCompactor:
        r = parse_retention(mode, retention)
        if mode == "revision":
            return AutoCompactor(mode, r, REVISION_CHECK_INTERVAL)
        return AutoCompactor(mode, r, min(3600.0, max(1.0, r / 10)))

    @property
    def enabled(self) -> bool:
        return self.retention > 0

    def reset(self, now: float, revision: int) -> None:
        """This member just took the lead: start over (history seen by another leader
        is not ours to judge)."""
        self._samples.clear()
        self._samples.append((now, revision))
        self._next = now + self.interval

    def due(self, now: float, revision: int, compacted: int) -> int | None:
        """The revision to compact to now, if any."""
        if not self.enabled or self._next is None or now < self._next:
            return None
        self._next = now + self.interval
        if self.mode == "revision":
            target = revision - int(self.retention)
        else:
            self._samples.append((now, revision))
            target = 0
            while self._samples and self._samples[0][0] <= now - self.retention:
                target = self._samples.popleft()[1]
        return target if target > max(compacted, 0) else None
