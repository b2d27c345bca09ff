"""raftkv on a real Kubernetes cluster, end to end, as a user meets it.

One story in steps (a failed step skips the rest; the fixture always cleans up):
install the operator (``kubectl apply -k manifests/`` or ``helm install``), create a
3-member RaftKV and wait until it is Available, write and read through the client
Service, scale 3 → 5 → 3 with ``kubectl scale`` under continuous writes, delete the
leader's pod, roll a configuration change through the members, check that every
acknowledged write survived, that ``kubectl get rkv``
shows leader/term/commit and that every member's ``/metrics`` is sane, then uninstall
and check that nothing but retained PVCs is left.

Every wait is a poll with a deadline (``RAFTKV_E2E_TIMEOUT``, generous by default:
image pulls and volume provisioning take minutes on some clusters).
"""

from __future__ import annotations

import json
import logging

import pytest
from raftkv_e2e import state
from raftkv_e2e.cluster import Scenario
from raftkv_e2e.config import CRD_NAME, MEMBER_REVISION_LABEL, step_timeout
from raftkv_e2e.metrics import MemberMetrics, check_members
from raftkv_e2e.printer import COLUMNS, RaftKVRow
from raftkv_e2e.wait import NotYet, wait_for

from raftkv.client import Client, ListPage, PreconditionFailed

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(step_timeout())]
log = logging.getLogger("e2e")

#: Fewer acknowledged background writes than this means the writer hardly ran, and the
#: durability check would prove little.
MIN_BACKGROUND_ACKS = 20


def _pods(s: Scenario, n: int) -> list[str]:
    return [f"{s.name}-{k}" for k in range(n)]


def _pvcs(s: Scenario, n: int) -> list[str]:
    return sorted(f"data-{s.name}-{k}" for k in range(n))


def test_operator_is_installed(scenario: Scenario) -> None:
    crd = scenario.kubectl.get("customresourcedefinitions.apiextensions.k8s.io", CRD_NAME)
    assert crd is not None, f"CRD {CRD_NAME} missing after the install"
    conds = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])}
    assert conds.get("Established") == "True", conds
    assert "rkv" in crd["spec"]["names"].get("shortNames", [])
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    columns = tuple(["NAME", *(c["name"].upper() for c in version["additionalPrinterColumns"])])
    assert columns == COLUMNS
    assert "scale" in version.get("subresources", {})

    dep = scenario.installer.operator_deployment()
    images = {c["name"]: c["image"] for c in dep["spec"]["template"]["spec"]["containers"]}
    assert scenario.config.image in images.values(), images


def test_three_members_become_available(scenario: Scenario) -> None:
    scenario.prepare_namespace()
    scenario.preflight()
    scenario.create(3)
    scenario.wait_statefulset_image()
    obj = scenario.wait_in_sync(3, timeout=scenario.config.startup_timeout)
    assert state.conditions(obj)["Available"]["status"] == "True"
    assert state.conditions(obj)["Ready"]["status"] == "True"

    # The objects the operator owns, under the names naming.py gives them.
    k, ns, name = scenario.kubectl, scenario.ns, scenario.name
    for kind, child in (
        ("services", f"{name}-client"),
        ("services", f"{name}-peer"),
        ("secrets", f"{name}-peer-secret"),
        ("configmaps", f"{name}-bootstrap"),
        ("poddisruptionbudgets.policy", name),
        ("statefulsets.apps", name),
    ):
        child_obj = k.get(kind, child, ns)
        assert child_obj is not None, f"{kind}/{child} missing"
        owners = {ref.get("uid") for ref in child_obj["metadata"].get("ownerReferences", [])}
        assert scenario.uid in owners, f"{kind}/{child} is not owned by the RaftKV"
    peer = k.get("services", f"{name}-peer", ns)
    assert peer is not None
    assert peer["spec"].get("clusterIP") == "None"
    assert peer["spec"].get("publishNotReadyAddresses") is True

    def bound() -> bool:
        claims = k.list("persistentvolumeclaims", ns, f"app.kubernetes.io/instance={name}")
        phases = {c["metadata"]["name"]: c.get("status", {}).get("phase") for c in claims}
        if sorted(phases) != _pvcs(scenario, 3) or set(phases.values()) != {"Bound"}:
            raise NotYet(f"PVCs {phases}")
        return True

    wait_for("the members' PVCs to be bound", bound, scenario.config.timeout)


