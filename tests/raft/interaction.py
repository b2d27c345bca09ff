"""An interaction interpreter over the test `Network`, after etcd/raft's
``testdata/*.txt`` interaction tests: a scenario is a file of datadriven blocks (see
``support.datadriven``), each a command whose output is what happened, printed
deterministically.

Members are numbered 1..N. Every command prints what it caused, in order:

- a delivered message as ``1->2 APP term=2 log=1/3 commit=3 entries=[2/4 "x"]``: only
  the fields that are set, ``log=T/I`` being log_term/index (``index=I`` without a
  term), entries as ``term/index`` and their data (or configuration change), e.g.
  ``1/2 add_node(2)``; suffixed ``(dropped)`` if a cut, a crash or a ``drop`` lost it,
  ``(held)`` if a ``hold`` kept it aside;
- a member whose role, term, leader or commit index changed, as
  ``  => 2: leader term=2 lead=2 commit=3`` right after the event that changed it.

Commands (``N``, ``A``, ``B`` are member ids):

``add-nodes N [pre-vote=true] [check-quorum=true] [seed=1]``
    A fresh network of voters 1..N (bootstrapped: each log holds the configuration);
    prints every member's status.
``campaign N`` / ``propose N data`` / ``transfer-leader A B`` / ``read-index N ctx``
    Call the RawNode method on N and process its Ready (messages are queued, not sent);
    a refusal prints ``error: <Exception>``.
``tick K [N ...]``
    K ticks of the given members (all by default), processing their Readies.
``deliver-msgs``
    Deliver the messages queued now (their answers are queued, not delivered).
``stabilize``
    Deliver until no member has anything to say.
``partition A,B C,D ...`` / ``isolate N`` / ``heal``
    Cut every link between the groups (a single group: from everyone else); ``heal``
    lifts cuts and drops.
``drop TYPE [from=A] [to=B]`` / ``hold TYPE [from=A] [to=B]`` / ``release``
    Lose, or keep aside, matching messages (TYPE as printed: APP, HEARTBEAT_RESP, ...);
    ``release`` lifts holds and queues the held messages again (``stabilize`` sends them).
``status [N ...]`` / ``log [N ...]`` / ``read-states N``
    State (with the leader's progress), the durable log and what was applied, and the
    ReadStates handed to the application.
"""

from __future__ import annotations

from dataclasses import dataclass

from raftkv.raft import Message, MessageType, RaftError, Role, decode_conf_change
from raftkv.raft.types import Entry, EntryType
from support import datadriven as dd

from .harness import Network

MT = MessageType


@dataclass(frozen=True)
class _Seen:
    role: Role
    term: int
    lead: int
    commit: int


def _show_data(data: bytes) -> str:
    try:
        return '"' + data.decode() + '"'
    except UnicodeDecodeError:
        return "0x" + data.hex()


def show_entry(e: Entry) -> str:
    if e.type == EntryType.CONF_CHANGE:
        cc = decode_conf_change(e.data)
        return f"{e.term}/{e.index} {cc.type.name.lower()}({cc.node_id})"
    return f"{e.term}/{e.index} {_show_data(e.data)}" if e.data else f"{e.term}/{e.index}"


def show_message(m: Message) -> str:
    parts = [f"{m.sender}->{m.to} {m.type.name}", f"term={m.term}"]
    if m.log_term:
        parts.append(f"log={m.log_term}/{m.index}")
    elif m.index:
        parts.append(f"index={m.index}")
    if m.commit:
        parts.append(f"commit={m.commit}")
    if m.entries:
        parts.append("entries=[" + ", ".join(show_entry(e) for e in m.entries) + "]")
    if m.reject:
        parts.append(f"reject hint={m.reject_hint}" if m.type == MT.APP_RESP else "reject")
    if m.context:
        parts.append(f"ctx={_show_data(m.context)}")
    if m.snapshot is not None:
        meta = m.snapshot.metadata
        parts.append(f"snap={meta.term}/{meta.index}")
    return " ".join(parts)


def _flag(td: dd.TestData, name: str, default: bool) -> bool:
    raw = td.kwargs().get(name)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise td.fail(f"{name} must be true or false, not {raw!r}")
    return raw == "true"


