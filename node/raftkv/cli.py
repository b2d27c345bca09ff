"""The `raftkv` command line: run a member, a local cluster, the operator, or talk to
a cluster as a client. Every `serve` flag can also come from a RAFTKV_* variable."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:
    from .backup import SnapshotInfo

EXIT_USAGE = 2
EXIT_ERROR = 1
EXIT_NOT_FOUND = 4
EXIT_PRECONDITION = 5
EXIT_UNAVAILABLE = 6


def _env(name: str, default: str) -> str:
    return os.environ.get("RAFTKV_" + name, default)


def _split_hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run one member")
    p.add_argument("--name", default=_env("NAME", "default"))
    p.add_argument("--data-dir", default=_env("DATA_DIR", ""), help="default: ./<name>.raftkv")
    p.add_argument("--listen-client", default=_env("LISTEN_CLIENT", "127.0.0.1:2379"))
    p.add_argument("--listen-peer", default=_env("LISTEN_PEER", "127.0.0.1:2380"))
    p.add_argument("--advertise-client-url", default=_env("ADVERTISE_CLIENT_URL", ""))
    p.add_argument("--advertise-peer-url", default=_env("ADVERTISE_PEER_URL", ""))
    p.add_argument(
        "--initial-cluster",
        default=_env("INITIAL_CLUSTER", ""),
        help="name=peer_url,... of a NEW cluster (ignored when the data dir has state); "
        "default: a single-member cluster of this member",
    )
    p.add_argument(
        "--join",
        action="store_true",
        default=_env("JOIN", "") in ("1", "true", "yes"),
        help="wait to be added to an existing cluster instead of bootstrapping",
    )
    p.add_argument(
        "--initial-cluster-state",
        choices=("new", "existing"),
        default=_env("INITIAL_CLUSTER_STATE", "new"),
        help="with an empty data dir: 'new' bootstraps, 'existing' joins (= --join)",
    )
    p.add_argument(
        "--discovery-endpoints",
        default=_env("DISCOVERY_ENDPOINTS", ""),
        help="client URLs of the cluster to join; with --join and no --member-id the "
        "member takes the id of the learner added with its peer URL",
    )
    p.add_argument("--member-id", type=int, default=int(_env("MEMBER_ID", "0")))
    p.add_argument("--cluster-token", default=_env("CLUSTER_TOKEN", "raftkv"))
    p.add_argument("--peer-secret", default=_env("PEER_SECRET", ""))
    p.add_argument("--snapshot-count", type=int, default=int(_env("SNAPSHOT_COUNT", "10000")))
    p.add_argument(
        "--snapshot-catchup-entries",
        type=int,
        default=int(_env("SNAPSHOT_CATCHUP_ENTRIES", "5000")),
        help="entries kept behind a snapshot for slightly lagging followers",
    )
    p.add_argument("--tick-ms", type=int, default=int(_env("TICK_MS", "100")))
    p.add_argument("--election-ticks", type=int, default=int(_env("ELECTION_TICKS", "10")))
    p.add_argument("--heartbeat-ticks", type=int, default=int(_env("HEARTBEAT_TICKS", "1")))
    p.add_argument("--max-key-bytes", type=int, default=int(_env("MAX_KEY_BYTES", "4096")))
    p.add_argument(
        "--max-value-bytes", type=int, default=int(_env("MAX_VALUE_BYTES", str(1 << 20)))
    )
    p.add_argument("--request-timeout", type=float, default=float(_env("REQUEST_TIMEOUT", "5")))
    p.add_argument("--stop-timeout", type=float, default=float(_env("STOP_TIMEOUT", "10")))
    p.add_argument("--log-format", choices=("text", "json"), default=_env("LOG_FORMAT", "text"))
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "info"))


def _serve(args: argparse.Namespace) -> int:
    from .server.config import ServerConfig, parse_initial_cluster
    from .server.logs import setup_logging
    from .server.main import run
    from .server.membership import validate_url

    setup_logging(args.log_format, args.log_level)
    try:
        chost, cport = _split_hostport(args.listen_client)
        phost, pport = _split_hostport(args.listen_peer)
        peer_url = args.advertise_peer_url or f"http://{phost}:{pport}"
        spec = args.initial_cluster or f"{args.name}={peer_url}"
        join = args.join or args.initial_cluster_state == "existing"
        initial = [] if join else parse_initial_cluster(spec)
        discovery = tuple(
            validate_url(u.strip()) for u in args.discovery_endpoints.split(",") if u.strip()
        )
        if join and args.member_id <= 0 and not discovery:
            raise ValueError("joining needs --member-id or --discovery-endpoints")
    except (ValueError, argparse.ArgumentTypeError) as exc:
        print(f"raftkv serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    cfg = ServerConfig(
        name=args.name,
        data_dir=Path(args.data_dir or f"{args.name}.raftkv"),
        client_host=chost,
        client_port=cport,
        peer_host=phost,
        peer_port=pport,
        advertise_client_url=args.advertise_client_url,
        advertise_peer_url=args.advertise_peer_url,
        initial_cluster=initial,
        join=join,
        member_id=args.member_id,
        discovery_endpoints=discovery,
        cluster_token=args.cluster_token,
        peer_secret=args.peer_secret,
        snapshot_count=args.snapshot_count,
        snapshot_catchup_entries=args.snapshot_catchup_entries,
        tick_ms=args.tick_ms,
        election_ticks=args.election_ticks,
        heartbeat_ticks=args.heartbeat_ticks,
        max_key_bytes=args.max_key_bytes,
        max_value_bytes=args.max_value_bytes,
        request_timeout=args.request_timeout,
        stop_timeout=args.stop_timeout,
        log_format=args.log_format,
        log_level=args.log_level,
    )
    return run(cfg)


def _add_cluster(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cluster", help="run a local N-member cluster on loopback")
    p.add_argument("--size", "-n", type=int, default=3)
    p.add_argument("--data-dir", default="data/cluster")
    p.add_argument("--base-port", type=int, default=23790)
    p.add_argument("--fresh", action="store_true", help="wipe the data dir first")
    p.add_argument("--snapshot-count", type=int, default=10000)


def _cluster(args: argparse.Namespace) -> int:
    from .localcluster import run_local_cluster

    return run_local_cluster(
        size=args.size,
        data_dir=Path(args.data_dir),
        base_port=args.base_port,
        fresh=args.fresh,
        snapshot_count=args.snapshot_count,
    )


# --- client commands ------------------------------------------------------------------


def _add_client(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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

    p = sub.add_parser("put", parents=[common], help="write a key")
    p.add_argument("key")
    p.add_argument("value", help="the value; '-' reads it from stdin")
    p.add_argument("--if-match", type=int, help="only if the key's revision is this")
    p.add_argument("--create", action="store_true", help="only if the key does not exist")

    p = sub.add_parser("get", parents=[common], help="read a key")
    p.add_argument("key")
    p.add_argument("--serializable", action="store_true", help="local read, no quorum round")

    p = sub.add_parser("del", parents=[common], help="delete a key")
    p.add_argument("key")
    p.add_argument("--if-match", type=int)

    p = sub.add_parser("ls", parents=[common], help="list keys by prefix")
    p.add_argument("prefix", nargs="?", default="")
    p.add_argument("--limit", type=int, default=100)

    p = sub.add_parser("status", parents=[common], help="status of every endpoint")

    m = sub.add_parser("member", help="membership").add_subparsers(dest="member_cmd", metavar="CMD")
    m.required = True
    m.add_parser("list", parents=[common], help="list members")
    p = m.add_parser("add", parents=[common], help="add a member")
    p.add_argument("peer_url")
    p.add_argument("--name")
    p.add_argument("--learner", action="store_true")
    p = m.add_parser("promote", parents=[common], help="promote a learner")
    p.add_argument("id", type=int)
    p = m.add_parser("remove", parents=[common], help="remove a member")
    p.add_argument("id", type=int)
    p = m.add_parser("transfer", parents=[common], help="move leadership")
    p.add_argument("--to", type=int, help="target member id (default: most up to date)")

    snap = sub.add_parser("snapshot", help="back up a cluster / restore a backup")
    s = snap.add_subparsers(dest="snapshot_cmd", metavar="CMD")
    s.required = True
    p = s.add_parser(
        "save",
        parents=[common],
        help="download a point-in-time copy of the state machine to FILE",
    )
    p.add_argument("file", type=Path)
    p.add_argument("--serializable", action="store_true", help="no quorum round (stale ok)")
    p = s.add_parser(
        "restore",
        help="turn a saved FILE into the data dir of a NEW one-member cluster",
        description="Writes DIR (must be new or empty) for a new single-member cluster "
        "holding FILE's keys and revisions. Start it with: raftkv serve --data-dir DIR "
        "--name NAME --advertise-peer-url URL --listen-peer ... --listen-client ... "
        "--cluster-token TOKEN; grow it with `raftkv member add` + `serve --join`.",
    )
    p.add_argument("file", type=Path)
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--advertise-peer-url", required=True)
    p.add_argument(
        "--cluster-token",
        default="",
        help="token of the NEW cluster (never the old one's); default: a fresh random one",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = s.add_parser("status", help="verify FILE and print its applied index, keys, size")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _snapshot_row(path: Path, data: bytes, info: SnapshotInfo) -> dict[str, object]:
    import hashlib

    return {
        "file": str(path),
        "applied_index": info.applied_index,
        "keys": info.keys,
        "bytes": info.size,
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def _snapshot_main(args: argparse.Namespace) -> int:
    from . import backup
    from . import client as c

    out: Callable[[Any], None] = _print_json if args.json else _print_plain
    try:
        if args.snapshot_cmd == "save":
            endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
            consistency: c.Consistency = "serializable" if args.serializable else "linearizable"
            with c.Client(endpoints, timeout=args.timeout) as cl:
                data = cl.snapshot(consistency=consistency)
            info = backup.verify(data, "the downloaded snapshot")
            backup.write_file(args.file, data)
            row = _snapshot_row(args.file, data, info)
            out(
                row
                if args.json
                else f"saved {args.file}: applied index {info.applied_index}, "
                f"{info.keys} keys, {info.size} bytes, sha256 {row['sha256']}"
            )
        elif args.snapshot_cmd == "status":
            data, info = backup.read_file(args.file)
            row = _snapshot_row(args.file, data, info)
            out(
                row
                if args.json
                else f"{args.file}: OK, applied index {info.applied_index}, "
                f"{info.keys} keys, {info.size} bytes, sha256 {row['sha256']}"
            )
        else:
            token = args.cluster_token or backup.new_cluster_token()
            res = backup.restore(
                args.file,
                args.data_dir,
                name=args.name,
                peer_url=args.advertise_peer_url,
                cluster_token=token,
            )
            serve = (
                f"raftkv serve --data-dir {res.data_dir} --name {res.name} "
                f"--advertise-peer-url {res.peer_url} --cluster-token {res.cluster_token} "
                "--listen-peer HOST:PORT --listen-client HOST:PORT [--peer-secret ...]"
            )
            if args.json:
                out(
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
                print(
                    f"restored {res.keys} keys at applied index {res.applied_index} into "
                    f"{res.data_dir}: member {res.member_id} ({res.name}) of a NEW cluster "
                    f"{res.cluster_id}, token {res.cluster_token}\nstart it with:\n  {serve}"
                )
    except backup.BackupError as exc:
        print(f"raftkv snapshot {args.snapshot_cmd}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (c.Unavailable, c.Indeterminate) as exc:
        print(f"raftkv snapshot {args.snapshot_cmd}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except c.RaftKVError as exc:
        print(f"raftkv snapshot {args.snapshot_cmd}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def _client_main(args: argparse.Namespace) -> int:
    from . import client as c

    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    cmd = args.command if args.command != "member" else f"member {args.member_cmd}"
    out: Callable[[Any], None] = _print_json if args.json else _print_plain
    try:
        with c.Client(endpoints, timeout=args.timeout) as cl:
            if cmd == "put":
                value = sys.stdin.buffer.read() if args.value == "-" else args.value.encode()
                res = cl.put(args.key, value, if_match=args.if_match, if_none_match=args.create)
                out({"revision": res.revision} if args.json else f"OK revision={res.revision}")
            elif cmd == "get":
                got = cl.get(
                    args.key, consistency="serializable" if args.serializable else "linearizable"
                )
                if got is None:
                    print(f"key {args.key!r} not found", file=sys.stderr)
                    return EXIT_NOT_FOUND
                if args.json:
                    out(
                        {
                            "key": args.key,
                            "value": got.value.decode(errors="replace"),
                            "revision": got.revision,
                        }
                    )
                else:
                    sys.stdout.buffer.write(got.value + b"\n")
            elif cmd == "del":
                wr = cl.delete(args.key, if_match=args.if_match)
                out({"revision": wr.revision} if args.json else f"OK revision={wr.revision}")
            elif cmd == "ls":
                items = cl.list(args.prefix, limit=args.limit)
                if args.json:
                    out(
                        [
                            {
                                "key": i.key,
                                "value": i.value.decode(errors="replace"),
                                "revision": i.revision,
                            }
                            for i in items
                        ]
                    )
                else:
                    for i in items:
                        print(f"{i.key}\t{i.revision}\t{i.value.decode(errors='replace')}")
            elif cmd == "status":
                return _status(c, endpoints, args)
            elif cmd == "member list":
                members = cl.members()
                if args.json:
                    out([_member_dict(m) for m in members])
                else:
                    print(f"{'ID':>6}  {'NAME':<16} {'ROLE':<8} PEER URLS / CLIENT URLS")
                    for m in members:
                        role = "learner" if m.learner else "voter"
                        print(
                            f"{m.id:>6}  {m.name:<16} {role:<8} "
                            f"{','.join(m.peer_urls)} {','.join(m.client_urls)}"
                        )
            elif cmd == "member add":
                mem = cl.add_member(args.peer_url, name=args.name, learner=args.learner)
                out(_member_dict(mem) if args.json else f"added member {mem.id} ({mem.name})")
            elif cmd == "member promote":
                mem = cl.promote_member(args.id)
                out(_member_dict(mem) if args.json else f"promoted member {mem.id}")
            elif cmd == "member remove":
                cl.remove_member(args.id)
                out({"removed": args.id} if args.json else f"removed member {args.id}")
            elif cmd == "member transfer":
                lead = cl.transfer_leader(args.to)
                out({"leader": lead} if args.json else f"leader is now member {lead}")
    except c.NotFound as exc:
        print(f"raftkv: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except c.PreconditionFailed as exc:
        print(f"raftkv: {exc}", file=sys.stderr)
        return EXIT_PRECONDITION
    except (c.Unavailable, c.Indeterminate) as exc:
        print(f"raftkv: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except c.RaftKVError as exc:
        print(f"raftkv: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def _status(c: Any, endpoints: list[str], args: argparse.Namespace) -> int:
    rows = []
    worst = 0
    for ep in endpoints:
        try:
            with c.Client([ep], timeout=args.timeout, retries=0) as one:
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raftkv", description=__doc__)
    p.add_argument("--version", action="version", version=f"raftkv {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _add_serve(sub)
    _add_cluster(sub)
    sub.add_parser("demo", help="run a simulated three-member cluster in-process")
    # The operator's own parser owns its flags (and --help); kopf is imported only
    # when the operator actually runs.
    sub.add_parser("operator", help="run the Kubernetes operator", add_help=False)
    # Like the operator, `verify` owns its flags (raftkv.verify.live), imported lazily.
    sub.add_parser("verify", help="check a running cluster for linearizability", add_help=False)
    _add_client(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("operator", "verify"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "serve":
        return _serve(args)
    if args.command == "cluster":
        return _cluster(args)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo()
    if args.command == "operator":
        from raftkv_operator.main import cli

        return cli(extra)
    if args.command == "verify":
        from .verify.live import main as verify_main

        return verify_main(extra)
    if args.command == "snapshot":
        return _snapshot_main(args)
    if args.command in ("put", "get", "del", "ls", "status", "member"):
        return _client_main(args)
    parser.print_help()
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