def test_write_and_read_through_the_client_service(scenario: Scenario) -> None:
    kv = scenario.kv
    rev = kv.put("e2e/m/hello", b"world")
    got = kv.get("e2e/m/hello")
    assert got is not None
    assert (got.value, got.revision) == (b"world", rev)
    binary = bytes(range(256))
    kv.put("e2e/m/binary", binary)
    got = kv.get("e2e/m/binary")
    assert got is not None
    assert got.value == binary

    # Conditional writes go through the client directly: its retries keep one request
    # id, so a retried compare-and-swap is still applied at most once.
    client: Client = kv.client
    cas = client.put("e2e/m/hello", b"again", if_match=rev)
    scenario.writes.acked("e2e/m/hello", b"again", cas.revision)
    assert cas.revision > rev
    assert cas.prev_revision == rev
    with pytest.raises(PreconditionFailed) as stale:
        client.put("e2e/m/hello", b"stale", if_match=rev)
    assert stale.value.current_revision == cas.revision
    with pytest.raises(PreconditionFailed):
        client.put("e2e/m/hello", b"create-only", if_none_match=True)

    def local_read_caught_up() -> bool:
        # A serializable read answers from whichever member the forward reaches,
        # without a quorum round: it may lag for a moment, never forever.
        got = client.get("e2e/m/hello", consistency="serializable")
        if got is None or got.value != b"again":
            raise NotYet(f"serializable read: {got}")
        return True

    wait_for("a serializable read to see the write", local_read_caught_up, 30, 0.5)

    kv.put("e2e/m/deleted", b"soon gone")
    kv.delete("e2e/m/deleted")
    assert kv.get("e2e/m/deleted") is None

    for i in range(30):
        kv.put(f"e2e/m/batch/{i:03d}", f"value {i}".encode())
    listed = kv.retrying("list", lambda c: c.list("e2e/m/batch/", limit=100))
    assert [item.key for item in listed] == [f"e2e/m/batch/{i:03d}" for i in range(30)]
    assert not scenario.writes.check(kv.read)


def test_scale_3_to_5_to_3_under_writes(scenario: Scenario) -> None:
    ids_before = scenario.member_ids()
    writer = scenario.start_writer()
    wait_for("the background writer's first writes", lambda: writer.acks >= 5, 120, 1)

    scenario.scale(5)
    scenario.wait_in_sync(5)
    assert scenario.pvc_names() == _pvcs(scenario, 5)
    reasons = scenario.event_reasons()
    assert {"LearnerAdded", "LearnerPromoted"} <= set(reasons), reasons
    scenario.kv.put("e2e/m/after-scale-up", b"5 members")

    scenario.scale(3)
    obj = scenario.wait_in_sync(3)
    ids_after = state.member_ids(obj)
    assert ids_after == ids_before, "ordinals 0-2 must keep their members through 3→5→3"

    def scaled_claims_deleted() -> bool:
        names = scenario.pvc_names()
        if names != _pvcs(scenario, 3):
            raise NotYet(f"PVCs {names}")
        return True

    # The operator deletes the claims of removed ordinals so that a later scale-up
    # never brings back a member with stale Raft state.
    wait_for("PVCs of ordinals 3 and 4 to be deleted", scaled_claims_deleted, 120)
    reasons = scenario.event_reasons()
    assert {"MemberRemovedFromRaft", "PVCDeleted"} <= set(reasons), reasons
    scenario.kv.put("e2e/m/after-scale-down", b"3 members")
    assert writer.crashed is None, writer.crashed
    assert not writer.unexpected, writer.unexpected
    log.info("after 3→5→3: %s", writer.summary())


def test_deleting_the_leaders_pod(scenario: Scenario) -> None:
    writer = scenario.start_writer()
    leader_id, leader_pod, term = scenario.leader()
    pods = {p["metadata"]["name"]: p["metadata"]["uid"] for p in scenario.pods()}
    old_uid = pods[leader_pod]
    ids_before = scenario.member_ids()
    acks_before = writer.acks
    log.info("deleting pod %s (member %d leads in term %d)", leader_pod, leader_id, term)
    scenario.kubectl.delete("pod", leader_pod, scenario.ns)

    def replaced() -> bool:
        pod = scenario.kubectl.get("pods", leader_pod, scenario.ns)
        if pod is None or pod["metadata"]["uid"] == old_uid:
            raise NotYet(f"pod {leader_pod} not re-created yet")
        if not state.pod_ready(pod):
            raise NotYet(f"pod {leader_pod} re-created, not ready")
        return True

    wait_for(f"pod {leader_pod} to come back", replaced, scenario.config.timeout)
    obj = scenario.wait_in_sync(3)
    assert state.member_ids(obj) == ids_before, "a deleted pod must rejoin as the same member"
    _, new_leader, new_term = scenario.leader()
    assert new_term > term, f"no new election after the leader's pod was deleted ({term})"
    scenario.kv.put("e2e/m/after-leader-kill", new_leader.encode())
    wait_for(
        "background writes to go on after the leader's pod was deleted",
        lambda: writer.acks >= acks_before + 10,
        scenario.config.timeout,
        1,
    )
    log.info("leader %s → %s, term %d → %d", leader_pod, new_leader, term, new_term)


