"""The member's identity on disk: which member this data dir belongs to, in which
cluster. Written once, atomically, before the first Raft state; checked at every start
so a data dir is never served under another identity."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..storage.fs import fsync_dir

META_FILE = "member.json"


class IdentityError(Exception):
    """The data dir belongs to another member or cluster, or this member was removed."""


@dataclass(frozen=True, slots=True)
class MemberMeta:
    member_id: int
    name: str
    cluster_id: str

    def save(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / (META_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(self), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, data_dir / META_FILE)
        fsync_dir(data_dir)

    @classmethod
    def load(cls, data_dir: Path) -> MemberMeta | None:
        path = data_dir / META_FILE
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
            return cls(int(raw["member_id"]), str(raw["name"]), str(raw["cluster_id"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise IdentityError(f"{path} is unreadable: {exc}") from exc
