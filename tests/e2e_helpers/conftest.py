"""Unit tests of the real-cluster e2e helpers (``e2e/cluster/raftkv_e2e``).

They need no cluster: output parsing, the write-log checker and the object rules are
tested on hand-built input, and the port-forward and probe logic against
``fake_kubectl.py``, a stand-in that behaves like kubectl on loopback.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
E2E_CLUSTER = HERE.parents[1] / "e2e" / "cluster"
if str(E2E_CLUSTER) not in sys.path:
    sys.path.insert(0, str(E2E_CLUSTER))


@pytest.fixture
def fake_kubectl(tmp_path: Path) -> str:
    """An executable ``kubectl`` that runs fake_kubectl.py with this interpreter."""
    path = tmp_path / "kubectl"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "fake_kubectl.py"}" "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)