class Interaction:
    """The state of one scenario: the network, and what was last printed of each member."""

    def __init__(self) -> None:
        self._net: Network | None = None
        self._seen: dict[int, _Seen] = {}
        self._out: list[str] = []

    @property
    def net(self) -> Network:
        if self._net is None:
            raise ValueError("no network yet: start with add-nodes")
        return self._net

    # --- output -------------------------------------------------------------------

    def _state(self, i: int) -> _Seen:
        n = self.net.nodes[i]
        return _Seen(n.role, n.term, n.leader, n.commit)

    def _changes(self, indent: str) -> None:
        for i in sorted(self.net.nodes):
            now = self._state(i)
            if self._seen.get(i) != now:
                self._seen[i] = now
                self._out.append(
                    f"{indent}=> {i}: {now.role} term={now.term} lead={now.lead} "
                    f"commit={now.commit}"
                )

    def _deliver(self) -> None:
        net = self.net
        m = net.queue[0]
        before = len(net.held)
        got = net.deliver_one()
        line = show_message(m)
        if got is None:
            line += " (held)" if len(net.held) > before else " (dropped)"
        self._out.append(line)
        self._changes("  ")

    # --- commands -----------------------------------------------------------------

    def handle(self, td: dd.TestData) -> str:
        self._out = []
        command = getattr(self, "cmd_" + td.cmd.replace("-", "_"), None)
        if command is None:
            raise td.fail("unknown command")
        try:
            command(td)
        except RaftError as e:
            self._out.append(f"error: {type(e).__name__}: {e}")
        return "\n".join(self._out)

    def _ids(self, td: dd.TestData) -> list[int]:
        ids = [int(a) for a in td.positional()]
        return ids or sorted(self.net.nodes)

    def cmd_add_nodes(self, td: dd.TestData) -> None:
        (n,) = td.positional()
        self._net = Network(
            range(1, int(n) + 1),
            pre_vote=_flag(td, "pre-vote", True),
            check_quorum=_flag(td, "check-quorum", True),
            seed=int(td.kwargs().get("seed", "1")),
        )
        self._seen = {}
        self.cmd_status(td, ids=sorted(self.net.nodes))
        self._seen = {i: self._state(i) for i in self.net.nodes}

    def cmd_campaign(self, td: dd.TestData) -> None:
        (i,) = map(int, td.positional())
        self.net.nodes[i].campaign()
        self.net.process(i)
        self._changes("")

    def cmd_propose(self, td: dd.TestData) -> None:
        i, data = td.positional()
        self.net.nodes[int(i)].propose(data.encode())
        self.net.process(int(i))
        self._changes("")

    def cmd_transfer_leader(self, td: dd.TestData) -> None:
        a, b = map(int, td.positional())
        self.net.nodes[a].transfer_leader(b)
        self.net.process(a)
        self._changes("")

    def cmd_read_index(self, td: dd.TestData) -> None:
        i, ctx = td.positional()
        self.net.nodes[int(i)].read_index(ctx.encode())
        self.net.process(int(i))
        self._changes("")

    def cmd_tick(self, td: dd.TestData) -> None:
        k, *rest = map(int, td.positional())
        for _ in range(k):
            for i in rest or sorted(self.net.nodes):
                self.net.tick(ids=[i], settle=False)
                self._changes("")

    def cmd_deliver_msgs(self, td: dd.TestData) -> None:
        for _ in range(len(self.net.queue)):
            self._deliver()

    def cmd_stabilize(self, td: dd.TestData) -> None:
        net = self.net
        net.process_all()
        self._changes("")
        steps = 0
        while net.queue:
            self._deliver()
            steps += 1
            if steps > 10_000:
                raise td.fail("the network did not settle")
            if not net.queue:
                net.process_all()
                self._changes("")

    def cmd_partition(self, td: dd.TestData) -> None:
        groups = [{int(x) for x in g.split(",")} for g in td.positional()]
        rest = set(self.net.nodes) - set().union(*groups)
        if rest:
            groups.append(rest)
        for k, g in enumerate(groups):
            for h in groups[k + 1 :]:
                for a in g:
                    for b in h:
                        self.net.cut(a, b)

    def cmd_isolate(self, td: dd.TestData) -> None:
        for i in self._ids(td):
            self.net.isolate(i)

    def cmd_heal(self, td: dd.TestData) -> None:
        self.net.heal()

    def _filter_args(self, td: dd.TestData) -> tuple[MessageType, int | None, int | None]:
        (name,) = td.positional()
        kw = td.kwargs()
        frm = int(kw["from"]) if "from" in kw else None
        to = int(kw["to"]) if "to" in kw else None
        return MessageType[name], frm, to

    def cmd_drop(self, td: dd.TestData) -> None:
        mtype, frm, to = self._filter_args(td)
        self.net.drop(mtype, frm=frm, to=to)

    def cmd_hold(self, td: dd.TestData) -> None:
        mtype, frm, to = self._filter_args(td)
        self.net.hold(mtype, frm=frm, to=to)

    def cmd_release(self, td: dd.TestData) -> None:
        self.net.release(deliver=False)

    def cmd_status(self, td: dd.TestData, ids: list[int] | None = None) -> None:
        for i in ids or self._ids(td):
            s = self.net.nodes[i].status()
            voters = ",".join(map(str, s.conf_state.voters))
            self._out.append(
                f"{i}: {s.role} term={s.term} lead={s.leader} vote={s.vote} "
                f"commit={s.commit} applied={s.applied} last={s.last_index} voters={voters}"
            )
            if s.lead_transferee:
                self._out.append(f"  transferring to {s.lead_transferee}")
            for peer, p in sorted(s.progress.items()):
                self._out.append(f"  {peer}: match={p.match} next={p.next} {p.state}")

    def cmd_log(self, td: dd.TestData) -> None:
        for i in self._ids(td):
            entries = self.net.storage[i].entries
            self._out.append(f"{i}: " + (" ".join(show_entry(e) for e in entries) or "(empty)"))
            data = self.net.data(i)
            self._out.append("  applied: " + (" ".join(map(_show_data, data)) or "(nothing)"))

    def cmd_read_states(self, td: dd.TestData) -> None:
        for i in self._ids(td):
            states = self.net.read_states[i]
            shown = " ".join(f"{s.index}:{_show_data(s.request_ctx)}" for s in states)
            self._out.append(f"{i}: {shown or '(none)'}")
