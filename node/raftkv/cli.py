"""The `raftkv` command line: run a member, a local cluster, the operator, or talk to
a cluster as a client. Every `serve` flag can also come from a RAFTKV_* variable."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from . import __version__

if TYPE_CHECKING:
    from . import client as c
    from .backup import SnapshotInfo
    from .server.config import Option, ServerConfig

EXIT_USAGE = 2
EXIT_ERROR = 1
EXIT_NOT_FOUND = 4
EXIT_PRECONDITION = 5
EXIT_UNAVAILABLE = 6

Command = Callable[[argparse.Namespace], int]
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class UsageError(Exception):
    """Settings that parse one by one but do not fit together."""


def exit_code(exc: BaseException) -> int | None:
    """The one mapping of errors to exit codes; None for an error that is a bug (let it
    raise). Imports lazily: the client and backup modules load only when needed."""
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    from . import backup
    from . import client as c
    from .tls import CertFileError

    if isinstance(exc, CertFileError):
        return EXIT_USAGE

    if isinstance(exc, c.NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, c.PreconditionFailed):
        return EXIT_PRECONDITION
    if isinstance(exc, c.Unavailable | c.Indeterminate):
        return EXIT_UNAVAILABLE
    if isinstance(exc, c.RaftKVError | backup.BackupError):
        return EXIT_ERROR
    return None


def _env(name: str, default: str) -> str:
    return os.environ.get("RAFTKV_" + name, default)


# --- serve ----------------------------------------------------------------------------


def _arg_type(option: Option) -> Callable[[str], Any]:
    """argparse `type` for an option: its parser, with its own error message (argparse
    also applies it to a default taken from the RAFTKV_* variable)."""
    parse = option.parse

    def convert(text: str) -> Any:
        if option.choices is not None and text not in option.choices:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {text!r} (choose from {', '.join(option.choices)})"
            )
        try:
            return parse(text)
        except ValueError as exc:
            if parse in (int, float):
                raise  # argparse says "invalid int value: 'x'"
            raise argparse.ArgumentTypeError(str(exc)) from exc

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _add_serve(sub: SubParsers) -> None:
    from .server.config import env_default, env_name, serve_options

    p = sub.add_parser("serve", help="run one member")
    options = serve_options()
    for opt in options:
        default = env_default(opt, os.environ)
        env = f"[{opt.env}; default {opt.default}]" if opt.default else f"[{opt.env}]"
        help_text = f"{opt.help} {env}" if opt.help else env
        if opt.switch:
            p.add_argument(
                opt.flag,
                dest=opt.dest,
                action="store_true",
                default=opt.parse(default),
                help=help_text,
            )
        else:
            p.add_argument(
                opt.flag,
                dest=opt.dest,
                type=_arg_type(opt),
                default=default,
                metavar=opt.metavar
                or ("{" + ",".join(opt.choices) + "}" if opt.choices else opt.dest.upper()),
                help=help_text,
            )
    state = "--initial-cluster-state"
    p.add_argument(
        state,
        choices=("new", "existing"),
        default=os.environ.get(env_name(state), "new"),
        help="with an empty data dir: 'new' bootstraps, 'existing' joins (= --join) "
        f"[{env_name(state)}]",
    )
    p.set_defaults(func=_serve, serve_options=options, prefix="raftkv serve")


def serve_config(args: argparse.Namespace) -> ServerConfig:
    """The member's config from parsed `raftkv serve` arguments; UsageError when the
    settings do not fit together."""
    from .server.config import config_from_values

    values: dict[str, Any] = {}
    for opt in args.serve_options:
        values.update(opt.values(getattr(args, opt.dest)))
    values["join"] = values["join"] or args.initial_cluster_state == "existing"
    try:
        return config_from_values(values)
    except ValueError as exc:
        raise UsageError(exc) from exc


def _serve(args: argparse.Namespace) -> int:
    from .server.logs import setup_logging
    from .server.main import run

    cfg = serve_config(args)
    setup_logging(cfg.log_format, cfg.log_level)
    return run(cfg)


# --- cluster, demo, operator, verify ----------------------------------------------------


def _add_cluster(sub: SubParsers) -> None:
    p = sub.add_parser("cluster", help="run a local N-member cluster on loopback")
    p.add_argument("--size", "-n", type=int, default=3)
    p.add_argument("--data-dir", default="data/cluster")
    p.add_argument("--base-port", type=int, default=23790)
    p.add_argument("--fresh", action="store_true", help="wipe the data dir first")
    p.add_argument("--snapshot-count", type=int, default=10000)
    p.set_defaults(func=_cluster)


def _cluster(args: argparse.Namespace) -> int:
    from .localcluster import run_local_cluster

    return run_local_cluster(
        size=args.size,
        data_dir=Path(args.data_dir),
        base_port=args.base_port,
        fresh=args.fresh,
        snapshot_count=args.snapshot_count,
    )


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo()


def _operator(args: argparse.Namespace) -> int:
    from raftkv_operator.main import cli

    return cli(args.extra)


def _verify(args: argparse.Namespace) -> int:
    from .verify.live import main as verify_main

    # Global TLS flags (`raftkv --cacert ... verify`) go first: verify's own win.
    tls = [x for name, value in tls_kwargs(args).items() if value for x in (f"--{name}", value)]
    return verify_main([*tls, *args.extra])


# --- client commands ------------------------------------------------------------------


def _add_client(sub: SubParsers) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--endpoints",
        default=_env(
            "ENDPOINTS", "http://127.0.0.1:23790,http://127.0.0.1:23791,http://127.0.0.1:23792"
        ),
        help="comma-separated client URLs (RAFTKV_ENDPOINTS)",
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--timeout", type=float, default=10.0)
    # SUPPRESS: a command's own flag wins, else the global one (`raftkv --cacert F get`).
    add_tls_arguments(common, default=argparse.SUPPRESS)

    p = sub.add_parser("put", parents=[common], help="write a key")
    p.add_argument("key")
    p.add_argument("value", help="the value; '-' reads it from stdin")
    p.add_argument("--if-match", type=int, help="only if the key's revision is this")
    p.add_argument("--create", action="store_true", help="only if the key does not exist")
    p.add_argument("--lease", type=int, default=0, help="attach to this lease (raftkv lease)")
    p.set_defaults(func=_with_client(_put))

    p = sub.add_parser("get", parents=[common], help="read a key")
    p.add_argument("key")
    p.add_argument("--serializable", action="store_true", help="local read, no quorum round")
    p.add_argument(
        "--rev", type=int, default=0, help="the value as of this store revision (0: now)"
    )
    p.set_defaults(func=_with_client(_get))

    p = sub.add_parser("del", parents=[common], help="delete a key")
    p.add_argument("key")
    p.add_argument("--if-match", type=int)
    p.set_defaults(func=_with_client(_del))

    p = sub.add_parser("ls", parents=[common], help="list keys by prefix")
    p.add_argument("prefix", nargs="?", default="")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=_with_client(_ls))

    p = sub.add_parser("status", parents=[common], help="status of every endpoint")
    p.set_defaults(func=_status)

    m = sub.add_parser("member", help="membership").add_subparsers(dest="member_cmd", metavar="CMD")
    m.required = True
    p = m.add_parser("list", parents=[common], help="list members")
    p.set_defaults(func=_with_client(_member_list))
    p = m.add_parser("add", parents=[common], help="add a member")
    p.add_argument("peer_url")
    p.add_argument("--name")
    p.add_argument("--learner", action="store_true")
    p.set_defaults(func=_with_client(_member_add))
    p = m.add_parser("promote", parents=[common], help="promote a learner")
    p.add_argument("id", type=int)
    p.set_defaults(func=_with_client(_member_promote))
    p = m.add_parser("remove", parents=[common], help="remove a member")
    p.add_argument("id", type=int)
    p.set_defaults(func=_with_client(_member_remove))
    p = m.add_parser("transfer", parents=[common], help="move leadership")
    p.add_argument("--to", type=int, help="target member id (default: most up to date)")
    p.set_defaults(func=_with_client(_member_transfer))

    snap = sub.add_parser("snapshot", help="back up a cluster / restore a backup")
    s = snap.add_subparsers(dest="snapshot_cmd", metavar="CMD")
    s.required = True
    s3opts = argparse.ArgumentParser(add_help=False)
    s3opts.add_argument(
        "--s3-endpoint",
        help="S3-compatible endpoint URL for s3:// targets "
        "[AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL; default: AWS]",
    )
    s3opts.add_argument(
        "--s3-region", help="S3 region [AWS_REGION, AWS_DEFAULT_REGION; default: us-east-1]"
    )
    p = s.add_parser(
        "save",
        parents=[common, s3opts],
        help="download a point-in-time copy of the state machine to FILE or s3://bucket/key",
    )
    p.add_argument(
        "file",
        help="a file, or s3://bucket/key (verified upload; s3://bucket/prefix/ names the "
        "object raftkv-<UTC time>-<index>.snapshot under the prefix)",
    )
    p.add_argument("--serializable", action="store_true", help="no quorum round (stale ok)")
    p.set_defaults(func=_snapshot_save, prefix="raftkv snapshot save")
    p = s.add_parser(
        "restore",
        parents=[s3opts],
        help="turn a saved FILE or s3://bucket/key into the data dir of a NEW 1-member cluster",
        description="Writes DIR (must be new or empty) for a new single-member cluster "
        "holding FILE's keys and revisions. Start it with: raftkv serve --data-dir DIR "
        "--name NAME --advertise-peer-url URL --listen-peer ... --listen-client ... "
        "--cluster-token TOKEN; grow it with `raftkv member add` + `serve --join`.",
    )
    p.add_argument("file", help="a file or s3://bucket/key (SHA-256 checked first)")
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--advertise-peer-url", required=True)
    p.add_argument(
        "--cluster-token",
        default="",
        help="token of the NEW cluster (never the old one's); default: a fresh random one",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_snapshot_restore, prefix="raftkv snapshot restore")
    p = s.add_parser(
        "status",
        parents=[s3opts],
        help="verify FILE (or s3://bucket/key) and print its applied index, keys, size",
    )
    p.add_argument("file", help="a file or s3://bucket/key")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_snapshot_status, prefix="raftkv snapshot status")
    p = s.add_parser(
        "list", parents=[s3opts], help="list the backups under s3://bucket/prefix/, oldest first"
    )
    p.add_argument(
        "where", metavar="PREFIX", help="s3://bucket/prefix/ (temporaries of saves skipped)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_snapshot_list, prefix="raftkv snapshot list")
    p = s.add_parser(
        "prune",
        parents=[s3opts],
        help="delete all but the newest N backups under s3://bucket/prefix/",
        description="Every object under the prefix counts as a backup (give each cluster "
        "its own prefix); newest by last-modified time, then key. Temporaries that a "
        "killed save left behind are deleted once an hour old.",
    )
    p.add_argument("where", metavar="PREFIX", help="s3://bucket/prefix/")
    p.add_argument("--keep", type=int, required=True, help="how many newest backups to keep")
    p.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_snapshot_prune, prefix="raftkv snapshot prune")

    from .cli_coord import add_commands  # watch, lease, txn, compact, lock, elect

    add_commands(sub, common)


def add_tls_arguments(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """etcdctl's client TLS flags (docs/tls.md), each with its RAFTKV_* variable;
    `default` replaces the variables' values (argparse.SUPPRESS: set only if given)."""
    for flag, env, what in (
        ("--cacert", "CACERT", "CA file that verifies the members' certificates"),
        ("--cert", "CERT", "client certificate file (for --client-cert-auth members)"),
        ("--key", "KEY", "key file of --cert"),
    ):
        p.add_argument(
            flag,
            # Not `key`: that is the positional of put/get/del.
            dest="tls_" + flag.removeprefix("--"),
            default=(_env(env, "") or None) if default is None else default,
            metavar="FILE",
            help=f"{what} (RAFTKV_{env})",
        )


