"""A LocalCluster whose members each live in their own network namespace, so that links
between members can be cut for real.

Why namespaces and not a proxy. A partition must cut exactly the member-to-member links
we choose, in both directions, for every kind of traffic (new connections, established
long-lived peer streams, snapshot transfers), without raftkv's cooperation or knowledge.
A user-space TCP proxy can only do that if every member addresses every peer through a
per-link proxy address, but raftkv's peer URLs are cluster-wide (they are in the Raft
configuration every member shares), so a proxy in front of member B cannot tell whether a
connection comes from A or C without parsing the peer protocol. A namespace per member
gives each member its own IP on a private bridge; raftkv binds that IP and needs no change.

How a link is cut. No iptables/nft in this image, and tc's flower classifier is not
available, so the cut is made with iproute2 alone: in A's namespace, B's IP gets a
permanent neighbour entry with a MAC address that no interface has (and vice versa). The
kernel then sends A's frames for B to that MAC; the bridge floods them and every receiver
discards them as not addressed to it. So packets are *silently dropped* in both
directions, which is what a real partition looks like (connects hang, established
streams stall until a timeout), rather than failing fast like a blackhole route
(EINVAL) or an unreachable route (EHOSTUNREACH) would. Healing deletes the entries and
ARP resolves the real addresses again. Client traffic from the test process (in the root
namespace, on the bridge) is never cut: as in Jepsen, clients keep talking to the member
they are bound to, whichever side of the partition it is on.

Needs root and `ip` (iproute2). Namespaces, veths and the bridge carry the creating
process's pid in their names, so ones left behind by a killed run are removed by the next.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import shutil
import subprocess
from pathlib import Path

from cluster.harness import LocalCluster, Member

_NS_PREFIX = "rkvnem-"
_BOGUS_MAC = "02:00:00:00:de:ad"
_counter = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def netns_unavailable_reason() -> str | None:
    """None when namespaces can be used here, else why not (for pytest.skip)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    name = f"{_NS_PREFIX}probe-{os.getpid()}"
    try:
        _ip("netns", "add", name)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"cannot create a network namespace: {exc}"
    _ip("netns", "del", name, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> None:
    """Remove namespaces and links of nemesis runs whose process is gone."""
    out = _ip("netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(_NS_PREFIX):
            continue
        pid_s = name[len(_NS_PREFIX) :].split("-")[0]
        if pid_s.isdigit() and not _pid_alive(int(pid_s)):
            _ip("netns", "del", name, check=False)
    links = _ip("-o", "link", "show", check=False).stdout
    for line in links.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        dev = parts[1].strip().split("@")[0]
        # rkv + 6 hex pid + 1 hex counter + suffix
        if dev.startswith("rkv") and len(dev) >= 11:
            try:
                pid = int(dev[3:9], 16)
            except ValueError:
                continue
            if not _pid_alive(pid):
                _ip("link", "del", dev, check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    used = _ip("-4", "route", "show", check=False).stdout + _ip("-4", "addr", check=False).stdout
    base = os.getpid() % 250
    for i in range(250):
        net = ipaddress.IPv4Network(f"10.{200 + (base + i) % 50}.{(base * 7 + i) % 250}.0/24")
        if f"{str(net.network_address)[:-2]}." not in used:
            return net
    raise RuntimeError("no free 10.x.y.0/24 subnet for the nemesis bridge")


class NsMember(Member):
    """A member bound to its namespace's IP; `url`/`peer_url` use that IP."""

    host: str = "127.0.0.1"
    netns: str = ""
    veth: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"


class NetnsCluster(LocalCluster):
    """`LocalCluster` (start/kill/pause/resume/stop/wipe/leader/close, unchanged) plus
    `cut(a, b)` / `heal()` on member-to-member links. Always `close()` it: that reaps the
    processes and deletes the namespaces and the bridge."""

    def __init__(self, root: Path, size: int = 3, **kw: object) -> None:
        cleanup_stale()
        n = next(_counter) % 16
        self._tag = f"rkv{os.getpid() % 0x1000000:06x}{n:x}"
        self._ns_base = f"{_NS_PREFIX}{os.getpid()}-{n}"
        self._net = _free_subnet()
        hosts = list(self._net.hosts())
        self._bridge_ip = str(hosts[-1])
        self._host_ips = hosts
        self._bridge = f"{self._tag}b"
        self.cuts: set[frozenset[str]] = set()
        self._links_up = False
        root.mkdir(parents=True, exist_ok=True)
        try:
            _ip("link", "add", self._bridge, "type", "bridge")
            _ip("addr", "add", f"{self._bridge_ip}/{self._net.prefixlen}", "dev", self._bridge)
            _ip("link", "set", self._bridge, "up")
            self._links_up = True
            super().__init__(root, size, **kw)  # type: ignore[arg-type]
        except BaseException:
            self._teardown()
            raise

    def _new_member(self, name: str) -> Member:
        base = super()._new_member(name)
        idx = len(self.members)
        m = NsMember(base.name, base.client_port, base.peer_port, base.data_dir, base.log_path)
        m.host = str(self._host_ips[idx - 1])
        m.netns = f"{self._ns_base}-{name}"
        m.veth = f"{self._tag}{idx:x}"
        _ip("netns", "add", m.netns)
        _ip("link", "add", m.veth, "type", "veth", "peer", "name", "eth0", "netns", m.netns)
        _ip("link", "set", m.veth, "master", self._bridge, "up")
        _ip("-n", m.netns, "addr", "add", f"{m.host}/{self._net.prefixlen}", "dev", "eth0")
        _ip("-n", m.netns, "link", "set", "eth0", "up")
        _ip("-n", m.netns, "link", "set", "lo", "up")
        self.members[name] = m
        return m

    def _cmd(self, m: Member, *, join: bool = False, member_id: int = 0) -> list[str]:
        assert isinstance(m, NsMember)
        cmd = super()._cmd(m, join=join, member_id=member_id)
        cmd = [a.replace("127.0.0.1:", f"{m.host}:") for a in cmd]
        # `ip netns exec` setns()es and exec()s: the Popen pid is raftkv's own pid, so
        # kill -9 / SIGSTOP reach the member itself.
        return ["ip", "netns", "exec", m.netns, *cmd]

    # -- links -------------------------------------------------------------------------

    def _ns(self, name: str) -> NsMember:
        m = self.members[name]
        assert isinstance(m, NsMember)
        return m

    def cut(self, a: str, b: str) -> None:
        """Silently drop all traffic between members a and b, both ways."""
        ma, mb = self._ns(a), self._ns(b)
        for src, dst in ((ma, mb), (mb, ma)):
            _ip(
                "-n", src.netns, "neigh", "replace", dst.host,
                "lladdr", _BOGUS_MAC, "dev", "eth0", "nud", "permanent",
            )  # fmt: skip
        self.cuts.add(frozenset((a, b)))

    def partition(self, *groups: list[str]) -> None:
        """Cut every link between members of different groups."""
        for i, g in enumerate(groups):
            for h in groups[i + 1 :]:
                for a in g:
                    for b in h:
                        self.cut(a, b)

    def heal(self) -> None:
        for pair in list(self.cuts):
            a, b = sorted(pair)
            ma, mb = self._ns(a), self._ns(b)
            for src, dst in ((ma, mb), (mb, ma)):
                _ip("-n", src.netns, "neigh", "del", dst.host, "dev", "eth0", check=False)
            self.cuts.discard(pair)

    # -- teardown ----------------------------------------------------------------------

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._teardown()

    def _teardown(self) -> None:
        for m in list(getattr(self, "members", {}).values()):
            if isinstance(m, NsMember) and m.netns:
                _ip("netns", "del", m.netns, check=False)
                _ip("link", "del", m.veth, check=False)
        if self._links_up:
            _ip("link", "del", self._bridge, check=False)
            self._links_up = False
