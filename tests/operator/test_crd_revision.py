"""The operator refuses to run against a RaftKV CRD older than the one it needs.

Helm never upgrades ``crds/``: after ``helm upgrade`` the new operator meets the old
CRD, whose schema would make the apiserver prune the fields the new operator writes.
"""

from __future__ import annotations

from typing import Any

import pytest

from raftkv_operator.crd import (
    REQUIRED_REVISION,
    REVISION_ANNOTATION,
    crd_problem,
    installed_revision,
)
from raftkv_operator.main import StartupRefused
from raftkv_operator.reconcile import OperatorConfig
from support.crd_schema import CHART_CRD, load_crd
from support.kube_emulator import EmulatorThread, KubeEmulator
from support.operator_harness import OperatorThread, crd_schema
from support.structural import check_crd


def with_revision(value: Any) -> dict[str, Any]:
    crd = load_crd()
    if value is None:
        del crd["metadata"]["annotations"][REVISION_ANNOTATION]
    else:
        crd["metadata"]["annotations"][REVISION_ANNOTATION] = value
    return crd


def test_the_shipped_crd_is_the_revision_the_operator_needs() -> None:
    assert installed_revision(load_crd(CHART_CRD)) == REQUIRED_REVISION
    assert crd_problem(load_crd(CHART_CRD)) is None


def test_a_crd_without_the_annotation_is_the_first_release() -> None:
    assert installed_revision(with_revision(None)) == 1
    problem = crd_problem(with_revision(None))
    assert problem is not None
    assert f"is revision 1, this operator needs revision {REQUIRED_REVISION}" in problem
    assert "kubectl apply --server-side" in problem
    assert "helm never upgrades crds/" in problem


@pytest.mark.parametrize(
    ("value", "allowed"),
    [(str(REQUIRED_REVISION + 1), True), (str(REQUIRED_REVISION - 1), False), ("two", False)],
)
def test_newer_revisions_run_older_and_unreadable_ones_do_not(value: str, allowed: bool) -> None:
    assert (crd_problem(with_revision(value)) is None) is allowed


def test_a_missing_crd_is_refused_with_the_way_to_install_it() -> None:
    problem = crd_problem(None)
    assert problem is not None
    assert "is not installed" in problem


def test_the_operator_stops_at_start_against_an_older_crd() -> None:
    """The real operator (kopf and all) against a stand-in serving the first CRD."""
    emulator = KubeEmulator()
    emulator.register_crd(with_revision(None), crd_schema, check_crd)
    with EmulatorThread(emulator) as server:
        operator = OperatorThread(server.url, OperatorConfig())
        with pytest.raises(StartupRefused, match="is revision 1, this operator needs"), operator:
            pass
