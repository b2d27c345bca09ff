"""What a Range does with the kvs it read: etcd's `executeRange` post-processing.

Order of work, as in etcd: read (with limit + 1 when nothing below needs all kvs),
drop kvs outside the min/max mod/create revision filters (a bound of 0 is no bound),
sort, cut to `limit` (setting `more`), blank values for keys_only. `count` is the
number of keys in the range before filters and limit.

Sorting: SortTarget other than KEY with SortOrder.NONE sorts ascending; KEY ascending
is the read order already. As in etcd, only a sort *order* (or a filter) makes the
read fetch everything: a sort target with SortOrder.NONE and a limit sorts just the
first limit + 1 keys in key order. Ties (equal versions, values, ...) keep key order, in both
directions; etcd uses an unstable sort, so any tie order is etcd-compatible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .kv import KeyValue
from .requests import RangeRequest, SortOrder, SortTarget


def needs_all(req: RangeRequest) -> bool:
    """Whether filters or sorting must see every kv before the limit applies."""
    return (
        req.sort_order != SortOrder.NONE
        or req.min_mod_revision != 0
        or req.max_mod_revision != 0
        or req.min_create_revision != 0
        or req.max_create_revision != 0
    )


def fetch_limit(req: RangeRequest) -> int:
    """How many kvs to read: 0 for all, else limit + 1 (to learn `more`)."""
    if needs_all(req) or req.limit <= 0:
        return 0
    return req.limit + 1


def _keep(req: RangeRequest, kv: KeyValue) -> bool:
    if req.max_mod_revision != 0 and kv.mod_revision > req.max_mod_revision:
        return False
    if req.min_mod_revision != 0 and kv.mod_revision < req.min_mod_revision:
        return False
    if req.max_create_revision != 0 and kv.create_revision > req.max_create_revision:
        return False
    return not (req.min_create_revision != 0 and kv.create_revision < req.min_create_revision)


_SORT_KEYS: dict[SortTarget, Callable[[KeyValue], int | bytes]] = {
    SortTarget.KEY: lambda kv: kv.key,
    SortTarget.VERSION: lambda kv: kv.version,
    SortTarget.CREATE: lambda kv: kv.create_revision,
    SortTarget.MOD: lambda kv: kv.mod_revision,
    SortTarget.VALUE: lambda kv: kv.value,
}


def effective_order(req: RangeRequest) -> SortOrder:
    order = req.sort_order
    if req.sort_target != SortTarget.KEY and order == SortOrder.NONE:
        return SortOrder.ASCEND
    if req.sort_target == SortTarget.KEY and order == SortOrder.ASCEND:
        return SortOrder.NONE
    return order


def finish(req: RangeRequest, kvs: list[KeyValue]) -> tuple[list[KeyValue], bool]:
    """Filter, sort, limit and blank a key-ordered read; returns (kvs, more)."""
    kvs = [kv for kv in kvs if _keep(req, kv)]
    order = effective_order(req)
    if order != SortOrder.NONE:
        kvs.sort(key=_SORT_KEYS[req.sort_target], reverse=order == SortOrder.DESCEND)
    more = False
    if req.limit > 0 and len(kvs) > req.limit:
        kvs = kvs[: req.limit]
        more = True
    if req.keys_only:
        kvs = [replace(kv, value=b"") for kv in kvs]
    return kvs, more