def tls_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The client's TLS arguments from `add_tls_arguments`' flags."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--cert and --key go together (or RAFTKV_CERT and RAFTKV_KEY)")
    return {"cacert": args.tls_cacert, "cert": args.tls_cert, "key": args.tls_key}


def _endpoints(args: argparse.Namespace) -> list[str]:
    return [e.strip() for e in args.endpoints.split(",") if e.strip()]


def _out(args: argparse.Namespace) -> Callable[[Any], None]:
    return _print_json if args.json else _print_plain


def _with_client(cmd: Callable[[c.Client, argparse.Namespace], int]) -> Command:
    """A client command: runs `cmd` with a client of --endpoints."""

    def run(args: argparse.Namespace) -> int:
        from . import client

        with client.Client(_endpoints(args), timeout=args.timeout, **tls_kwargs(args)) as cl:
            return cmd(cl, args)

    return run


def _put(cl: c.Client, args: argparse.Namespace) -> int:
    value = sys.stdin.buffer.read() if args.value == "-" else args.value.encode()
    res = cl.put(
        args.key, value, if_match=args.if_match, if_none_match=args.create, lease=args.lease
    )
    _out(args)({"revision": res.revision} if args.json else f"OK revision={res.revision}")
    return 0


def _get(cl: c.Client, args: argparse.Namespace) -> int:
    consistency: c.Consistency = "serializable" if args.serializable else "linearizable"
    if args.rev:
        kv = cl.get_kv(args.key, revision=args.rev, consistency=consistency)
        if kv is None:
            print(f"key {args.key!r} not found at revision {args.rev}", file=sys.stderr)
            return EXIT_NOT_FOUND
        if args.json:
            _print_json(
                {
                    "key": args.key,
                    "value": kv.value.decode(errors="replace"),
                    "revision": kv.mod_revision,
                    "create_revision": kv.create_revision,
                    "version": kv.version,
                    "lease": kv.lease,
                }
            )
        else:
            sys.stdout.buffer.write(kv.value + b"\n")
        return 0
    got = cl.get(args.key, consistency=consistency)
    if got is None:
        print(f"key {args.key!r} not found", file=sys.stderr)
        return EXIT_NOT_FOUND
    if args.json:
        _print_json(
            {"key": args.key, "value": got.value.decode(errors="replace"), "revision": got.revision}
        )
    else:
        sys.stdout.buffer.write(got.value + b"\n")
    return 0