def test_rolling_config_change_under_writes(scenario: Scenario) -> None:
    """A Raft setting changes the pod template, so the operator rolls the members one
    at a time (followers first, the leader last, after moving leadership away) while
    the writer goes on; every member keeps its id and every pod ends at the new
    revision."""
    writer = scenario.start_writer()
    ids_before = scenario.member_ids()
    _, first_leader, _ = scenario.leader()
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in scenario.pods()}
    acks_before = writer.acks
    patch = {"spec": {"raft": {"snapshotCount": 20000}}}
    log.info("kubectl patch rkv/%s %s", scenario.name, patch)
    scenario.kubectl.api(
        "patch", "rkv", scenario.name, "-n", scenario.ns, "--type=merge", "-p", json.dumps(patch)
    )
    restarted: list[str] = []

    def rolled() -> bool:
        pods = scenario.pods()
        for p in pods:
            name = p["metadata"]["name"]
            if p["metadata"]["uid"] != uids.get(name) and name not in restarted:
                restarted.append(name)
        why = state.rollout_not_done(scenario.raftkv(), pods, MEMBER_REVISION_LABEL)
        if why or len(restarted) < len(uids):
            raise NotYet(why or f"restarted so far: {restarted}")
        return True

    wait_for("the rolling change to finish", rolled, 3 * scenario.config.timeout, 3)
    obj = scenario.wait_in_sync(3)
    assert state.member_ids(obj) == ids_before, "a rolled pod must come back as the same member"
    assert sorted(restarted) == sorted(uids), f"each pod restarts once: {restarted}"
    assert restarted[-1] == first_leader, f"the leader ({first_leader}) goes last: {restarted}"
    wait_for(
        "background writes to go on after the roll",
        lambda: writer.acks >= acks_before + 10,
        scenario.config.timeout,
        1,
    )
    log.info("rolled %s; %s", restarted, writer.summary())


def test_every_acknowledged_write_survived(scenario: Scenario) -> None:
    writer = scenario.stop_writer()
    log.info("%s", writer.summary())
    assert writer.crashed is None, writer.crashed
    assert not writer.unexpected, writer.unexpected
    assert writer.acks >= MIN_BACKGROUND_ACKS, writer.summary()

    problems = scenario.writes.check(scenario.kv.read)
    assert not problems, f"{len(problems)} violations, e.g. {problems[:10]}"

    listed: list[tuple[str, bytes]] = []
    start_after: str | None = None
    while True:

        def page_after(client: Client, after: str | None = start_after) -> ListPage:
            return client.list_page("e2e/", 1000, start_after=after)

        page = scenario.kv.retrying("list e2e/", page_after)
        listed += [(item.key, item.value) for item in page.items]
        if not page.more or not page.items:
            break
        start_after = page.items[-1].key
    phantoms = scenario.writes.check_listing("e2e/", listed)
    assert not phantoms, phantoms[:10]
    log.info(
        "%d acknowledged writes readable, %d indeterminate, %d keys listed",
        scenario.writes.acked_count,
        scenario.writes.indeterminate_count,
        len(listed),
    )


def test_printer_columns_show_leader_term_and_commit(scenario: Scenario) -> None:
    newest = scenario.writes.max_revision()

    def shown() -> RaftKVRow:
        row = scenario.printer_row()
        _, leader, term = scenario.leader()
        if (row.replicas, row.ready) != (3, 3):
            raise NotYet(f"REPLICAS/READY {row.replicas}/{row.ready}")
        if row.leader != leader or row.term != term:
            raise NotYet(f"LEADER/TERM {row.leader}/{row.term}, members say {leader}/{term}")
        if row.commit is None or row.commit < newest:
            raise NotYet(f"COMMIT {row.commit} < newest acknowledged revision {newest}")
        return row

    row = wait_for("`kubectl get rkv` to show the cluster", shown, scenario.config.timeout)
    assert row.name == scenario.name
    assert row.age
    log.info("kubectl get rkv: %s", row)


def test_metrics_from_every_member(scenario: Scenario) -> None:
    newest = scenario.writes.max_revision()

    def healthy() -> dict[str, MemberMetrics]:
        scraped = {pod: scenario.scrape(pod) for pod in _pods(scenario, 3)}
        problems = check_members(scraped, voters=3)
        if problems:
            raise NotYet("; ".join(problems))
        return scraped

    scraped = wait_for("sane /metrics on every member", healthy, scenario.config.timeout)
    commits = {pod: m.value("raftkv_commit_index") or 0 for pod, m in scraped.items()}
    assert max(commits.values()) >= newest, (commits, newest)


def test_uninstall_leaves_no_orphans(scenario: Scenario) -> None:
    if scenario.config.keep:
        pytest.skip("RAFTKV_E2E_KEEP=1: raftkv left installed for debugging")
    scenario.kv.close()
    scenario.forward.close()
    retained = scenario.delete_raftkv()
    allowed = {f"PersistentVolumeClaim/{pvc}" for pvc in _pvcs(scenario, 5)}
    assert set(retained) <= allowed, f"unexpected objects retained: {retained}"
    log.info("after deleting the RaftKV: PVCs retained by policy: %s", retained or "none")
    scenario.delete_namespace()
    scenario.uninstall()
    assert scenario.kubectl.get("customresourcedefinitions.apiextensions.k8s.io", CRD_NAME) is None
