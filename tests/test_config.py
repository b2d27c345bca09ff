"""`raftkv serve` settings: the listen/advertise address parser (one table) and the
flags and RAFTKV_* variables derived from `ServerConfig`'s fields."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from raftkv.server.config import (
    ServerConfig,
    env_name,
    format_url,
    parse_address,
    parse_advertise,
    parse_listen,
    serve_options,
)

# value -> (host, port) ("" host = not given)
GOOD = [
    ("127.0.0.1:2379", ("127.0.0.1", 2379)),
    ("0.0.0.0:2380", ("0.0.0.0", 2380)),
    ("localhost:1", ("localhost", 1)),
    ("m1.peers.ns.svc:2380", ("m1.peers.ns.svc", 2380)),
    (":2379", ("", 2379)),
    ("http://127.0.0.1:2379", ("127.0.0.1", 2379)),
    ("http://127.0.0.1:2379/", ("127.0.0.1", 2379)),
    ("HTTP://m1:2379", ("m1", 2379)),
    ("  http://m1:2379 ", ("m1", 2379)),
    ("http://:2379", ("", 2379)),
    ("[::1]:2379", ("::1", 2379)),
    ("[::]:2379", ("::", 2379)),
    ("http://[::1]:2379", ("::1", 2379)),
    ("http://[fe80::1%eth0]:2379", ("fe80::1%eth0", 2379)),
    ("127.0.0.1:0", ("127.0.0.1", 0)),
    ("127.0.0.1:65535", ("127.0.0.1", 65535)),
    # https is parsed the same way; whether it fits the TLS flags is checked later.
    ("https://127.0.0.1:2379", ("127.0.0.1", 2379)),
    ("HTTPS://m1:2379", ("m1", 2379)),
]

# value -> a piece of the error message
BAD = [
    ("unix:///tmp/sock", "unsupported scheme 'unix'"),
    ("tcp://m1:2379", "unsupported scheme 'tcp'"),
    ("127.0.0.1", "is not host:port or http://host:port"),
    ("http://127.0.0.1", "is not host:port or http://host:port"),
    ("127.0.0.1:", "is not host:port"),
    ("127.0.0.1:http", "is not host:port"),
    ("127.0.0.1:65536", "is not host:port"),
    ("127.0.0.1:-1", "is not host:port"),
    ("127.0.0.1:²", "is not host:port"),
    ("http://m1:2379/v1", "is not host:port"),
    ("http://m1:2379?x=1", "is not host:port"),
    ("http://user@m1:2379", "is not host:port"),
    ("m 1:2379", "is not host:port"),
    ("", "is not host:port"),
    ("::1:2379", "put an IPv6 address in brackets, as in [::1]:2379"),
    ("[::1:2379", "not a bracketed IPv6 address"),
    ("[m1]:2379", "not a bracketed IPv6 address"),
    ("http//127.0.0.1:2379", "is not host:port"),
]


@pytest.mark.parametrize(("value", "expected"), GOOD)
def test_parse_address_accepts(value: str, expected: tuple[str, int]) -> None:
    assert parse_address(value) == expected


@pytest.mark.parametrize(("value", "message"), BAD)
def test_parse_address_refuses_with_the_expected_form(value: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_address(value)
    assert message in str(exc.value)
    assert repr(value) in str(exc.value)  # says which value


def test_listen_without_a_host_is_every_interface() -> None:
    assert parse_listen(":2379") == ("0.0.0.0", 2379)
    assert parse_listen("http://:2379") == ("0.0.0.0", 2379)
    assert parse_listen("http://[::1]:2380") == ("::1", 2380)


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("", ""),
        ("http://m1:2380", "http://m1:2380"),
        ("http://m1:2380/", "http://m1:2380"),
        ("m1:2380", "http://m1:2380"),
        ("[::1]:2380", "http://[::1]:2380"),
        ("http://[::1]:2380", "http://[::1]:2380"),
        ("https://m1:2380", "https://m1:2380"),
        ("HTTPS://m1:2380/", "https://m1:2380"),
    ],
)
def test_advertise_urls_are_normalised(value: str, url: str) -> None:
    assert parse_advertise(value) == url


@pytest.mark.parametrize("value", [":2380", "m1:0", "https://m1", "m1"])
def test_advertise_needs_an_http_host_and_port(value: str) -> None:
    with pytest.raises(ValueError):
        parse_advertise(value)


def test_ipv6_urls_are_bracketed() -> None:
    assert format_url("::1", 2379) == "http://[::1]:2379"
    cfg = ServerConfig("m", Path("m"), client_host="::1", peer_host="::1")
    assert cfg.client_url == "http://[::1]:2379"
    assert cfg.peer_url == "http://[::1]:2380"


# -- flags and variables from the fields -------------------------------------------------

# Every flag and variable the project (tests, e2e, the operator, the chart, README)
# has ever used: none may disappear.
LEGACY_FLAGS = {
    "--name",
    "--data-dir",
    "--listen-client",
    "--listen-peer",
    "--advertise-client-url",
    "--advertise-peer-url",
    "--initial-cluster",
    "--join",
    "--member-id",
    "--discovery-endpoints",
    "--force-new-cluster",
    "--cluster-token",
    "--peer-secret",
    "--snapshot-count",
    "--snapshot-catchup-entries",
    "--tick-ms",
    "--election-ticks",
    "--heartbeat-ticks",
    "--max-key-bytes",
    "--max-value-bytes",
    "--request-timeout",
    "--stop-timeout",
    "--max-txn-ops",
    "--quota-backend-bytes",
    "--auto-compaction-mode",
    "--auto-compaction-retention",
    "--watch-progress-interval",
    "--watch-batch-interval",
    "--watch-max-buffered-events",
    "--watch-max-lag-revisions",
    "--log-format",
    "--log-level",
    # TLS (docs/tls.md)
    "--cert-file",
    "--key-file",
    "--trusted-ca-file",
    "--client-cert-auth",
    "--peer-cert-file",
    "--peer-key-file",
    "--peer-trusted-ca-file",
    "--client-accept-plain",
    "--peer-accept-plain",
    "--tls-reload-interval",
    # etcd's v3 gRPC API (docs/etcd.md)
    "--listen-etcd",
    "--advertise-etcd-url",
}


def test_every_field_has_exactly_one_flag_and_variable() -> None:
    options = serve_options()
    covered = [f for o in options for f in o.fields]
    assert sorted(covered) == sorted(f.name for f in dataclasses.fields(ServerConfig))
    assert len(covered) == len(set(covered))
    for o in options:
        assert o.env == env_name(o.flag) == "RAFTKV_" + o.flag[2:].upper().replace("-", "_")
    # the legacy flags are all there (--initial-cluster-state is the CLI's own)
    assert set(LEGACY_FLAGS) == {o.flag for o in options}


def test_option_defaults_parse_to_the_dataclass_defaults() -> None:
    for o in serve_options():
        parsed = o.parse(o.default)
        for name, value in o.values(parsed).items():
            f = next(f for f in dataclasses.fields(ServerConfig) if f.name == name)
            if f.default is not dataclasses.MISSING:
                assert value == f.default, name
            elif name == "initial_cluster":
                assert value == ""  # "derive it": a one-member cluster of this member


def test_legacy_defaults_are_kept() -> None:
    defaults = {o.flag: o.default for o in serve_options()}
    assert defaults["--name"] == "default"
    assert defaults["--data-dir"] == ""
    assert defaults["--listen-client"] == "127.0.0.1:2379"
    assert defaults["--listen-peer"] == "127.0.0.1:2380"
    assert defaults["--cluster-token"] == "raftkv"
    assert defaults["--snapshot-count"] == "10000"
    assert int(defaults["--max-value-bytes"]) == 1 << 20
    assert float(defaults["--request-timeout"]) == 5
    assert defaults["--log-format"] == "text"