def _del(cl: c.Client, args: argparse.Namespace) -> int:
    wr = cl.delete(args.key, if_match=args.if_match)
    _out(args)({"revision": wr.revision} if args.json else f"OK revision={wr.revision}")
    return 0


def _ls(cl: c.Client, args: argparse.Namespace) -> int:
    items = cl.list(args.prefix, limit=args.limit)
    if args.json:
        _print_json(
            [
                {"key": i.key, "value": i.value.decode(errors="replace"), "revision": i.revision}
                for i in items
            ]
        )
    else:
        for i in items:
            print(f"{i.key}\t{i.revision}\t{i.value.decode(errors='replace')}")
    return 0


def _member_list(cl: c.Client, args: argparse.Namespace) -> int:
    members = cl.members()
    if args.json:
        _print_json([_member_dict(m) for m in members])
    else:
        print(f"{'ID':>6}  {'NAME':<16} {'ROLE':<8} PEER URLS / CLIENT URLS")
        for m in members:
            role = "learner" if m.learner else "voter"
            print(
                f"{m.id:>6}  {m.name:<16} {role:<8} "
                f"{','.join(m.peer_urls)} {','.join(m.client_urls)}"
            )
    return 0


def _member_add(cl: c.Client, args: argparse.Namespace) -> int:
    mem = cl.add_member(args.peer_url, name=args.name, learner=args.learner)
    _out(args)(_member_dict(mem) if args.json else f"added member {mem.id} ({mem.name})")
    return 0


