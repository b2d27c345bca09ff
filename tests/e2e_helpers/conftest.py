"""Unit tests of the real-cluster e2e helpers (``e2e/cluster/raftkv_e2e``).

They need no cluster: output parsing, the write-log checker and the object rules are
tested on hand-built input, and the port-forward and probe logic against
``support/fake_kubectl.py``, a stand-in that behaves like kubectl on loopback.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

import support.fake_kubectl

# The helpers under test (``raftkv_e2e``) import from here: e2e/cluster is on pytest's
# ``pythonpath``.
E2E_CLUSTER = Path(__file__).resolve().parents[2] / "e2e" / "cluster"
FAKE_KUBECTL = Path(support.fake_kubectl.__file__)


@pytest.fixture
def fake_kubectl(tmp_path: Path) -> str:
    """An executable ``kubectl`` that runs support/fake_kubectl.py with this interpreter."""
    path = tmp_path / "kubectl"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_KUBECTL}" "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)
