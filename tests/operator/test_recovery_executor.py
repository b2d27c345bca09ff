"""The executor's side of the quorum-loss recovery: one write per action, the record
with a resourceVersion precondition, refusals posted once per distinct message."""

from __future__ import annotations

from test_executor import run

from raftkv_operator.executor import Outcome
from raftkv_operator.recovery_model import (
    ANNOTATION,
    FORCE_POD_ENV,
    ClearForceAnnotation,
    Recovery,
    RecoveryReason,
    RefuseRecovery,
    SetForcePod,
    UpdateRecovery,
)
from raftkv_operator.recovery_status import recovery_from_status

RECORD = Recovery(0, 1, 7, 100, 95, "auto", 5_000.0)


def test_the_record_is_written_with_the_read_resource_version_and_clears_changes() -> None:
    action = UpdateRecovery(
        RECORD, RecoveryReason.STARTED, "forcing", clear_changes=True, warning=True
    )
    result, kube, _, events = run(action)
    assert result.outcome is Outcome.ACTED
    ((op, patch, rv),) = kube.calls
    assert (op, rv) == ("status", "7")
    assert recovery_from_status(patch) == RECORD
    assert patch["inFlight"] is None
    assert patch["restartInFlight"] is None
    assert events == [("Warning", "RecoveryStarted", "forcing")]


def test_the_template_names_one_pod_at_the_same_revision() -> None:
    result, kube, _, events = run(SetForcePod("kv-0", ""))
    assert result.outcome is Outcome.ACTED
    ((op, name, template, strategy),) = kube.calls
    assert (op, name, strategy) == ("sts_template", "kv", {"type": "OnDelete"})
    assert {"name": FORCE_POD_ENV, "value": "kv-0"} in template["spec"]["containers"][0]["env"]
    assert events[0][1] == "ForcingNewCluster"
    result, kube, _, _ = run(SetForcePod(None, "not-this-one"))
    assert result.outcome is Outcome.RETRY  # planned for another spec: plan again
    assert kube.calls == []


def test_the_annotation_is_removed() -> None:
    result, kube, _, _ = run(ClearForceAnnotation("recorded"))
    assert result.outcome is Outcome.ACTED
    assert kube.calls == [("remove_annotation", "kv", ANNOTATION)]


def test_a_refusal_is_posted_once_per_message() -> None:
    refusal = RefuseRecovery(RecoveryReason.REFUSED, "quorum is healthy", idle=True)
    result, kube, _, events = run(refusal)
    assert result.outcome is Outcome.DONE
    assert kube.calls == []
    assert events == [("Warning", "RecoveryRefused", "quorum is healthy")]
    already = {
        "conditions": [
            {"type": "Progressing", "reason": "RecoveryRefused", "message": "quorum is healthy"}
        ]
    }
    result, _, _, events = run(refusal, status=already)
    assert events == []
    waiting = RefuseRecovery(RecoveryReason.WAITING, "lost for 3s", event=False)
    result, _, _, events = run(waiting)
    assert result.outcome is Outcome.WAIT
    assert events == []
