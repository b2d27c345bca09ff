"""Managed-mode renewal timing on real certificates: the backdating is not lifetime.

The operator backdates every certificate it issues by ``tls.BACKDATE`` (5 minutes) so
members with a slow clock accept it. Counting that in the lifetime made a
``duration: 1m`` certificate (valid from 5 minutes before to 1 minute after issue) due
at once, and the operator reissued it on every pass. Renewal is at two thirds of the
*intended* lifetime counted from issue (cert-manager: ``renewBefore`` = duration/3
before notAfter), and the expiry warning counts the same lifetime. Certificates are
issued with ``cryptography`` and parsed back, never mocked.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv_operator import tls

DAY = 86400.0
BACKDATE = tls.BACKDATE.total_seconds()
SANS = tls.dns_names("kv", "prod", 3)
#: The CA's start; it lives ten years.
CA_START = 1_000_000_000.0
#: Issue times: any second of the CA's first eight years (its certificates end before it).
NOWS = st.integers(int(CA_START), int(CA_START + 8 * 365 * DAY)).map(float)
#: Every duration ``spec.tls.duration`` allows, from one minute to 400 days,
#: including fractional seconds (``90.5s``).
DURATIONS = st.floats(60.0, 400 * DAY, allow_nan=False, allow_infinity=False)

_CA = tls.new_ca("kv", CA_START)


def _secret(pair: tls.KeyPair) -> dict[str, Any]:
    return tls.tls_secret_object("kv", "prod", "kv-server-tls", "server-tls", pair, _CA.cert_pem)


def _validity(pair: tls.KeyPair) -> tuple[float, float]:
    info = tls.read_cert(pair.cert_pem, _CA.cert_pem)
    return info.not_before, info.not_after


@pytest.mark.parametrize("duration", ["1m", "2m", "5m", "1h"])
def test_a_short_certificate_is_not_due_when_issued_but_at_two_thirds(duration: str) -> None:
    """The regression: with the backdate counted, ``1m`` was due at issue."""
    lifetime = tls.parse_duration(duration)
    now = CA_START + 100 * DAY
    pair = tls.issue(_CA, "kv-server-tls", SANS, now, lifetime)
    assert tls.issue_reason(now, _secret(pair), _CA.cert_pem, SANS) is None
    assert tls.issue_reason(now + lifetime * 2 / 3 - 1, _secret(pair), _CA.cert_pem, SANS) is None
    due = tls.issue_reason(now + lifetime * 2 / 3, _secret(pair), _CA.cert_pem, SANS)
    assert due is not None
    assert "two thirds" in due
    not_before, not_after = _validity(pair)
    assert tls.renewal(now, not_before, not_after, BACKDATE).recheck_at == pytest.approx(
        now + lifetime * 2 / 3
    )
    state = tls.condition_for(
        tls.TLSSpec(duration=duration), now, (not_before, not_after), None, BACKDATE
    )
    assert state[:2] == ("True", "CertificatesIssued")


@settings(max_examples=60, deadline=None)
@given(now=NOWS, lifetime=DURATIONS)
def test_a_just_issued_certificate_is_never_due_and_due_after_two_thirds(
    now: float, lifetime: float
) -> None:
    pair = tls.issue(_CA, "kv-server-tls", SANS, now, lifetime)
    not_before, not_after = _validity(pair)
    assert not_before == now - BACKDATE
    # Never due, never warning, right after issue (the operator's next pass).
    for later in (now, now + 1):
        assert not tls.renewal(later, not_before, not_after, BACKDATE).renew
        assert tls.issue_reason(later, _secret(pair), _CA.cert_pem, SANS) is None
        assert not tls.expiring_soon(later, not_before, not_after, BACKDATE)
    # Due once two thirds of the duration have passed, and from then on until expiry.
    for later in (now + lifetime * 2 / 3, now + lifetime * 0.9, not_after - 0.001):
        decision = tls.renewal(later, not_before, not_after, BACKDATE)
        assert decision.renew
        assert "two thirds" in decision.reason
    # A renewal on time (a third left) never warns; a missed one does before expiry.
    assert not tls.expiring_soon(now + lifetime * 2 / 3, not_before, not_after, BACKDATE)
    assert tls.expiring_soon(not_after - 0.001, not_before, not_after, BACKDATE)


@settings(max_examples=200)
@given(now=NOWS, lifetime=DURATIONS, at=st.floats(0, 1))
def test_without_backdating_the_same_rule_holds(now: float, lifetime: float, at: float) -> None:
    """cert-manager's certificates (and anyone's with not_before = issue time)."""
    later = now + at * lifetime
    decision = tls.renewal(later, now, now + lifetime)
    assert decision.renew == (later >= now + lifetime - lifetime / 3)
    assert not tls.renewal(now, now, now + lifetime).renew
    assert not tls.expiring_soon(now, now, now + lifetime)


@given(lifetime=DURATIONS)
def test_the_warning_threshold_counts_the_intended_lifetime(lifetime: float) -> None:
    """A sixth of the intended lifetime (at most 7 days) before expiry, backdated or not."""
    not_after = 1_700_000_000.0 + lifetime
    threshold = min(7 * DAY, lifetime / 6)
    for not_before, backdate in ((not_after - lifetime, 0.0), (not_after - lifetime - 300, 300)):
        assert tls.expiring_soon(not_after - threshold * 0.99, not_before, not_after, backdate)
        assert not tls.expiring_soon(not_after - threshold * 1.01, not_before, not_after, backdate)


def test_a_backdate_at_least_as_long_as_the_validity_is_no_lifetime() -> None:
    assert tls.renewal(1000.0, 900.0, 1100.0, 200.0).renew
    assert tls.renewal(1000.0, 900.0, 1100.0, 300.0).renew


def test_the_ca_is_backdated_long_lived_and_bounds_what_it_signs() -> None:
    """The CA is never renewed by the operator; a member certificate it signs never
    outlives it (it would not verify past the CA's expiry)."""
    now = 1_700_000_000.0
    ca = tls.new_ca("kv", now)
    info = tls.read_cert(ca.cert_pem)
    assert info.not_before == now - BACKDATE
    assert info.not_after - info.not_before == tls.CA_LIFETIME.total_seconds()
    near_end = info.not_after - 30 * DAY
    pair = tls.issue(ca, "x", SANS, near_end, 90 * DAY)
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    assert cert.not_valid_after_utc == dt.datetime.fromtimestamp(info.not_after, dt.UTC)
    # Renewed at two thirds of what it got (the CA's remaining life), never late.
    not_before, not_after = tls.read_cert(pair.cert_pem).not_before, info.not_after
    decision = tls.renewal(near_end, not_before, not_after, BACKDATE)
    assert not decision.renew
    assert decision.recheck_at < not_after
