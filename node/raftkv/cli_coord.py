"""`raftkv watch | lease | txn | compact | lock | elect`: the coordination commands,
added to the client commands of `raftkv.cli` (same --endpoints, --json, --timeout and
TLS flags, same exit codes).

`raftkv txn` reads a transaction from stdin (or --file) in one of two forms:

- JSON, the body of `POST /v1/txn` (etcd's JSON gateway shape; keys and values
  base64), e.g. {"compare": [{"key": "YQ==", "target": "MOD", "result": "EQUAL",
  "mod_revision": 5}], "success": [{"request_put": {"key": "YQ==", "value": "eA=="}}]};
- etcdctl's line form: compares, a blank line, success ops, a blank line, failure ops:

      mod("a") = "5"
      value("b") != "x"

      put a x
      del b

      get a

  compares are `version|create|mod|value|lease("key") =|!=|<|> "operand"`; ops are
  `get KEY [END] [--prefix]`, `put KEY VALUE [--lease ID]`, `del KEY [END] [--prefix]`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

from .cli import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    SubParsers,
    UsageError,
    _out,
    _print_json,
    _with_client,
)

if TYPE_CHECKING:
    from . import client as c
    from . import client_ops as ops
    from .client_watch import WatchEvent


def add_commands(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """The coordination subcommands, with the client commands' `common` flags."""
    p = sub.add_parser("watch", parents=[common], help="print changes to a key or prefix")
    p.add_argument("key")
    p.add_argument("range_end", nargs="?", help="watch [KEY, RANGE_END) instead")
    # dest: `args.prefix` is what error messages start with (raftkv.cli.main)
    p.add_argument(
        "--prefix", dest="watch_prefix", action="store_true", help="every key starting with KEY"
    )
    p.add_argument("--rev", type=int, default=0, help="from this revision (default: from now)")
    p.add_argument("--prev-kv", action="store_true", help="also print the previous value")
    p.set_defaults(func=_client_cmd(_watch), prefix="raftkv watch")

    lease = sub.add_parser("lease", help="leases: keys that vanish unless renewed")
    ls = lease.add_subparsers(dest="lease_cmd", metavar="CMD")
    ls.required = True
    p = ls.add_parser("grant", parents=[common], help="grant a lease of TTL seconds")
    p.add_argument("ttl", type=int)
    p.add_argument("--id", type=lease_id_arg, default=0, help="ask for this id")
    p.set_defaults(func=_client_cmd(_lease_grant), prefix="raftkv lease grant")
    p = ls.add_parser("revoke", parents=[common], help="end a lease, deleting its keys")
    p.add_argument("id", type=lease_id_arg)
    p.set_defaults(func=_client_cmd(_lease_revoke), prefix="raftkv lease revoke")
    p = ls.add_parser("keep-alive", parents=[common], help="renew a lease until Ctrl-C")
    p.add_argument("id", type=lease_id_arg)
    p.add_argument("--once", action="store_true", help="renew once and exit")
    p.set_defaults(func=_client_cmd(_lease_keep_alive), prefix="raftkv lease keep-alive")
    p = ls.add_parser("ttl", parents=[common], help="remaining and granted TTL of a lease")
    p.add_argument("id", type=lease_id_arg)
    p.add_argument("--keys", action="store_true", help="also list the attached keys")
    p.set_defaults(func=_client_cmd(_lease_ttl), prefix="raftkv lease ttl")
    p = ls.add_parser("list", parents=[common], help="list the leases")
    p.set_defaults(func=_client_cmd(_lease_list), prefix="raftkv lease list")

    p = sub.add_parser(
        "txn",
        parents=[common],
        help="run a transaction read from stdin or --file (JSON or etcdctl's line form)",
    )
    p.add_argument("--file", "-f", help="read the txn from FILE instead of stdin")
    p.add_argument("--interactive", "-i", action="store_true", help="prompt for each part")
    p.set_defaults(func=_client_cmd(_txn), prefix="raftkv txn")

    p = sub.add_parser("compact", parents=[common], help="forget history below REV")
    p.add_argument("rev", type=int)
    p.set_defaults(func=_client_cmd(_compact), prefix="raftkv compact")

    p = sub.add_parser(
        "lock",
        parents=[common],
        help="hold a distributed lock; with -- CMD..., run CMD while holding it",
        description="Acquire lock NAME. With `-- CMD [ARGS...]`: run CMD while holding "
        "it (RAFTKV_LOCK_KEY and RAFTKV_LOCK_REV, the fencing revision, in its "
        "environment), release it when CMD exits, and exit with CMD's exit code. "
        "Without CMD: print the lock key and hold it until Ctrl-C.",
    )
    p.add_argument("name")
    p.add_argument("--ttl", type=int, default=10, help="session lease TTL in seconds")
    p.set_defaults(func=_client_cmd(_lock), prefix="raftkv lock", passthrough=True)

    p = sub.add_parser(
        "elect",
        parents=[common],
        help="campaign in election NAME with VALUE and hold leadership until Ctrl-C",
    )
    p.add_argument("name")
    p.add_argument("value", nargs="?")
    p.add_argument("--listen", "-l", action="store_true", help="only print each new leader")
    p.add_argument("--ttl", type=int, default=10, help="session lease TTL in seconds")
    p.set_defaults(func=_client_cmd(_elect), prefix="raftkv elect")


