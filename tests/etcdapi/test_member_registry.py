"""The member registry's etcd URLs (what MemberList reports for other members),
without members: they survive the registry's snapshot encoding, attribute updates
merge them, and the formats stay readable by members that predate them (a fifth
registry field older decoders do not read; a v2 attributes entry older members
skip as a command they do not understand)."""

from __future__ import annotations

import msgpack
import pytest

from raftkv.kv.command import CommandDecodeError
from raftkv.kv.proposal import Proposal
from raftkv.server import errors as E
from raftkv.server.membership import (
    ATTRS_TAG,
    MemberInfo,
    Registry,
    decode_attrs,
    encode_attrs,
    encode_attrs_v2,
    plan_member_update,
)

INFO = MemberInfo(2, "m2", ("http://p:2380",), ("http://c:2379",), ("http://c:12000",))


def test_etcd_urls_survive_the_registry_snapshot_and_older_readers_ignore_them() -> None:
    reg = Registry({2: INFO, 3: MemberInfo(3, "m3")}, {1})
    assert Registry.decode(reg.encode()) == reg
    rows, _ = msgpack.unpackb(reg.encode(), raw=False)
    # what a member before etcd URLs reads: the first four fields of each row
    old_view = {r[0]: MemberInfo(r[0], r[1], tuple(r[2]), tuple(r[3])) for r in rows}
    assert old_view[2] == MemberInfo(2, "m2", ("http://p:2380",), ("http://c:2379",))
    # and a registry written by such a member reads back without etcd URLs
    old = msgpack.packb([[[2, "m2", ["http://p:2380"], ["http://c:2379"]]], [1]])
    assert Registry.decode(old).members[2].etcd_urls == ()


def test_attributes_v2_carry_the_etcd_url_and_v1_updates_keep_it() -> None:
    assert decode_attrs(encode_attrs_v2(INFO)) == INFO
    assert decode_attrs(encode_attrs(INFO)) == MemberInfo(2, "m2", INFO.peer_urls, INFO.client_urls)
    reg = Registry({2: MemberInfo(2)})
    reg.apply_attrs(INFO)
    reg.apply_attrs(MemberInfo(2, "", ("http://q:2380",), ()))  # a MemberUpdate
    assert reg.members[2] == MemberInfo(
        2, "m2", ("http://q:2380",), INFO.client_urls, INFO.etcd_urls
    )
    # a member before v2 does not take it for attributes, and no command decodes from it
    v2 = encode_attrs_v2(INFO)
    assert not v2.startswith(ATTRS_TAG)
    with pytest.raises(CommandDecodeError):
        Proposal.decode(v2)
    assert decode_attrs(v2[:-3]) is None


def test_member_update_rules() -> None:
    reg = Registry({1: MemberInfo(1, "m1", ("http://a:1",)), 2: INFO})
    got = plan_member_update(reg, (1, 2), 2, ["http://new:2380/"])
    assert got == MemberInfo(2, "", ("http://new:2380",), ())
    assert plan_member_update(reg, (1, 2), 2, INFO.peer_urls).peer_urls == INFO.peer_urls
    with pytest.raises(E.ApiError) as gone:
        plan_member_update(reg, (1, 2), 9, ["http://new:2380"])
    assert gone.value.status == 404
    for bad in (["ftp://x"], [], ["http://h"]):
        with pytest.raises(E.ApiError) as err:
            plan_member_update(reg, (1, 2), 2, bad)
        assert err.value.code == "invalid_url"
    with pytest.raises(E.ApiError) as taken:
        plan_member_update(reg, (1, 2), 2, ["http://a:1"])
    assert taken.value.code == "member_exists"
