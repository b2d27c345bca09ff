"""Turning TLS on or off for a running cluster (``tls_transition.py``): the decision
table, what each phase renders into the pod template, and hypothesis properties over
every pair of settings (phase order, no phase before the previous roll completed,
every pair of neighbouring phases able to talk both ways, resume from status or from
the template label, the reverse transition)."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftkv_operator import objects as o
from raftkv_operator import tls
from raftkv_operator import tls_transition as TT

LABELS = ["", "client", "peer", "client-peer"]
DONE = TT.Progress(roll_complete=True, peer_urls=("https://kv-0:2380", "https://kv-1:2380"))
PLAIN_URLS = ("http://kv-0:2380", "http://kv-1:2380")
ROLLING = TT.Progress(roll_complete=False)


def tr(source: str, target: str, phase: str) -> TT.Transition:
    return TT.Transition(source, target, phase)


@pytest.mark.parametrize(
    ("desired", "running", "record", "progress", "expected"),
    [
        # no StatefulSet yet: a new cluster starts at the desired setting
        ("client-peer", None, None, ROLLING, None),
        ("client-peer", "client-peer", None, DONE, None),
        # a running plain cluster asked for TLS: phase 1 starts at once
        ("client-peer", "", None, ROLLING, tr("", "client-peer", TT.ACCEPT_BOTH)),
        # a phase waits for its roll
        ("client-peer", "", tr("", "client-peer", TT.ACCEPT_BOTH), ROLLING, None),
        (
            "client-peer",
            "",
            tr("", "client-peer", TT.ACCEPT_BOTH),
            DONE,
            tr("", "client-peer", TT.ADVERTISE),
        ),
        # Advertise → Final only once the registry has the new peer URLs
        (
            "client-peer",
            "",
            tr("", "client-peer", TT.ADVERTISE),
            TT.Progress(True, PLAIN_URLS),
            tr("", "client-peer", TT.ADVERTISE),
        ),
        (
            "client-peer",
            "",
            tr("", "client-peer", TT.ADVERTISE),
            DONE,
            tr("", "client-peer", TT.FINAL),
        ),
        ("client-peer", "client-peer", tr("", "client-peer", TT.FINAL), DONE, "end"),
        # turning off: the registry must say http before certificates go
        ("", "client-peer", None, ROLLING, tr("client-peer", "", TT.ACCEPT_BOTH)),
        ("", "", tr("client-peer", "", TT.ADVERTISE), DONE, tr("client-peer", "", TT.ADVERTISE)),
        (
            "",
            "",
            tr("client-peer", "", TT.ADVERTISE),
            TT.Progress(True, PLAIN_URLS),
            tr("client-peer", "", TT.FINAL),
        ),
        # a revert during AcceptBoth ends the transition (nothing advertises the new way)
        ("", "client-peer", tr("", "client-peer", TT.ACCEPT_BOTH), ROLLING, "end"),
    ],
)
def test_decision_table(
    desired: str,
    running: str | None,
    record: TT.Transition | None,
    progress: TT.Progress,
    expected: TT.Transition | str | None,
) -> None:
    got = TT.decide(desired, running, record, progress).transition
    if expected == "end":
        assert got is None
    elif expected is None:
        assert got == record
    else:
        assert got == expected


def test_a_changed_target_waits_for_the_running_transition() -> None:
    record = tr("", "client-peer", TT.ADVERTISE)
    decision = TT.decide("client", "", record, ROLLING)
    assert decision.transition == record
    assert decision.note is not None
    assert "finishes first" in decision.note
    # once finished, the next pass starts the next transition from where it ended
    assert TT.decide("client", "client-peer", None, ROLLING).transition == tr(
        "client-peer", "client", TT.ACCEPT_BOTH
    )


def _env(spec: tls.TLSSpec) -> dict[str, Any]:
    rkv = o.RaftKVObject("kv", "prod", "uid", spec={"replicas": 3, "tls": tls.to_spec(spec)})
    (container,) = o.pod_template(rkv)["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def _template(spec: tls.TLSSpec | None) -> dict[str, Any]:
    body: dict[str, Any] = {"replicas": 3}
    if spec is not None:
        body["tls"] = tls.to_spec(spec)
    return o.pod_template(o.RaftKVObject("kv", "prod", "uid", spec=body))


def test_turning_tls_on_renders_the_three_phases() -> None:
    base = tls.TLSSpec()
    one = _env(TT.render(base, tr("", "client-peer", TT.ACCEPT_BOTH)))
    assert one["RAFTKV_CERT_FILE"]
    assert one["RAFTKV_PEER_CERT_FILE"]
    assert one["RAFTKV_CLIENT_ACCEPT_PLAIN"] == one["RAFTKV_PEER_ACCEPT_PLAIN"] == "true"
    assert one["RAFTKV_ADVERTISE_PEER_URL"].startswith("http://")
    assert one["RAFTKV_ADVERTISE_CLIENT_URL"].startswith("http://")
    assert one["RAFTKV_DISCOVERY_ENDPOINTS"].startswith("http://")
    two = _env(TT.render(base, tr("", "client-peer", TT.ADVERTISE)))
    assert two["RAFTKV_CLIENT_ACCEPT_PLAIN"] == two["RAFTKV_PEER_ACCEPT_PLAIN"] == "true"
    assert two["RAFTKV_ADVERTISE_PEER_URL"].startswith("https://")
    assert two["RAFTKV_DISCOVERY_ENDPOINTS"].startswith("https://")
    three = _env(TT.render(base, tr("", "client-peer", TT.FINAL)))
    assert "RAFTKV_CLIENT_ACCEPT_PLAIN" not in three
    assert "RAFTKV_PEER_ACCEPT_PLAIN" not in three
    # probes follow the advertised client scheme
    probe = _template(TT.render(base, tr("", "client-peer", TT.ACCEPT_BOTH)))["spec"]["containers"][
        0
    ]["readinessProbe"]
    assert probe["httpGet"]["scheme"] == "HTTP"
    probe = _template(TT.render(base, tr("", "client-peer", TT.ADVERTISE)))["spec"]["containers"][
        0
    ]["readinessProbe"]
    assert probe["httpGet"]["scheme"] == "HTTPS"


def test_turning_tls_off_keeps_certificates_until_final() -> None:
    base = tls.TLSSpec()
    for phase in (TT.ACCEPT_BOTH, TT.ADVERTISE):
        spec = TT.render(base, tr("client-peer", "", phase))
        volumes = {v["name"] for v in _template(spec)["spec"]["volumes"]}
        assert {tls.SERVER_VOLUME, tls.PEER_VOLUME} <= volumes
    final = TT.render(base, tr("client-peer", "", TT.FINAL))
    assert not final.enabled  # rendered as no spec.tls at all


# --------------------------------------------------------------------------- properties

labels = st.sampled_from(LABELS)


def _setting(spec: tls.TLSSpec | None, port: str) -> tuple[bool, bool, bool]:
    """(certificates, accepts plain, advertised https) of ``port``."""
    if spec is None:
        return (False, True, False)
    mounted = spec.client if port == "client" else spec.peer
    plain = spec.client_accept_plain if port == "client" else spec.peer_accept_plain
    https = spec.client_scheme_on if port == "client" else spec.peer_scheme_on
    return (mounted, plain or not mounted, https)


def _accepts(spec: tls.TLSSpec | None, port: str, https: bool) -> bool:
    mounted, plain, _ = _setting(spec, port)
    return mounted if https else plain


def _stages(source: str, target: str) -> list[tls.TLSSpec | None]:
    base = tls.TLSSpec()

    def plain(label: str) -> tls.TLSSpec | None:
        return tls.spec_of({"tls": tls.to_spec(TT.render(base, tr(label, label, TT.FINAL)))})

    phases = [
        tls.spec_of({"tls": tls.to_spec(TT.render(base, tr(source, target, p)))}) for p in TT.PHASES
    ]
    return [plain(source), *phases]


@given(source=labels, target=labels)
def test_neighbouring_phases_talk_both_ways(source: str, target: str) -> None:
    """During the roll from one stage to the next, members of both stages live side by
    side and may be dialled with either stage's scheme (a peer that has not learnt the
    new URL yet dials the old way): each stage accepts both. This is what makes a roll
    of one member at a time safe at every step."""
    stages = _stages(source, target)
    for before, after in itertools.pairwise(stages):
        for port in ("client", "peer"):
            schemes = {_setting(before, port)[2], _setting(after, port)[2]}
            for scheme_https in schemes:
                assert _accepts(before, port, scheme_https), (source, target, port)
                assert _accepts(after, port, scheme_https), (source, target, port)


@given(source=labels, target=labels)
def test_every_phase_changes_the_template_and_final_is_the_target(source: str, target: str) -> None:
    """Each phase is a new member revision (so rolling.py rolls it), and Final renders
    exactly what a cluster created with the target runs (nothing rolls after it)."""
    if source == target:
        return
    stages = _stages(source, target)
    revisions = [_template(s)["metadata"]["labels"][o.REVISION_LABEL] for s in stages]
    assert revisions[0] != revisions[1] != revisions[2] != revisions[3]
    direct = tls.spec_of({"tls": tls.to_spec(tls.TLSSpec())}) if target else None
    if target == "client-peer":
        assert revisions[3] == _template(direct)["metadata"]["labels"][o.REVISION_LABEL]


@given(
    source=labels,
    target=labels,
    steps=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=40),
    restarts=st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_phase_order_under_any_progress_and_restarts(
    source: str,
    target: str,
    steps: list[tuple[bool, bool]],
    restarts: list[bool],
) -> None:
    """Phases only ever go AcceptBoth → Advertise → Final → done, one per completed roll,
    Final only with the registry in the new scheme; an operator restarted between any
    two passes (memory = status, or the template label if status was lost) resumes
    where it was."""
    if source == target:
        return
    new_scheme = "https://" if "peer" in target else "http://"
    old_scheme = "https://" if "peer" in source else "http://"
    record = TT.decide(target, source, None, ROLLING).transition
    assert record == tr(source, target, TT.ACCEPT_BOTH)
    seen = [record.phase]
    for (complete, registry_new), restart in zip(steps, restarts, strict=False):
        if record is None:
            break
        if restart:  # resume from status, or from the template label
            resumed = TT.from_status(record.to_status())
            assert resumed == record
            label = TT.render(tls.TLSSpec(), record).transition_label
            if label:
                assert TT.from_label(label) == record
            record = resumed
        urls = tuple(f"{new_scheme if registry_new else old_scheme}kv-{k}:2380" for k in range(3))
        after = TT.decide(target, source, record, TT.Progress(complete, urls)).transition
        if not complete:
            assert after == record, "no phase before the previous roll completed"
        if after is not None and after != record:
            assert TT.PHASES.index(after.phase) == TT.PHASES.index(record.phase) + 1
            if after.phase == TT.FINAL:
                assert registry_new or new_scheme == old_scheme
            seen.append(after.phase)
        elif after is None:
            assert record.phase == TT.FINAL
            assert complete
            seen.append("done")
        record = after
    assert seen == ["AcceptBoth", "Advertise", "Final", "done"][: len(seen)]


@given(source=labels, target=labels, phase=st.sampled_from(TT.PHASES))
def test_records_round_trip_and_labels_are_valid(source: str, target: str, phase: str) -> None:
    record = tr(source, target, phase)
    assert TT.from_status(record.to_status()) == record
    label = record.to_label()
    assert len(label) <= 63
    assert re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", label)
    assert TT.from_label(label) == record


@given(source=labels, target=labels)
def test_the_reverse_transition_mirrors_the_forward_one(source: str, target: str) -> None:
    """Turning a setting off goes through the same phases with the schemes swapped:
    AcceptBoth of the reverse advertises what Advertise of the forward one does."""
    forward = TT.render(tls.TLSSpec(), tr(source, target, TT.ADVERTISE))
    reverse = TT.render(tls.TLSSpec(), tr(target, source, TT.ACCEPT_BOTH))
    assert forward.client_scheme_on == reverse.client_scheme_on
    assert forward.peer_scheme_on == reverse.peer_scheme_on
    assert (forward.client, forward.peer) == (reverse.client, reverse.peer)
    assert forward.client_accept_plain == reverse.client_accept_plain
    assert forward.peer_accept_plain == reverse.peer_accept_plain