def _client_cmd(cmd: Callable[[c.Client, argparse.Namespace], int]) -> Callable[..., int]:
    """`raftkv.cli._with_client`, where an argument the client refuses (a ValueError:
    an empty key, a TTL of 0, prefix and range end together) is a usage error."""

    def checked(cl: c.Client, args: argparse.Namespace) -> int:
        try:
            return cmd(cl, args)
        except (ValueError, TypeError) as exc:
            if isinstance(exc, UsageError):
                raise
            raise UsageError(str(exc)) from exc

    return _with_client(checked)


def lease_id_arg(text: str) -> int:
    """A lease id in decimal, or in hex with 0x (etcdctl prints hex)."""
    try:
        v = int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a lease id: {text!r}") from None
    if not 0 <= v < 1 << 63:
        raise argparse.ArgumentTypeError(f"a lease id is a positive 64-bit integer: {text!r}")
    return v


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def _kv_dict(kv: ops.KV) -> dict[str, Any]:
    return {
        "key": _text(kv.key),
        "value": _text(kv.value),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease,
    }


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _sigterm_is_ctrl_c() -> None:
    """SIGTERM ends a holding command like Ctrl-C: cleanly, releasing what it holds."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


# -- watch --------------------------------------------------------------------------------


def _event_line(ev: WatchEvent, as_json: bool) -> str:
    if as_json:
        row: dict[str, Any] = {"type": ev.type, **_kv_dict(ev.kv)}
        if ev.prev_kv is not None:
            row["prev_value"] = _text(ev.prev_kv.value)
        return json.dumps(row)
    line = f"{ev.type}\t{ev.revision}\t{_text(ev.key)}"
    if ev.type == "PUT":
        line += f"\t{_text(ev.kv.value)}"
    if ev.prev_kv is not None:
        line += f"\tprev={_text(ev.prev_kv.value)}"
    return line


def _watch(cl: c.Client, args: argparse.Namespace) -> int:
    if args.rev < 0:
        raise UsageError("--rev must be >= 0")
    _sigterm_is_ctrl_c()
    try:
        with cl.watch(
            args.key,
            args.range_end,
            prefix=args.watch_prefix,
            start_revision=args.rev,
            prev_kv=args.prev_kv,
        ) as w:
            for ev in w:
                print(_event_line(ev, args.json), flush=True)
    except KeyboardInterrupt:
        pass
    return 0


# -- leases -------------------------------------------------------------------------------


def _lease_grant(cl: c.Client, args: argparse.Namespace) -> int:
    g = cl.lease_grant(args.ttl, id=args.id)
    _out(args)(
        {"id": g.id, "hex": f"{g.id:x}", "ttl": g.ttl}
        if args.json
        else f"lease {g.id} (0x{g.id:x}) granted with TTL {g.ttl}s"
    )
    return 0


def _lease_revoke(cl: c.Client, args: argparse.Namespace) -> int:
    deleted = cl.lease_revoke(args.id)
    _out(args)(
        {"id": args.id, "deleted": deleted}
        if args.json
        else f"lease {args.id} revoked ({deleted} keys deleted)"
    )
    return 0


def _lease_keep_alive(cl: c.Client, args: argparse.Namespace) -> int:
    from .client import LeaseNotFound, RaftKVError
    from .concurrency import RETRY_INTERVAL

    if args.once:
        ttl = cl.lease_keepalive_once(args.id)
        _out(args)(
            {"id": args.id, "ttl": ttl} if args.json else f"lease {args.id} renewed, TTL {ttl}s"
        )
        return 0
    _sigterm_is_ctrl_c()
    try:
        while True:
            try:
                ttl = cl.lease_keepalive_once(args.id)
            except LeaseNotFound:
                print(f"lease {args.id} expired or revoked", file=sys.stderr)
                return EXIT_NOT_FOUND
            except RaftKVError as exc:
                print(f"keep-alive failed, retrying: {exc}", file=sys.stderr)
                time.sleep(RETRY_INTERVAL)
                continue
            _out(args)(
                {"id": args.id, "ttl": ttl} if args.json else f"lease {args.id} renewed, TTL {ttl}s"
            )
            sys.stdout.flush()
            time.sleep(max(ttl / 3, 0.05))
    except KeyboardInterrupt:
        return 0


def _lease_ttl(cl: c.Client, args: argparse.Namespace) -> int:
    t = cl.lease_time_to_live(args.id, keys=args.keys)
    if args.json:
        row: dict[str, Any] = {"id": t.id, "ttl": t.ttl, "granted_ttl": t.granted_ttl}
        if args.keys:
            row["keys"] = [_text(k) for k in t.keys]
        _print_json(row)
    elif t.ttl < 0:
        print(f"lease {args.id} already expired")
    else:
        line = f"lease {t.id} granted with TTL {t.granted_ttl}s, remaining {t.ttl}s"
        if args.keys:
            line += ", attached keys [" + ", ".join(_text(k) for k in t.keys) + "]"
        print(line)
    return 0 if t.ttl >= 0 else EXIT_NOT_FOUND


def _lease_list(cl: c.Client, args: argparse.Namespace) -> int:
    ids = cl.leases()
    if args.json:
        _print_json({"leases": ids})
    else:
        print(f"found {len(ids)} leases")
        for i in ids:
            print(i)
    return 0


# -- txn ----------------------------------------------------------------------------------

_COMPARE = re.compile(
    r"""^\s*(version|create|mod|value|lease)\s*\(\s*"((?:[^"\\]|\\.)*)"\s*\)\s*
    (=|==|!=|<|>)\s*(.*?)\s*$""",
    re.VERBOSE,
)
_RESULT = {"=": "EQUAL", "==": "EQUAL", "!=": "NOT_EQUAL", "<": "LESS", ">": "GREATER"}


def parse_compare(line: str) -> ops.Compare:
    """One compare of etcdctl's txn form: `mod("key") > "5"` (quotes optional around
    numbers)."""
    from .client_ops import Compare, Operand, Target

    m = _COMPARE.match(line)
    if m is None:
        raise UsageError(f'bad compare {line!r}; the form is: mod("key") = "5"')
    target, key, op, operand = m.groups()
    key = json.loads(f'"{key}"')
    if operand.startswith('"'):
        try:
            operand = json.loads(operand)
        except ValueError:
            raise UsageError(f"bad operand in {line!r}") from None
    t = Target[target.upper()]
    lhs = Operand(t, key.encode(), b"")
    if t is Target.VALUE:
        value: int | bytes = operand.encode()
    else:
        try:
            value = int(operand)
        except ValueError:
            raise UsageError(f"{target} compares with an integer: {line!r}") from None
    c: Compare = lhs._cmp(_RESULT[op], value)  # type: ignore[arg-type]
    return c


def parse_op(line: str) -> ops.RequestOp:
    """One op of etcdctl's txn form: get / put / del."""
    from .client_ops import Op

    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"bad op {line!r}: {exc}") from None
    p = argparse.ArgumentParser(
        prog=words[0] if words else "op", add_help=False, exit_on_error=False
    )
    p.add_argument("key")
    verb = words[0] if words else ""
    if verb == "put":
        p.add_argument("value")
        p.add_argument("--lease", type=lease_id_arg, default=0)
    elif verb in ("get", "del", "delete"):
        p.add_argument("range_end", nargs="?")
        p.add_argument("--prefix", action="store_true")
    else:
        raise UsageError(f"bad op {line!r}: use get, put or del")
    try:
        a, rest = p.parse_known_args(words[1:])
    except argparse.ArgumentError as exc:
        raise UsageError(f"bad op {line!r}: {exc}") from None
    if rest:
        raise UsageError(f"bad op {line!r}: unexpected {' '.join(rest)}")
    try:
        if verb == "put":
            return Op.put(a.key, a.value, lease=a.lease)
        if verb == "get":
            return Op.get(a.key, a.range_end, prefix=a.prefix)
        return Op.delete(a.key, a.range_end, prefix=a.prefix)
    except ValueError as exc:
        raise UsageError(f"bad op {line!r}: {exc}") from None


