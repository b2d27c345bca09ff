"""Reading ``kubectl get`` table output (the CRD's printer columns) as a person sees it.

kubectl aligns columns with a tabwriter, so every cell of a column starts where its
header starts. Slicing rows at the header offsets (rather than splitting on spaces)
keeps empty cells (a status field not set yet prints as blank) in their columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADER_CELL = re.compile(r"\S+(?: \S+)*")
EMPTY = ("", "<none>", "<unknown>")


def parse_table(text: str) -> list[dict[str, str | None]]:
    """Rows of a ``kubectl get`` table as {HEADER: cell}; blank/``<none>`` cells are None.

    Header names are single words in kubectl's tables (``NAME``, ``READY``); a header
    with one inner space (``NOMINATED NODE``) is kept whole, which works because
    tabwriter separates columns by at least three spaces."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0]
    starts: list[tuple[str, int]] = []
    for match in _HEADER_CELL.finditer(header):
        starts.append((match.group(0), match.start()))
    if not starts or starts[0][1] != 0:
        raise ValueError(f"not a kubectl table header: {header!r}")
    rows = []
    for line in lines[1:]:
        row: dict[str, str | None] = {}
        for i, (name, start) in enumerate(starts):
            end = starts[i + 1][1] if i + 1 < len(starts) else None
            cell = line[start:end].strip() if end is not None else line[start:].strip()
            row[name] = None if cell in EMPTY else cell
        rows.append(row)
    return rows


@dataclass(frozen=True)
class RaftKVRow:
    """One ``kubectl get rkv`` row: the CRD's printer columns."""

    name: str
    replicas: int | None
    ready: int | None
    leader: str | None
    term: int | None
    commit: int | None
    age: str | None
    #: "2/3": members at the member revision the spec renders (rolling changes).
    updated: str | None = None


COLUMNS = ("NAME", "REPLICAS", "READY", "LEADER", "TERM", "COMMIT", "UPDATED", "AGE")


def raftkv_rows(text: str) -> list[RaftKVRow]:
    """Parse ``kubectl get rkv`` output; the header must be exactly the CRD's columns."""
    rows = parse_table(text)
    if not rows:
        return []
    header = tuple(rows[0])
    if header != COLUMNS:
        raise ValueError(f"printer columns are {header}, expected {COLUMNS}")
    out = []
    for row in rows:
        name = row["NAME"]
        if name is None:
            raise ValueError(f"row without a name: {row}")
        out.append(
            RaftKVRow(
                name=name,
                replicas=_int(row["REPLICAS"]),
                ready=_int(row["READY"]),
                leader=row["LEADER"],
                term=_int(row["TERM"]),
                commit=_int(row["COMMIT"]),
                age=row["AGE"],
                updated=row["UPDATED"],
            )
        )
    return out


def _int(cell: str | None) -> int | None:
    if cell is None:
        return None
    try:
        return int(cell)
    except ValueError:
        raise ValueError(f"expected an integer cell, got {cell!r}") from None