def _member_promote(cl: c.Client, args: argparse.Namespace) -> int:
    mem = cl.promote_member(args.id)
    _out(args)(_member_dict(mem) if args.json else f"promoted member {mem.id}")
    return 0


def _member_remove(cl: c.Client, args: argparse.Namespace) -> int:
    cl.remove_member(args.id)
    _out(args)({"removed": args.id} if args.json else f"removed member {args.id}")
    return 0


def _member_transfer(cl: c.Client, args: argparse.Namespace) -> int:
    lead = cl.transfer_leader(args.to)
    _out(args)({"leader": lead} if args.json else f"leader is now member {lead}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from . import client

    rows = []
    worst = 0
    for ep in _endpoints(args):
        try:
            with client.Client([ep], timeout=args.timeout, retries=0, **tls_kwargs(args)) as one:
                st = one.status()
            rows.append({"endpoint": ep, **_status_dict(st)})
        except Exception as exc:
            rows.append({"endpoint": ep, "error": str(exc)})
            worst = EXIT_UNAVAILABLE
    if args.json:
        _print_json(rows)
    else:
        print(
            f"{'ENDPOINT':<28} {'ID':>4} {'ROLE':<10} {'LEADER':>6} {'TERM':>6} "
            f"{'COMMIT':>8} {'APPLIED':>8}"
        )
        for r in rows:
            if "error" in r:
                print(f"{r['endpoint']:<28} unreachable: {r['error']}")
            else:
                print(
                    f"{r['endpoint']:<28} {r['id']:>4} {r['role']:<10} {r['leader']:>6} "
                    f"{r['term']:>6} {r['commit_index']:>8} {r['applied_index']:>8}"
                )
    return worst


# --- snapshot (backup) ----------------------------------------------------------------


def _snapshot_row(path: Path | str, data: bytes, info: SnapshotInfo) -> dict[str, object]:
    import hashlib

    return {
        "file": str(path),
        "applied_index": info.applied_index,
        "keys": info.keys,
        "bytes": info.size,
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def _snapshot_save(args: argparse.Namespace) -> int:
    from . import backup, client

    consistency: client.Consistency = "serializable" if args.serializable else "linearizable"
    with client.Client(_endpoints(args), timeout=args.timeout, **tls_kwargs(args)) as cl:
        data = cl.snapshot(consistency=consistency)
    info = backup.verify(data, "the downloaded snapshot")
    target = _snapshot_write(args, data, info)
    row = _snapshot_row(target, data, info)
    _out(args)(
        row
        if args.json
        else f"saved {target}: applied index {info.applied_index}, "
        f"{info.keys} keys, {info.size} bytes, sha256 {row['sha256']}"
    )
    return 0


def _s3_options(args: argparse.Namespace) -> Any:
    from . import s3

    return s3.S3Options(endpoint_url=args.s3_endpoint or None, region=args.s3_region or None)


def _snapshot_write(args: argparse.Namespace, data: bytes, info: SnapshotInfo) -> str:
    """Write verified snapshot bytes to the file or s3:// URL `args.file`; where."""
    from . import backup, s3

    if not s3.is_s3_url(args.file):
        backup.write_file(Path(args.file), data)
        return str(args.file)
    url = s3.parse_url(args.file)
    if url.is_prefix:
        url = s3.backup_key(url, info)
    with s3.Store(_s3_options(args)) as store:
        store.save(url, data, info)
    return str(url)


def _snapshot_read(args: argparse.Namespace) -> tuple[bytes, SnapshotInfo]:
    """A verified backup from the file or s3:// URL `args.file` (an object's SHA-256
    is checked against the one stored at upload first)."""
    from . import backup, s3

    if not s3.is_s3_url(args.file):
        return backup.read_file(Path(args.file))
    with s3.Store(_s3_options(args)) as store:
        got = store.load(s3.parse_url(args.file))
    return got.data, got.info


def _object_row(o: Any) -> dict[str, object]:
    return {
        "url": str(o.url),
        "key": o.url.key,
        "bytes": o.size,
        "last_modified": o.last_modified.isoformat(),
    }


def _snapshot_list(args: argparse.Namespace) -> int:
    from . import s3

    prefix = s3.parse_url(args.where)
    with s3.Store(_s3_options(args)) as store:
        backups, _ = store.list_objects(prefix)
    if args.json:
        _print_json({"objects": [_object_row(o) for o in backups]})
    else:
        for o in backups:
            print(f"{o.last_modified.isoformat()} {o.size:>12} {o.url}")
    return 0


def _snapshot_prune(args: argparse.Namespace) -> int:
    from . import s3

    prefix = s3.parse_url(args.where)
    with s3.Store(_s3_options(args)) as store:
        res = store.prune(prefix, args.keep, dry_run=args.dry_run)
    if args.json:
        _print_json(
            {
                "kept": [_object_row(o) for o in res.kept],
                "deleted": [_object_row(o) for o in res.deleted],
                "stale_temporaries": [_object_row(o) for o in res.stale_temporaries],
                "dry_run": args.dry_run,
            }
        )
    else:
        verb = "would delete" if args.dry_run else "deleted"
        for o in [*res.deleted, *res.stale_temporaries]:
            print(f"{verb} {o.url}")
        print(f"kept {len(res.kept)}, {verb} {len(res.deleted) + len(res.stale_temporaries)}")
    return 0


def _snapshot_status(args: argparse.Namespace) -> int:
    data, info = _snapshot_read(args)
    row = _snapshot_row(args.file, data, info)
    _out(args)(
        row
        if args.json
        else f"{args.file}: OK, applied index {info.applied_index}, "
        f"{info.keys} keys, {info.size} bytes, sha256 {row['sha256']}"
    )
    return 0


def _snapshot_restore(args: argparse.Namespace) -> int:
    from . import backup

    token = args.cluster_token or backup.new_cluster_token()
    data, info = _snapshot_read(args)
    res = backup.restore_data(
        data,
        info,
        str(args.file),
        args.data_dir,
        name=args.name,
        peer_url=args.advertise_peer_url,
        cluster_token=token,
    )
    if args.json:
        _print_json(
            {
                "data_dir": str(res.data_dir),
                "member_id": res.member_id,
                "name": res.name,
                "peer_url": res.peer_url,
                "cluster_token": res.cluster_token,
                "cluster_id": res.cluster_id,
                "applied_index": res.applied_index,
                "keys": res.keys,
            }
        )
    else:
        serve = (
            f"raftkv serve --data-dir {res.data_dir} --name {res.name} "
            f"--advertise-peer-url {res.peer_url} --cluster-token {res.cluster_token} "
            "--listen-peer HOST:PORT --listen-client HOST:PORT [--peer-secret ...]"
        )
        print(
            f"restored {res.keys} keys at applied index {res.applied_index} into "
            f"{res.data_dir}: member {res.member_id} ({res.name}) of a NEW cluster "
            f"{res.cluster_id}, token {res.cluster_token}\nstart it with:\n  {serve}"
        )
    return 0


# --- output ---------------------------------------------------------------------------


def _status_dict(st: Any) -> dict[str, Any]:
    keys = (
        "id",
        "name",
        "role",
        "leader",
        "term",
        "commit_index",
        "applied_index",
        "last_index",
        "snapshot_index",
    )
    return {k: getattr(st, k) for k in keys}


def _member_dict(m: Any) -> dict[str, Any]:
    return {
        "id": m.id,
        "name": m.name,
        "peer_urls": list(m.peer_urls),
        "client_urls": list(m.client_urls),
        "learner": m.learner,
    }


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _print_plain(obj: Any) -> None:
    print(obj if isinstance(obj, str) else json.dumps(obj, default=str))


# --- entry point ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raftkv", description=__doc__)
    p.add_argument("--version", action="version", version=f"raftkv {__version__}")
    p.set_defaults(func=None, prefix="raftkv", passthrough=False)
    add_tls_arguments(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _add_serve(sub)
    _add_cluster(sub)
    sub.add_parser("demo", help="run a simulated three-member cluster in-process").set_defaults(
        func=_demo
    )
    # The operator's own parser owns its flags (and --help); kopf is imported only
    # when the operator actually runs.
    sub.add_parser("operator", help="run the Kubernetes operator", add_help=False).set_defaults(
        func=_operator, passthrough=True
    )
    # Like the operator, `verify` owns its flags (raftkv.verify.live), imported lazily.
    sub.add_parser(
        "verify", help="check a running cluster for linearizability", add_help=False
    ).set_defaults(func=_verify, passthrough=True)
    _add_client(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not args.passthrough:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    func: Command | None = args.func
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return func(args)
    except Exception as exc:
        code = exit_code(exc)
        if code is None:
            raise
        print(f"{args.prefix}: {exc}", file=sys.stderr)
        return code


if __name__ == "__main__":
    # `python -m raftkv.cli` runs this file as __main__, a second copy of the module:
    # run the imported one, so that its UsageError is the one that modules importing
    # `raftkv.cli` (cli_coord, verify) raise and `exit_code` recognises.
    from raftkv.cli import main as _main

    sys.exit(_main())