def parse_line_txn(lines: Iterator[str], prompt: Callable[[str], None] | None = None) -> ops.TxnOp:
    """etcdctl's txn form: compares, blank line, success ops, blank line, failure ops."""
    from .client_ops import Op

    parts: list[list[str]] = [[], [], []]
    titles = ("compares:", "success requests (get, put, del):", "failure requests (get, put, del):")
    i = 0
    if prompt is not None:
        prompt(titles[0])
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip():
            i += 1
            if i == 3:
                break
            if prompt is not None:
                prompt("\n" + titles[i])
            continue
        parts[i].append(line)
    return Op.txn(
        [parse_compare(x) for x in parts[0]],
        [parse_op(x) for x in parts[1]],
        [parse_op(x) for x in parts[2]],
    )


def _b64(x: Any, where: str) -> bytes:
    if x is None:
        return b""
    if not isinstance(x, str):
        raise UsageError(f"{where} must be a base64 string")
    try:
        return base64.b64decode(x, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"{where} is not base64") from None


_JSON_OPERAND = {
    "VERSION": "version",
    "CREATE": "create_revision",
    "MOD": "mod_revision",
    "VALUE": "value",
    "LEASE": "lease",
}


def _json_compare(cmp: Any, w: str) -> ops.Compare:
    from .client_ops import Operand, Target

    if not isinstance(cmp, dict):
        raise UsageError(f"{w} must be an object")
    target = str(cmp.get("target", "")).upper()
    if target not in _JSON_OPERAND:
        raise UsageError(f"{w}.target must be one of {', '.join(_JSON_OPERAND)}")
    result = _RESULT.get(str(cmp.get("result", "EQUAL")), str(cmp.get("result", "EQUAL")))
    if result not in _RESULT.values():
        raise UsageError(f"{w}.result must be EQUAL, NOT_EQUAL, LESS or GREATER")
    raw = cmp.get(_JSON_OPERAND[target])
    operand: int | bytes
    if target == "VALUE":
        operand = _b64(raw, f"{w}.value")
    else:
        try:
            operand = int(raw or 0)
        except (TypeError, ValueError):
            raise UsageError(f"{w}.{_JSON_OPERAND[target]} must be an integer") from None
    lhs = Operand(Target[target], _b64(cmp.get("key"), f"{w}.key"), _b64(cmp.get("range_end"), w))
    return lhs._cmp(result, operand)  # type: ignore[arg-type]


