"""Polls with deadlines: tests never sleep a fixed time waiting for something.

The real-cluster suite keeps its own (``e2e/cluster/raftkv_e2e/wait.py``): it runs
standalone against a real cluster, with its own "not yet, because ..." reasons, logging
and a slower cadence.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError, AssertionError):
    """The deadline passed. Both a ``TimeoutError`` and an ``AssertionError``: callers
    catch either (a timed-out wait is a failed expectation)."""


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float = 30.0,
    *,
    interval: float = 0.05,
    ignore: type[Exception] | tuple[type[Exception], ...] = (),
) -> T:
    """Call ``probe`` until it returns something truthy and return that; at the
    deadline raise :class:`WaitTimeout` naming ``what`` and the last result.

    Exceptions in ``ignore`` count as "not yet" (the last one is reported at the
    deadline); any other exception from ``probe`` propagates at once.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = probe()
        except ignore as exc:
            last = exc
        else:
            if result:
                return result
            last = result
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")
        time.sleep(interval)
