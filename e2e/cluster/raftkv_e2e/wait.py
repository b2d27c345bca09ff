"""Polls with deadlines: the suite never sleeps a fixed time waiting for something."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import httpx

from raftkv.client import RaftKVError
from raftkv_e2e.kubectl import ToolError
from raftkv_e2e.portforward import PortForwardError

log = logging.getLogger("e2e.wait")
T = TypeVar("T")

#: Errors a poll shrugs off until its deadline: the API server or a member being
#: briefly unavailable is exactly what the suite provokes.
TRANSIENT: tuple[type[Exception], ...] = (
    ToolError,
    RaftKVError,
    PortForwardError,
    httpx.HTTPError,
    OSError,
)


class NotYet(Exception):
    """A poll's "not yet, because ...": the reason is reported if the deadline passes."""


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    interval: float = 2.0,
) -> T:
    """Call ``probe`` until it returns something truthy; fail at the deadline with the
    last reason it gave (:class:`NotYet` or a transient error). An ``AssertionError``
    from ``probe`` means waiting cannot help and fails at once."""
    started = time.monotonic()
    deadline = started + timeout
    last = "never polled"
    while True:
        try:
            result = probe()
        except NotYet as exc:
            reason = str(exc)
        except TRANSIENT as exc:
            reason = f"{type(exc).__name__}: {exc}"
        else:
            if result:
                log.info("%s: done after %.1fs", what, time.monotonic() - started)
                return result
            reason = "not yet"
        if reason != last:
            log.info("waiting for %s: %s", what, reason)
            last = reason
        now = time.monotonic()
        if now >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {last}")
        time.sleep(min(interval, deadline - now))