def _json_op(d: Any, w: str) -> ops.RequestOp:
    from .client_ops import Op

    if not isinstance(d, dict) or len(d) != 1:
        raise UsageError(f"{w} must hold exactly one request_* object")
    ((kind, body),) = d.items()
    if not isinstance(body, dict):
        raise UsageError(f"{w}.{kind} must be an object")
    key = _b64(body.get("key"), f"{w}.{kind}.key")
    end = _b64(body.get("range_end"), f"{w}.{kind}.range_end") or None
    try:
        if kind == "request_put":
            value = _b64(body.get("value"), f"{w}.{kind}.value")
            return Op.put(key, value, lease=int(body.get("lease") or 0))
        if kind == "request_range":
            return Op.get(key, end)
        if kind == "request_delete_range":
            return Op.delete(key, end)
        if kind == "request_txn":
            return parse_json_txn(body, f"{w}.request_txn")
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{w}: {exc}") from None
    raise UsageError(f"{w}: unknown op {kind!r}")


def parse_json_txn(doc: Any, where: str = "txn") -> ops.TxnOp:
    """The body of `POST /v1/txn` (etcd's gateway shape, base64 keys and values)."""
    from .client_ops import Op

    if not isinstance(doc, dict):
        raise UsageError(f"{where} must be a JSON object")
    return Op.txn(
        [_json_compare(x, f"{where}.compare[{i}]") for i, x in enumerate(doc.get("compare") or [])],
        [_json_op(x, f"{where}.success[{i}]") for i, x in enumerate(doc.get("success") or [])],
        [_json_op(x, f"{where}.failure[{i}]") for i, x in enumerate(doc.get("failure") or [])],
    )


def _response_dict(r: Any) -> dict[str, Any]:
    from .client_ops import DeleteRangeResult, PutResult, RangeResult, TxnResult

    if isinstance(r, RangeResult):
        return {"kvs": [_kv_dict(kv) for kv in r.kvs], "more": r.more, "count": r.count}
    if isinstance(r, PutResult):
        return {"put": True, "revision": r.header.revision}
    if isinstance(r, DeleteRangeResult):
        return {"deleted": r.deleted}
    assert isinstance(r, TxnResult)
    return _txn_dict(r)


def _txn_dict(r: ops.TxnResult) -> dict[str, Any]:
    return {
        "succeeded": r.succeeded,
        "revision": r.header.revision,
        "responses": [_response_dict(x) for x in r.responses],
    }


