"""Local end-to-end run: the real operator, the Kubernetes stand-in from
``tests/operator`` and real ``raftkv serve`` processes played by ``kubelet.py``.

Opt-in: ``pytest e2e/local`` (or ``-m e2e``). It needs no cluster, only loopback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
OPERATOR_TESTS = HERE.parents[1] / "tests" / "operator"
for path in (str(HERE), str(OPERATOR_TESTS)):
    if path not in sys.path:
        sys.path.insert(0, path)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end run with real member processes")
