"""Is the installed RaftKV CRD the one this operator was built for?

Helm installs a chart's ``crds/`` once and never upgrades it, so after ``helm upgrade``
a new operator can meet the CRD of an older release. Against an older schema the
apiserver prunes every status or spec field the old schema lacks, without an error,
and the operator would run on with its bookkeeping silently dropped. The CRD carries
a revision (the ``raftkv.dev/crd-revision`` annotation, bumped with every schema
change); the operator refuses to start below the revision it needs and says how to
upgrade. The decision is a pure function so the rule is tested on plain data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raftkv_operator import naming as n

CRD_NAME = f"{n.PLURAL}.{n.GROUP}"
REVISION_ANNOTATION = "raftkv.dev/crd-revision"
#: The schema revision this operator writes and reads. Keep equal to the annotation in
#: charts/raftkv/crds/raftkv.dev_raftkvs.yaml (a test checks).
REQUIRED_REVISION = 6

UPGRADE_HINT = (
    "upgrade the CRD first: kubectl apply --server-side --force-conflicts "
    "-f charts/raftkv/crds/raftkv.dev_raftkvs.yaml (or manifests/crd.yaml of this "
    "release); helm never upgrades crds/"
)


def installed_revision(crd: Mapping[str, Any]) -> int:
    """The CRD's revision; the first released CRD had no annotation and counts as 1."""
    annotations = (crd.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(REVISION_ANNOTATION)
    if value is None:
        return 1
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0  # unreadable: treat as too old rather than guess


def crd_problem(crd: Mapping[str, Any] | None) -> str | None:
    """Why this operator must not run against ``crd`` (None: it may).

    ``None`` for ``crd`` means it is not installed at all, which no operator can
    work with either. A newer revision is accepted: schema changes only add fields,
    so an older operator still reads and writes a newer CRD correctly.
    """
    if crd is None:
        return f"the CustomResourceDefinition {CRD_NAME} is not installed; {UPGRADE_HINT}"
    have = installed_revision(crd)
    if have < REQUIRED_REVISION:
        return (
            f"the installed CustomResourceDefinition {CRD_NAME} is revision {have}, "
            f"this operator needs revision {REQUIRED_REVISION} or newer; {UPGRADE_HINT}"
        )
    return None