def _print_response(r: Any) -> None:
    from .client_ops import DeleteRangeResult, PutResult, RangeResult, TxnResult

    if isinstance(r, RangeResult):
        for kv in r.kvs:
            print(_text(kv.key))
            print(_text(kv.value))
    elif isinstance(r, PutResult):
        print("OK")
    elif isinstance(r, DeleteRangeResult):
        print(r.deleted)
    elif isinstance(r, TxnResult):
        print("SUCCESS" if r.succeeded else "FAILURE")
        for x in r.responses:
            _print_response(x)


def _txn(cl: c.Client, args: argparse.Namespace) -> int:
    if args.file:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
        lines: Iterator[str] = iter(text.splitlines(keepends=True))
    elif args.interactive:
        text = ""
        lines = iter(sys.stdin.readline, "")
    else:
        text = sys.stdin.read()
        lines = iter(text.splitlines(keepends=True))
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"the txn is not valid JSON: {exc}") from None
        t = parse_json_txn(doc)
    else:
        t = parse_line_txn(lines, (lambda s: print(s, flush=True)) if args.interactive else None)
    res = cl.txn().if_(*t.compare).then(*t.success).else_(*t.failure).commit()
    if args.json:
        _print_json(_txn_dict(res))
    else:
        if args.interactive:
            print()
        _print_response(res)
    return 0


def _compact(cl: c.Client, args: argparse.Namespace) -> int:
    if args.rev <= 0:
        raise UsageError("REV must be > 0")
    h = cl.compact(args.rev)
    _out(args)(
        {"compacted": args.rev, "revision": h.revision}
        if args.json
        else f"compacted revision {args.rev}"
    )
    return 0


# -- lock and elect -----------------------------------------------------------------------


def _command_of(args: argparse.Namespace) -> list[str]:
    cmd = list(args.extra)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    elif cmd:
        raise UsageError(f"put the command after --: raftkv lock NAME -- {' '.join(cmd)}")
    return cmd


def _lock(cl: c.Client, args: argparse.Namespace) -> int:
    from .concurrency import Lock

    cmd = _command_of(args)
    _sigterm_is_ctrl_c()
    lock = Lock(cl, args.name, ttl=args.ttl)
    try:
        lock.acquire()
    except KeyboardInterrupt:
        return EXIT_ERROR
    try:
        assert lock.key is not None
        if not cmd:
            _out(args)({"key": lock.key, "revision": lock.revision} if args.json else lock.key)
            sys.stdout.flush()
            lock.lost.wait()
            print(f"lock {lock.key} lost: its session lease ended", file=sys.stderr)
            return EXIT_ERROR
        env = {**os.environ, "RAFTKV_LOCK_KEY": lock.key, "RAFTKV_LOCK_REV": str(lock.revision)}
        return _run_holding(cmd, env, lock)
    except KeyboardInterrupt:
        return 0
    finally:
        lock.release()


def _run_holding(cmd: list[str], env: dict[str, str], lock: Any) -> int:
    """Run `cmd`; its exit code (128 + N when killed by signal N). If the lock is lost
    meanwhile, `cmd` is terminated: it must not go on believing it holds the lock."""
    try:
        proc = subprocess.Popen(cmd, env=env)
    except OSError as exc:
        print(f"raftkv lock: cannot run {cmd[0]!r}: {exc}", file=sys.stderr)
        return 127
    try:
        while True:
            try:
                rc = proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if lock.lost.is_set():
                    print("raftkv lock: the lock was lost; stopping the command", file=sys.stderr)
                    proc.terminate()
                    proc.wait()
                    return EXIT_ERROR
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait()
    return 128 - rc if rc < 0 else rc


def _elect(cl: c.Client, args: argparse.Namespace) -> int:
    from .concurrency import Election

    _sigterm_is_ctrl_c()
    election = Election(cl, args.name, ttl=args.ttl)
    try:
        if args.listen:
            for kv in election.observe():
                row = {"key": _text(kv.key), "value": _text(kv.value)}
                _out(args)(row if args.json else f"{row['key']}\n{row['value']}")
                sys.stdout.flush()
            return 0
        if args.value is None:
            raise UsageError("give a VALUE to campaign with (or --listen)")
        election.campaign(args.value)
        assert election.key is not None and election.lease is not None
        won: dict[str, Any] = {
            "key": election.key,
            "value": args.value,
            "revision": election.revision,
        }
        _out(args)(won if args.json else f"{election.key}\n{args.value}")
        sys.stdout.flush()
        election.lease.lost.wait()
        print(f"leadership lost: the session lease of {election.key} ended", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 0
    finally:
        election.close()


__all__ = ["add_commands", "parse_compare", "parse_json_txn", "parse_line_txn", "parse_op"]
