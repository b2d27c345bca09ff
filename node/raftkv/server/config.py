"""Settings of one member, from flags or RAFTKV_* environment variables.

`ServerConfig` is the one list of settings: every field is a `raftkv serve` flag and a
RAFTKV_* variable, derived by `serve_options()` from the field (its name, type and
default) and its `Flag` metadata (help text, and the flag name where it is not the
field's name). The CLI only turns those options into argparse arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import ipaddress
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "RAFTKV_"
TRUE_WORDS = ("1", "true", "yes")
"""What a RAFTKV_* variable of an on/off flag (e.g. RAFTKV_JOIN) must hold to be on."""


@dataclass(frozen=True, slots=True)
class InitialMember:
    id: int
    name: str
    peer_url: str


def parse_initial_cluster(spec: str) -> list[InitialMember]:
    """`name=url,name=url,...` as in etcd; ids are positions (1-based), so every
    member given the same string derives the same ids."""
    from .membership import validate_url  # lazily: keeps `raftkv --help` light

    out: list[InitialMember] = []
    seen: set[str] = set()
    for i, part in enumerate(p for p in spec.split(",") if p.strip()):
        name, sep, url = part.strip().partition("=")
        if not sep or not name:
            raise ValueError(f"initial cluster entry {part!r} is not name=url")
        if name in seen:
            raise ValueError(f"member name {name!r} appears twice in the initial cluster")
        seen.add(name)
        out.append(InitialMember(i + 1, name, validate_url(url)))
    if not out:
        raise ValueError("the initial cluster is empty")
    return out


@functools.lru_cache(maxsize=8)
def cluster_id_for(token: str) -> str:
    """Every member of one cluster derives the same id from the shared token; peers
    with another id are refused, so two clusters on one network cannot mix. Cached:
    every response header carries it."""
    return hashlib.sha256(b"raftkv-cluster:" + token.encode()).hexdigest()[:16]


# -- addresses -------------------------------------------------------------------------

ADDRESS_FORMS = "host:port or http://host:port (IPv6: [::1]:2379)"


def parse_address(value: str) -> tuple[str, int]:
    """The one parser of listen and advertise addresses: `host:port`,
    `http://host:port` (the form etcd's --listen-client-urls takes, one trailing `/`
    allowed), an IPv6 host in brackets (`[::1]:2379`). Returns (host, port), the host
    without brackets and "" when omitted (`:2379`). `https://` is accepted the same way;
    whether a URL's scheme fits the TLS flags is checked by `check_tls_schemes`."""
    text = value.strip()
    scheme, sep, rest = text.partition("://")
    if sep:
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"{value!r}: unsupported scheme {scheme!r}; expected {ADDRESS_FORMS}")
        if rest.endswith("/"):
            rest = rest[:-1]
    else:
        rest = text
    host, colon, port = rest.rpartition(":")
    if (
        not colon
        or not (port.isascii() and port.isdigit())
        or int(port) > 65535
        or any(c.isspace() or c in "/?#@" for c in rest)
    ):
        raise ValueError(f"{value!r} is not {ADDRESS_FORMS}")
    if host.startswith("[") or host.endswith("]"):
        inner = host[1:-1]
        if not (host.startswith("[") and host.endswith("]")) or not _is_ipv6(inner):
            raise ValueError(f"{value!r}: {host!r} is not a bracketed IPv6 address")
        host = inner
    elif ":" in host:
        raise ValueError(f"{value!r}: put an IPv6 address in brackets, as in [::1]:{port}")
    return host, int(port)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_url(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://" + format_hostport(host, port)


def parse_listen(value: str) -> tuple[str, int]:
    """A listen address; no host means every IPv4 interface."""
    host, port = parse_address(value)
    return host or "0.0.0.0", port


def parse_listen_flag(value: str) -> tuple[str, int, str]:
    """A listen flag: `parse_listen`, plus the scheme written in it ("" when none), so
    that `check_tls_schemes` can refuse an https listen address without certificates."""
    host, port = parse_listen(value)
    scheme, sep, _ = value.strip().partition("://")
    return host, port, scheme.lower() if sep else ""


def parse_advertise(value: str) -> str:
    """An advertised URL, normalised to http(s)://host:port (no scheme: http); ""
    (unset) stays ""."""
    if not value.strip():
        return ""
    host, port = parse_address(value)
    if not host or port == 0:
        raise ValueError(f"{value!r}: an advertised address needs a host and a port")
    https = value.strip().lower().startswith("https://")
    return format_url(host, port, "https" if https else "http")


ETCD_OFF_WORDS = ("off", "none", "false", "0")
ETCD_PORT_OFFSET = 10000
"""The etcd API's default port: the client port + this (2379 -> 12379)."""


def parse_listen_etcd(value: str) -> str:
    """`--listen-etcd`: "" (the default: the client host, client port + 10000), one of
    ETCD_OFF_WORDS (no etcd API), or a listen address, normalised to host:port."""
    text = value.strip()
    if not text:
        return ""
    if text.lower() in ETCD_OFF_WORDS:
        return "off"
    if "://" in text and not text.lower().startswith(("http://", "https://")):
        raise ValueError(f"{value!r}: give host:port (TLS follows --cert-file, docs/etcd.md)")
    return format_hostport(*parse_listen(text))


def parse_url_list(value: str) -> tuple[str, ...]:
    """Comma-separated http(s)://host:port URLs (of another cluster's members)."""
    from .membership import validate_url

    return tuple(validate_url(u.strip()) for u in value.split(",") if u.strip())


# -- flags -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flag:
    """Field metadata (`metadata={FLAG: Flag(...)}`): how `raftkv serve` sets the field.
    Everything is optional; by default the flag is `--<field-name>`, its variable
    RAFTKV_<FIELD_NAME>, its value parsed by the field's type, and its default the
    field's default."""

    name: str = ""
    """The flag, when it is not `--` + the field name with dashes."""
    help: str | None = None
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None
    """Flag text to the field's value, or to a tuple of values, one per `fields`."""
    fields: tuple[str, ...] = ()
    """All the fields this one flag sets (e.g. host and port), in `parse`'s order; every
    one of them carries this same Flag."""
    default: str | None = None
    """The default as flag text, for a field without a default (or whose flag default
    means "derive it", e.g. "")."""
    choices: tuple[str, ...] | None = None


FLAG = "raftkv.flag"


def _flag(**kw: Any) -> dict[str, Flag]:
    return {FLAG: Flag(**kw)}


_LISTEN_CLIENT = _flag(
    name="--listen-client",
    fields=("client_host", "client_port", "client_listen_scheme"),
    parse=parse_listen_flag,
    metavar="ADDR",
    help=f"where to serve clients: {ADDRESS_FORMS}",
)
_LISTEN_PEER = _flag(
    name="--listen-peer",
    fields=("peer_host", "peer_port", "peer_listen_scheme"),
    parse=parse_listen_flag,
    metavar="ADDR",
    help=f"where to serve peers: {ADDRESS_FORMS}",
)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    name: str = field(metadata=_flag(default="default"))
    data_dir: Path = field(metadata=_flag(default="", parse=str, help="default: ./<name>.raftkv"))
    client_host: str = field(default="127.0.0.1", metadata=_LISTEN_CLIENT)
    client_port: int = field(default=2379, metadata=_LISTEN_CLIENT)
    peer_host: str = field(default="127.0.0.1", metadata=_LISTEN_PEER)
    peer_port: int = field(default=2380, metadata=_LISTEN_PEER)
    advertise_client_url: str = field(
        default="",
        metadata=_flag(
            parse=parse_advertise,
            metavar="URL",
            help=f"client URL other members and clients use: {ADDRESS_FORMS}; "
            "default: http://<listen-client>",
        ),
    )
    advertise_peer_url: str = field(
        default="",
        metadata=_flag(
            parse=parse_advertise,
            metavar="URL",
            help=f"peer URL other members use: {ADDRESS_FORMS}; default: http://<listen-peer>",
        ),
    )
    initial_cluster: list[InitialMember] = field(
        default_factory=list,
        metadata=_flag(
            default="",
            parse=str,
            help="name=peer_url,... of a NEW cluster (ignored when the data dir has state); "
            "default: a single-member cluster of this member",
        ),
    )
    join: bool = field(
        default=False,
        metadata=_flag(help="wait to be added to an existing cluster instead of bootstrapping"),
    )
    member_id: int = field(
        default=0, metadata=_flag(help="the id this member was added with, when joining")
    )
    """The id we were added with, when joining; 0 = find it by discovery."""
    discovery_endpoints: tuple[str, ...] = field(
        default=(),
        metadata=_flag(
            default="",
            parse=parse_url_list,
            help="client URLs of the cluster to join; with --join and no --member-id the "
            "member takes the id of the learner added with its peer URL",
        ),
    )
    """Client URLs of the existing cluster (e.g. its client Service). A joining member
    with an empty data dir and no id polls the member list there until a learner with
    its own peer URL appears, and takes that id."""
    force_new_cluster: bool = field(
        default=False,
        metadata=_flag(
            help="quorum-loss recovery (etcd's flag): restart this member's data as a "
            "one-voter cluster, removing every other member; done once, see docs/backup.md"
        ),
    )
    """Rewrite the persisted configuration to this member alone before starting
    (`server.force_new_cluster`); a no-op after it ran once, until a start without it."""
    cluster_token: str = "raftkv"
    peer_secret: str = ""
    snapshot_count: int = 10_000
    snapshot_catchup_entries: int = field(
        default=5_000,
        metadata=_flag(help="entries kept behind a snapshot for slightly lagging followers"),
    )
    tick_ms: int = 100
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    max_key_bytes: int = 4096
    max_value_bytes: int = 1 << 20
    request_timeout: float = 5.0
    stop_timeout: float = 10.0
    max_txn_ops: int = field(
        default=128, metadata=_flag(help="operations per txn at most (etcd's --max-txn-ops)")
    )
    auto_compaction_mode: str = field(
        default="periodic",
        metadata=_flag(
            choices=("periodic", "revision"),
            help="periodic: keep --auto-compaction-retention of time; "
            "revision: keep that many revisions",
        ),
    )
    auto_compaction_retention: str = field(
        default="0",
        metadata=_flag(
            help="periodic: a duration (1h, 30m, 90s; a bare number is hours); "
            "revision: a count; 0 turns automatic compaction off (etcd's flag)"
        ),
    )
    quota_backend_bytes: int = field(
        default=0,
        metadata=_flag(
            help="state-machine size (bytes) past which writes raise etcd's NOSPACE alarm "
            "and are refused until it is disarmed (docs/etcd.md); 0: etcd's default, "
            "2 GiB; negative: no quota"
        ),
    )
    watch_progress_interval: float = field(
        default=600.0,
        metadata=_flag(help="seconds between progress notifications of idle watches"),
    )
    watch_max_buffered_events: int = field(
        default=1024,
        metadata=_flag(
            help="events held per watcher whose client is not reading, before it is moved "
            "aside to catch up from history"
        ),
    )
    watch_batch_interval: float = field(
        default=0.01,
        metadata=_flag(
            help="seconds a watch stream that has just sent waits before it sends again, "
            "so that under a high write rate each send carries many revisions; a send "
            "after a quiet spell goes at once; 0 sends every applied batch"
        ),
    )
    watch_max_lag_revisions: int = field(
        default=10_000,
        metadata=_flag(
            help="a watcher that falls this many revisions behind is cancelled as too slow"
        ),
    )
    log_format: str = field(default="text", metadata=_flag(choices=("text", "json")))
    log_level: str = "info"
    # TLS (docs/tls.md): etcd's flag names; "" = off.
    cert_file: str = field(
        default="", metadata=_flag(metavar="FILE", help="server certificate of the client port")
    )
    key_file: str = field(default="", metadata=_flag(metavar="FILE", help="key of --cert-file"))
    trusted_ca_file: str = field(
        default="",
        metadata=_flag(metavar="FILE", help="CA that client certificates must chain to"),
    )
    client_cert_auth: bool = field(
        default=False,
        metadata=_flag(help="require a client certificate signed by --trusted-ca-file"),
    )
    peer_cert_file: str = field(
        default="",
        metadata=_flag(metavar="FILE", help="certificate of the peer port (mutual TLS)"),
    )
    peer_key_file: str = field(
        default="", metadata=_flag(metavar="FILE", help="key of --peer-cert-file")
    )
    peer_trusted_ca_file: str = field(
        default="",
        metadata=_flag(metavar="FILE", help="CA every member's peer certificate chains to"),
    )
    client_accept_plain: bool = field(
        default=False,
        metadata=_flag(
            help="with --cert-file, the client port also takes plain HTTP (told apart by "
            "the first byte), and http:// client URLs are allowed: for turning TLS on or "
            "off in a running cluster (docs/tls.md)"
        ),
    )
    peer_accept_plain: bool = field(
        default=False,
        metadata=_flag(
            help="with peer TLS, the peer port also takes plain connections (the peer "
            "secret is still checked), and http:// peer URLs are allowed: for turning "
            "TLS on or off in a running cluster (docs/tls.md)"
        ),
    )
    tls_reload_interval: float = field(
        default=5.0,
        metadata=_flag(help="seconds between checks of the certificate files for changes"),
    )
    listen_etcd: str = field(
        default="",
        metadata=_flag(
            parse=parse_listen_etcd,
            metavar="ADDR",
            help="where to serve etcd's v3 gRPC API (docs/etcd.md): host:port, or off; "
            "default: the client host, client port + 10000",
        ),
    )
    advertise_etcd_url: str = field(
        default="",
        metadata=_flag(
            parse=parse_advertise,
            metavar="URL",
            help="etcd API URL members report to etcd clients; default: the scheme of the "
            "client port (https with --cert-file) and --listen-etcd",
        ),
    )
    client_listen_scheme: str = field(default="", metadata=_LISTEN_CLIENT)
    """The scheme written in --listen-client, "" when none; only checked against TLS."""
    peer_listen_scheme: str = field(default="", metadata=_LISTEN_PEER)

    @property
    def cluster_id(self) -> str:
        return cluster_id_for(self.cluster_token)

    @property
    def quota_bytes(self) -> int:
        """The space quota in force: --quota-backend-bytes, etcd's 2 GiB for 0, and
        0 (no quota) for a negative value, as etcd reads its flag."""
        from ..kv.quota import DEFAULT_QUOTA_BYTES

        q = self.quota_backend_bytes
        return DEFAULT_QUOTA_BYTES if q == 0 else max(q, 0)

    @property
    def client_scheme(self) -> str:
        return "https" if self.cert_file else "http"

    @property
    def peer_scheme(self) -> str:
        return "https" if self.peer_cert_file else "http"

    @property
    def client_url(self) -> str:
        return self.advertise_client_url or format_url(
            self.client_host, self.client_port, self.client_scheme
        )

    @property
    def peer_url(self) -> str:
        return self.advertise_peer_url or format_url(
            self.peer_host, self.peer_port, self.peer_scheme
        )

    @property
    def etcd_address(self) -> tuple[str, int] | None:
        """Where the etcd API listens; None when it is off. The default (client
        port + 10000) is None too when that is not a valid port."""
        if self.listen_etcd == "off":
            return None
        if self.listen_etcd:
            return parse_listen(self.listen_etcd)
        if self.client_port == 0:
            return self.client_host, 0
        port = self.client_port + ETCD_PORT_OFFSET
        return (self.client_host, port) if port <= 65535 else None

    @property
    def etcd_url(self) -> str:
        """The etcd API's advertised URL ("" when it is off)."""
        if self.advertise_etcd_url:
            return self.advertise_etcd_url
        addr = self.etcd_address
        return "" if addr is None else format_url(*addr, self.client_scheme)


@dataclass(frozen=True, slots=True)
class Option:
    """One `raftkv serve` flag, with its RAFTKV_* variable, made from config fields."""

    flag: str
    fields: tuple[str, ...]
    parse: Callable[[str], Any]
    default: str
    """The default as text (what the variable would hold); parsed like a flag value."""
    switch: bool = False
    """An on/off flag: present = on; its variable is on when it holds one of TRUE_WORDS."""
    help: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None

    @property
    def env(self) -> str:
        return env_name(self.flag)

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    def values(self, parsed: Any) -> dict[str, Any]:
        """The fields set by this flag's parsed value."""
        if len(self.fields) == 1:
            return {self.fields[0]: parsed}
        return dict(zip(self.fields, parsed, strict=True))


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.removeprefix("--").replace("-", "_").upper()


def serve_options() -> list[Option]:
    """Every `raftkv serve` option, in field order, derived from `ServerConfig`."""
    hints = typing.get_type_hints(ServerConfig)
    out: dict[str, Option] = {}
    for f in dataclasses.fields(ServerConfig):
        meta: Flag = f.metadata.get(FLAG, Flag())
        flag = meta.name or "--" + f.name.replace("_", "-")
        if flag in out:
            continue  # a multi-field flag, made from its first field
        names = meta.fields or (f.name,)
        if f.name not in names:
            raise TypeError(f"ServerConfig.{f.name}: its Flag does not list it in fields")
        kind = hints[f.name]
        parse = meta.parse or (kind if kind in (str, int, float) else None)
        switch = kind is bool and meta.parse is None
        if parse is None and not switch:
            raise TypeError(f"ServerConfig.{f.name}: a {kind} field needs Flag(parse=...)")
        default = meta.default
        if default is None:
            defaults = [_default_of(n) for n in names]
            if len(names) == 3 and meta.parse is parse_listen_flag:
                default = format_hostport(*defaults[:2])
            elif len(names) == 1 and type(defaults[0]) in (str, int, float):
                default = str(defaults[0])
            elif switch:
                default = ""
            else:
                raise TypeError(f"ServerConfig.{f.name}: Flag needs a text default")
        out[flag] = Option(
            flag=flag,
            fields=names,
            parse=parse or _parse_switch,
            default=default,
            switch=switch,
            help=meta.help,
            metavar=meta.metavar,
            choices=meta.choices,
        )
    return list(out.values())


def _default_of(name: str) -> Any:
    f = next(f for f in dataclasses.fields(ServerConfig) if f.name == name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"ServerConfig.{name} has no default")


def _parse_switch(text: str) -> bool:
    return text in TRUE_WORDS


def env_default(option: Option, environ: Mapping[str, str]) -> str:
    """The option's default text, overridden by its RAFTKV_* variable."""
    return environ.get(option.env, option.default)


def config_from_values(values: Mapping[str, Any]) -> ServerConfig:
    """A config from the parsed value of every field (as `Option.values` gives them);
    fills in what derives from others: the data dir from the name, the initial cluster
    from its spec (a one-member cluster of this member when empty; none when joining).
    Raises ValueError for settings that do not fit together."""
    v = dict(values)
    name: str = v["name"]
    v["data_dir"] = Path(v["data_dir"] or f"{name}.raftkv")
    peer_scheme = "https" if v.get("peer_cert_file") else "http"
    peer_url = v["advertise_peer_url"] or format_url(v["peer_host"], v["peer_port"], peer_scheme)
    spec: str = v["initial_cluster"] or f"{name}={peer_url}"
    v["initial_cluster"] = [] if v["join"] else parse_initial_cluster(spec)
    if v["join"] and v["member_id"] <= 0 and not v["discovery_endpoints"]:
        raise ValueError("joining needs --member-id or --discovery-endpoints")
    from .compactor import parse_retention

    parse_retention(v["auto_compaction_mode"], v["auto_compaction_retention"])
    if v["max_txn_ops"] < 1:
        raise ValueError("--max-txn-ops must be at least 1")
    if (
        v["watch_max_lag_revisions"] < 1
        or v["watch_max_buffered_events"] < 1
        or v["watch_progress_interval"] <= 0
        or not 0 <= v["watch_batch_interval"] <= 1
    ):
        raise ValueError(
            "--watch-max-lag-revisions and --watch-max-buffered-events must be at least 1, "
            "--watch-progress-interval above 0, --watch-batch-interval between 0 and 1"
        )
    cfg = ServerConfig(**v)
    check_tls_schemes(cfg)
    return cfg


def check_tls_flags(cfg: ServerConfig) -> None:
    """TLS flags that only work together (docs/tls.md); ValueError otherwise. Checked
    when the member starts (`server.member_tls`), not when the config is built: a
    config with half the TLS flags is a valid value, just not one a member runs."""
    if bool(cfg.cert_file) != bool(cfg.key_file):
        raise ValueError("--cert-file and --key-file go together")
    if cfg.client_cert_auth and not cfg.trusted_ca_file:
        raise ValueError("--client-cert-auth needs --trusted-ca-file to check client certificates")
    if cfg.trusted_ca_file and not cfg.cert_file:
        raise ValueError("--trusted-ca-file needs --cert-file (client TLS)")
    peer = [cfg.peer_cert_file, cfg.peer_key_file, cfg.peer_trusted_ca_file]
    if any(peer) and not all(peer):
        raise ValueError(
            "peer TLS is mutual: give --peer-cert-file, --peer-key-file and "
            "--peer-trusted-ca-file together"
        )
    if cfg.tls_reload_interval <= 0:
        raise ValueError("--tls-reload-interval must be positive")
    if cfg.client_accept_plain and not cfg.cert_file:
        raise ValueError("--client-accept-plain needs client TLS (--cert-file)")
    if cfg.peer_accept_plain and not cfg.peer_cert_file:
        raise ValueError("--peer-accept-plain needs peer TLS (--peer-cert-file)")


def check_tls_schemes(cfg: ServerConfig) -> None:
    """Refuse a URL whose scheme contradicts the TLS flags: an https URL without
    certificates, or certificates behind an http URL, would only fail later, at the
    first connection, far from the cause."""
    client = ("--cert-file", cfg.client_scheme)
    peer = ("--peer-cert-file", cfg.peer_scheme)
    checks = [
        ("--listen-client", cfg.client_listen_scheme, *client),
        ("--listen-peer", cfg.peer_listen_scheme, *peer),
        (
            f"--advertise-client-url {cfg.advertise_client_url}",
            _scheme(cfg.advertise_client_url),
            *client,
        ),
        (f"--advertise-peer-url {cfg.advertise_peer_url}", _scheme(cfg.advertise_peer_url), *peer),
        *(
            (f"--initial-cluster {m.name}={m.peer_url}", _scheme(m.peer_url), *peer)
            for m in cfg.initial_cluster
        ),
    ]
    plain_ok = {"--cert-file": cfg.client_accept_plain, "--peer-cert-file": cfg.peer_accept_plain}
    for what, got, flag, want in checks:
        if not got or got == want or (got == "http" and plain_ok[flag]):
            continue
        if want == "https":
            raise ValueError(f"{what} is {got}:// but {flag} is set: use https://")
        raise ValueError(f"{what} is https:// but {flag} is not set")


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else ""
