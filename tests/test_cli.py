"""The `raftkv` command line: `serve` flags and RAFTKV_* variables derived from
`ServerConfig` (every field settable both ways, defaults equal the dataclass's, every
form the project's own launchers use still parses), subcommand dispatch, the one
error-to-exit-code mapping, and `raftkv serve --listen-client http://...` starting."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

import raftkv.client
from cluster.harness import LocalCluster
from raftkv import backup, cli
from raftkv.client import (
    BadRequest,
    BadResponse,
    Indeterminate,
    NotFound,
    PreconditionFailed,
    RaftKVError,
    Unavailable,
)
from raftkv.server.config import InitialMember, ServerConfig, serve_options
from support.members import free_port, serve_command, spawn_member


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Callable[[Mapping[str, str]], None]:
    """No RAFTKV_* variable from the caller's environment leaks in; `env({...})` sets
    some (they are read when the parser is built)."""
    for name in list(os.environ):
        if name.startswith("RAFTKV_"):
            monkeypatch.delenv(name)

    def set_env(values: Mapping[str, str]) -> None:
        for k, v in values.items():
            monkeypatch.setenv(k, v)

    return set_env


def serve_cfg(argv: Sequence[str] = ()) -> ServerConfig:
    return cli.serve_config(cli.build_parser().parse_args(["serve", *argv]))


# -- serve: flags and variables ---------------------------------------------------------


def test_no_flags_is_the_dataclass_defaults(env: Callable[[Mapping[str, str]], None]) -> None:
    assert serve_cfg() == ServerConfig(
        name="default",
        data_dir=Path("default.raftkv"),
        initial_cluster=[InitialMember(1, "default", "http://127.0.0.1:2380")],
    )


# flag -> (flag text, extra flags it needs, the fields it sets)
SAMPLES: dict[str, tuple[str, list[str], dict[str, Any]]] = {
    "--name": (
        "m7",
        [],
        {
            "name": "m7",
            "data_dir": Path("m7.raftkv"),
            "initial_cluster": [InitialMember(1, "m7", "http://127.0.0.1:2380")],
        },
    ),
    "--data-dir": ("/var/lib/x", [], {"data_dir": Path("/var/lib/x")}),
    "--listen-client": (
        "http://0.0.0.0:3379",
        [],
        {"client_host": "0.0.0.0", "client_port": 3379, "client_listen_scheme": "http"},
    ),
    "--listen-peer": (
        "[::1]:3380",
        [],
        {
            "peer_host": "::1",
            "peer_port": 3380,
            "initial_cluster": [InitialMember(1, "default", "http://[::1]:3380")],
        },
    ),
    "--advertise-client-url": ("m7:3379", [], {"advertise_client_url": "http://m7:3379"}),
    "--advertise-peer-url": (
        "http://m7:3380",
        [],
        {
            "advertise_peer_url": "http://m7:3380",
            "initial_cluster": [InitialMember(1, "default", "http://m7:3380")],
        },
    ),
    "--initial-cluster": (
        "a=http://a:1,b=http://b:2",
        [],
        {
            "initial_cluster": [
                InitialMember(1, "a", "http://a:1"),
                InitialMember(2, "b", "http://b:2"),
            ]
        },
    ),
    "--join": ("", ["--member-id", "4"], {"join": True, "member_id": 4, "initial_cluster": []}),
    "--member-id": ("9", [], {"member_id": 9}),
    "--discovery-endpoints": (
        "http://a:2379, http://b:2379",
        [],
        {"discovery_endpoints": ("http://a:2379", "http://b:2379")},
    ),
    "--force-new-cluster": ("", [], {"force_new_cluster": True}),
    "--cluster-token": ("tok", [], {"cluster_token": "tok"}),
    "--peer-secret": ("s3cret", [], {"peer_secret": "s3cret"}),
    "--snapshot-count": ("77", [], {"snapshot_count": 77}),
    "--snapshot-catchup-entries": ("33", [], {"snapshot_catchup_entries": 33}),
    "--tick-ms": ("20", [], {"tick_ms": 20}),
    "--election-ticks": ("15", [], {"election_ticks": 15}),
    "--heartbeat-ticks": ("3", [], {"heartbeat_ticks": 3}),
    "--max-key-bytes": ("100", [], {"max_key_bytes": 100}),
    "--max-value-bytes": ("200", [], {"max_value_bytes": 200}),
    "--request-timeout": ("1.5", [], {"request_timeout": 1.5}),
    "--stop-timeout": ("2", [], {"stop_timeout": 2.0}),
    "--max-txn-ops": ("64", [], {"max_txn_ops": 64}),
    "--quota-backend-bytes": ("1048576", [], {"quota_backend_bytes": 1048576}),
    "--auto-compaction-mode": (
        "revision",
        ["--auto-compaction-retention", "100"],
        {"auto_compaction_mode": "revision", "auto_compaction_retention": "100"},
    ),
    "--auto-compaction-retention": ("2h", [], {"auto_compaction_retention": "2h"}),
    "--watch-progress-interval": ("30", [], {"watch_progress_interval": 30.0}),
    "--watch-batch-interval": ("0.005", [], {"watch_batch_interval": 0.005}),
    "--watch-max-buffered-events": ("64", [], {"watch_max_buffered_events": 64}),
    "--watch-max-lag-revisions": ("500", [], {"watch_max_lag_revisions": 500}),
    "--log-format": ("json", [], {"log_format": "json"}),
    "--log-level": ("debug", [], {"log_level": "debug"}),
    "--cert-file": ("/c.crt", ["--key-file", "/c.key"], {"cert_file": "/c.crt"}),
    "--key-file": ("/c.key", ["--cert-file", "/c.crt"], {"key_file": "/c.key"}),
    "--trusted-ca-file": (
        "/ca.crt",
        ["--cert-file", "/c.crt", "--key-file", "/c.key"],
        {"trusted_ca_file": "/ca.crt"},
    ),
    "--client-cert-auth": (
        "",
        ["--cert-file", "/c.crt", "--key-file", "/c.key", "--trusted-ca-file", "/ca.crt"],
        {"client_cert_auth": True},
    ),
    "--peer-cert-file": (
        "/p.crt",
        ["--peer-key-file", "/p.key", "--peer-trusted-ca-file", "/pca.crt"],
        {
            "peer_cert_file": "/p.crt",
            "initial_cluster": [InitialMember(1, "default", "https://127.0.0.1:2380")],
        },
    ),
    "--peer-key-file": (
        "/p.key",
        ["--peer-cert-file", "/p.crt", "--peer-trusted-ca-file", "/pca.crt"],
        {"peer_key_file": "/p.key"},
    ),
    "--peer-trusted-ca-file": (
        "/pca.crt",
        ["--peer-cert-file", "/p.crt", "--peer-key-file", "/p.key"],
        {"peer_trusted_ca_file": "/pca.crt"},
    ),
    "--client-accept-plain": (
        "",
        ["--cert-file", "/c.crt", "--key-file", "/c.key"],
        {"client_accept_plain": True},
    ),
    "--peer-accept-plain": (
        "",
        [
            "--peer-cert-file",
            "/p.crt",
            "--peer-key-file",
            "/p.key",
            "--peer-trusted-ca-file",
            "/pca.crt",
        ],
        {"peer_accept_plain": True},
    ),
    "--tls-reload-interval": ("0.5", [], {"tls_reload_interval": 0.5}),
    "--listen-etcd": ("0.0.0.0:12000", [], {"listen_etcd": "0.0.0.0:12000"}),
    "--advertise-etcd-url": ("m7:12379", [], {"advertise_etcd_url": "http://m7:12379"}),
}


def test_every_option_has_a_sample() -> None:
    assert {o.flag for o in serve_options()} == set(SAMPLES)


@pytest.mark.parametrize("option", serve_options(), ids=lambda o: o.flag)
def test_each_option_works_as_a_flag_and_as_a_variable(
    env: Callable[[Mapping[str, str]], None], option: Any
) -> None:
    text, extra, fields = SAMPLES[option.flag]
    base = serve_cfg(extra)
    by_flag = serve_cfg([option.flag, *([text] if not option.switch else []), *extra])
    env({option.env: text or "true"})
    by_env = serve_cfg(extra)
    assert by_flag == by_env
    for name, value in fields.items():
        assert getattr(by_flag, name) == value, name
    changed = {
        f for f in ServerConfig.__dataclass_fields__ if getattr(base, f) != getattr(by_flag, f)
    }
    assert changed <= set(fields)


def test_a_flag_beats_its_variable(env: Callable[[Mapping[str, str]], None]) -> None:
    env({"RAFTKV_SNAPSHOT_COUNT": "5", "RAFTKV_LISTEN_CLIENT": "127.0.0.1:1"})
    cfg = serve_cfg(["--snapshot-count", "6"])
    assert cfg.snapshot_count == 6
    assert cfg.client_port == 1


@pytest.mark.parametrize("word", ["1", "true", "yes"])
def test_join_variable_words(env: Callable[[Mapping[str, str]], None], word: str) -> None:
    env({"RAFTKV_JOIN": word, "RAFTKV_MEMBER_ID": "2"})
    assert serve_cfg().join


def test_join_variable_other_words_are_off(env: Callable[[Mapping[str, str]], None]) -> None:
    env({"RAFTKV_JOIN": "no"})
    assert not serve_cfg().join


def test_initial_cluster_state_existing_joins(env: Callable[[Mapping[str, str]], None]) -> None:
    env({"RAFTKV_INITIAL_CLUSTER_STATE": "existing"})
    cfg = serve_cfg(["--discovery-endpoints", "http://a:2379"])
    assert cfg.join
    assert cfg.initial_cluster == []
    assert not serve_cfg(["--initial-cluster-state", "new"]).join


def test_the_operators_member_env_parses(env: Callable[[Mapping[str, str]], None]) -> None:
    from raftkv_operator.objects import RaftKVObject, member_env

    rkv = RaftKVObject(name="kv", namespace="apps", uid="u-1", spec={"replicas": 3})
    resolved: dict[str, str] = {"POD_NAME": "kv-1"}
    for e in member_env(rkv):
        if "value" in e:
            resolved[e["name"]] = e["value"].replace("$(POD_NAME)", resolved["POD_NAME"])
        elif e["name"] == "RAFTKV_PEER_SECRET":
            resolved[e["name"]] = "secret"
        elif e["name"] == "RAFTKV_INITIAL_CLUSTER_STATE":
            resolved[e["name"]] = "existing"
    env({k: v for k, v in resolved.items() if k.startswith("RAFTKV_")})
    cfg = serve_cfg()
    assert (cfg.client_host, cfg.peer_host) == ("0.0.0.0", "0.0.0.0")
    assert cfg.peer_url == resolved["RAFTKV_ADVERTISE_PEER_URL"]
    assert cfg.client_url == resolved["RAFTKV_ADVERTISE_CLIENT_URL"]
    assert cfg.peer_url.startswith("http://kv-1.")
    assert cfg.join
    assert cfg.discovery_endpoints
    assert cfg.log_format == "json"
    assert cfg.cluster_token == "u-1"
    assert cfg.peer_secret == "secret"


@pytest.mark.parametrize("join", [False, True])
def test_the_test_harness_command_parses(
    env: Callable[[Mapping[str, str]], None], tmp_path: Path, join: bool
) -> None:
    lc = LocalCluster(tmp_path, 2)
    m = lc.members["m2"]
    argv = lc._cmd(m, join=join)
    assert argv[1:4] == ["-m", "raftkv.cli", "serve"]
    cfg = serve_cfg(argv[4:])
    assert (cfg.client_port, cfg.peer_port, cfg.tick_ms) == (m.client_port, m.peer_port, 50)
    assert cfg.join == join
    assert cfg.request_timeout == 3.0


def test_the_kubelet_stand_in_env_parses(env: Callable[[Mapping[str, str]], None]) -> None:
    # e2e/local/kubelet.py strips http:// from the URLs for the listen variables
    env(
        {
            "RAFTKV_LISTEN_CLIENT": "127.0.0.11:2379",
            "RAFTKV_LISTEN_PEER": "127.0.0.11:2380",
            "RAFTKV_ADVERTISE_CLIENT_URL": "http://127.0.0.11:2379",
            "RAFTKV_ADVERTISE_PEER_URL": "http://127.0.0.11:2380",
            "RAFTKV_DISCOVERY_ENDPOINTS": "http://127.0.0.10:2379,http://127.0.0.11:2379",
            "RAFTKV_INITIAL_CLUSTER_STATE": "existing",
        }
    )
    cfg = serve_cfg()
    assert cfg.client_host == "127.0.0.11"
    assert cfg.peer_url == "http://127.0.0.11:2380"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--listen-client", "https://127.0.0.1:2379"],
            "--listen-client is https:// but --cert-file is not set",
        ),
        (
            ["--advertise-peer-url", "https://m1:2380"],
            "--advertise-peer-url https://m1:2380 is https:// but --peer-cert-file is not set",
        ),
        (
            ["--cert-file", "c.crt", "--key-file", "c.key", "--advertise-client-url", "m1:1"],
            "--advertise-client-url http://m1:1 is http:// but --cert-file is set: use https://",
        ),
    ],
)
def test_urls_whose_scheme_contradicts_tls_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli.main(["serve", *argv]) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--listen-peer", "127.0.0.1"], {}, "is not host:port or http://host:port"),
        ([], {"RAFTKV_LISTEN_CLIENT": "http//127.0.0.1:1"}, "is not host:port"),
        ([], {"RAFTKV_SNAPSHOT_COUNT": "many"}, "invalid int value: 'many'"),
        ([], {"RAFTKV_LOG_FORMAT": "xml"}, "invalid choice: 'xml'"),
        (["--discovery-endpoints", "m1:2379"], {}, "invalid URL"),
    ],
)
def test_bad_values_are_usage_errors(
    env: Callable[[Mapping[str, str]], None],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    environ: dict[str, str],
    message: str,
) -> None:
    env(environ)
    with pytest.raises(SystemExit) as exc:
        cli.main(["serve", *argv])
    assert exc.value.code == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_settings_that_do_not_fit_are_usage_errors(
    env: Callable[[Mapping[str, str]], None], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", "--join"]) == cli.EXIT_USAGE
    assert "raftkv serve: joining needs --member-id or --discovery-endpoints" in (
        capsys.readouterr().err
    )
    assert cli.main(["serve", "--initial-cluster", "a=b"]) == cli.EXIT_USAGE
    assert "raftkv serve: invalid URL 'b'" in capsys.readouterr().err


# -- dispatch and exit codes -------------------------------------------------------------

COMMANDS = [
    ["serve"],
    ["cluster"],
    ["demo"],
    ["operator"],
    ["verify"],
    ["put", "k", "v"],
    ["get", "k"],
    ["del", "k"],
    ["ls"],
    ["status"],
    ["member", "list"],
    ["member", "add", "http://m4:2380"],
    ["member", "promote", "4"],
    ["member", "remove", "4"],
    ["member", "transfer"],
    ["snapshot", "save", "f"],
    ["snapshot", "restore", "f", "--data-dir", "d", "--name", "n", "--advertise-peer-url", "u"],
    ["snapshot", "status", "f"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_command_dispatches_to_its_own_function(argv: list[str]) -> None:
    args = cli.build_parser().parse_args(argv)
    assert callable(args.func)


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == cli.EXIT_USAGE
    assert "usage: raftkv" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (cli.UsageError("x"), cli.EXIT_USAGE),
        (NotFound("not_found", "", 404), cli.EXIT_NOT_FOUND),
        (PreconditionFailed("precondition_failed", "", 412, 3), cli.EXIT_PRECONDITION),
        (Unavailable("no_leader", "", 503, 1.0), cli.EXIT_UNAVAILABLE),
        (Indeterminate("indeterminate", "", 503), cli.EXIT_UNAVAILABLE),
        (BadRequest("bad_request", "", 400), cli.EXIT_ERROR),
        (BadResponse("bad_response", "", 200), cli.EXIT_ERROR),
        (RaftKVError("x", ""), cli.EXIT_ERROR),
        (backup.BackupError("bad file"), cli.EXIT_ERROR),
        (ValueError("a bug"), None),
        (KeyError("a bug"), None),
    ],
)
def test_the_exit_code_mapping(exc: BaseException, code: int | None) -> None:
    assert cli.exit_code(exc) == code


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> Callable[[httpx.Response], None]:
    """Client commands talk to a scripted answer instead of a cluster."""
    answer: list[httpx.Response] = []
    real = raftkv.client.Client

    def make(endpoints: Any, **kw: Any) -> raftkv.client.Client:
        transport = httpx.MockTransport(lambda request: answer[0])
        return real(endpoints, transport=transport, backoff=0, **kw)

    monkeypatch.setattr(raftkv.client, "Client", make)
    return lambda resp: answer.insert(0, resp)


def _err(status: int, code: str, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "message": "m", **extra})


@pytest.mark.parametrize(
    ("argv", "response", "code", "stderr"),
    [
        (["put", "k", "v"], httpx.Response(200, json={"revision": 3}), 0, ""),
        (["get", "k"], _err(404, "not_found"), cli.EXIT_NOT_FOUND, "key 'k' not found"),
        (["member", "promote", "9"], _err(404, "member_not_found"), cli.EXIT_NOT_FOUND, "raftkv: "),
        (
            ["put", "k", "v", "--if-match", "2"],
            _err(412, "precondition_failed", revision=5),
            cli.EXIT_PRECONDITION,
            "raftkv: precondition_failed",
        ),
        (["get", "k"], _err(503, "no_leader"), cli.EXIT_UNAVAILABLE, "raftkv: no_leader"),
        (["put", "k", "v"], _err(503, "indeterminate"), cli.EXIT_UNAVAILABLE, "indeterminate"),
        (["del", "k"], _err(400, "bad_key"), cli.EXIT_ERROR, "raftkv: bad_key"),
        (
            ["snapshot", "save", "out.snap"],
            _err(503, "no_leader"),
            cli.EXIT_UNAVAILABLE,
            "raftkv snapshot save: no_leader",
        ),
    ],
)
def test_client_command_exit_codes(
    fake_server: Callable[[httpx.Response], None],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    response: httpx.Response,
    code: int,
    stderr: str,
) -> None:
    fake_server(response)
    assert cli.main([*argv, "--endpoints", "http://m1:2379"]) == code
    assert stderr in capsys.readouterr().err


def test_snapshot_status_of_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.snap"
    bad.write_bytes(b"not a snapshot")
    assert cli.main(["snapshot", "status", str(bad)]) == cli.EXIT_ERROR
    assert capsys.readouterr().err.startswith("raftkv snapshot status: ")


# -- serve, for real -----------------------------------------------------------------------


def _serve_until_ready(argv: list[str], tmp_path: Path, url: str) -> None:
    """Start `raftkv serve argv`, wait (with a deadline) until `url` is ready, write and
    read a key, SIGTERM it and expect a clean exit; the process is always reaped."""
    log = tmp_path / "serve.log"
    proc = spawn_member(serve_command(*argv), log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()}"
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not ready in time:\n{log.read_text()}"
            time.sleep(0.1)
        with raftkv.client.Client(url) as c:
            assert c.put("k", b"v").revision > 0
            got = c.get("k")
            assert got is not None
            assert got.value == b"v"
            assert c.members()[0].client_urls == [url]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_listens_on_http_urls(tmp_path: Path) -> None:
    cport, pport = free_port(), free_port()
    _serve_until_ready(
        [
            "--name",
            "m1",
            "--data-dir",
            str(tmp_path / "m1"),
            "--listen-client",
            f"http://127.0.0.1:{cport}",
            "--listen-peer",
            f"http://127.0.0.1:{pport}/",
            "--advertise-client-url",
            f"127.0.0.1:{cport}",
        ],
        tmp_path,
        f"http://127.0.0.1:{cport}",
    )


def _ipv6_loopback_port() -> int | None:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            return int(s.getsockname()[1])
    except OSError:
        return None


def test_serve_listens_on_ipv6(tmp_path: Path) -> None:
    cport, pport = _ipv6_loopback_port(), _ipv6_loopback_port()
    if cport is None or pport is None:
        pytest.skip("no IPv6 loopback here")
    _serve_until_ready(
        [
            "--name",
            "m1",
            "--data-dir",
            str(tmp_path / "m1"),
            "--listen-client",
            f"[::1]:{cport}",
            "--listen-peer",
            f"http://[::1]:{pport}",
        ],
        tmp_path,
        f"http://[::1]:{cport}",
    )
