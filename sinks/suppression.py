"""Small-cell suppression for every aggregate shown to the ministry.

A cell counting fewer than ``minimum`` individuals (5 by default, a setting) is never
returned. Where row, column or grand totals are published, a lone suppressed cell
could be recomputed (total minus the others), so complementary cells are suppressed
too — the smallest remaining one of that line, which hides the least — until no row
or column of the table (totals included as a margin) holds exactly one suppressed
value.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

R = TypeVar("R", bound=Hashable)
C = TypeVar("C", bound=Hashable)

DEFAULT_MINIMUM = 5


@dataclass(frozen=True)
class SuppressedTable(Generic[R, C]):
    """A two-way table of counts after suppression: ``None`` where a value is withheld."""

    cells: dict[tuple[R, C], int | None]
    row_totals: dict[R, int | None]
    column_totals: dict[C, int | None]
    total: int | None

    def published(self) -> list[int]:
        """Every count this table shows (cells and totals), for checks."""
        values = [*self.cells.values(), *self.row_totals.values(), *self.column_totals.values(), self.total]
        return [v for v in values if v is not None]


def _smallest_open(candidates: list[tuple[Hashable, int]], hidden: set[Hashable]) -> Hashable | None:
    open_ = [(count, repr(key), key) for key, count in candidates if key not in hidden]
    return min(open_)[2] if open_ else None


def suppress(counts: Mapping[tuple[R, C], int], minimum: int = DEFAULT_MINIMUM) -> SuppressedTable[R, C]:
    """Suppress a two-way table of counts (row, column) → n, with its margins.

    A one-way table is a table with a single column. Cells absent from ``counts`` are
    zero and shown as absent (a zero reveals no individual).
    """
    if minimum < 1:
        raise ValueError("the suppression minimum must be at least 1")
    rows: dict[R, list[tuple[tuple[R, C], int]]] = defaultdict(list)
    columns: dict[C, list[tuple[tuple[R, C], int]]] = defaultdict(list)
    for (r, c), n in counts.items():
        rows[r].append(((r, c), n))
        columns[c].append(((r, c), n))
    row_totals = {r: sum(n for _, n in cells) for r, cells in rows.items()}
    column_totals = {c: sum(n for _, n in cells) for c, cells in columns.items()}
    total = sum(counts.values())

    # Margins are values too: a row total is a cell of the "total" column, and so on.
    hidden: set[Hashable] = {key for key, n in counts.items() if n < minimum}
    hidden |= {("row", r) for r, n in row_totals.items() if n < minimum}
    hidden |= {("column", c) for c, n in column_totals.items() if n < minimum}
    if total < minimum:
        hidden.add(("total",))

    lines: list[list[tuple[Hashable, int]]] = []
    for r, cells in rows.items():
        lines.append([*cells, (("row", r), row_totals[r])])
    for c, cells in columns.items():
        lines.append([*cells, (("column", c), column_totals[c])])
    lines.append([*((("row", r), n) for r, n in row_totals.items()), (("total",), total)])
    lines.append([*((("column", c), n) for c, n in column_totals.items()), (("total",), total)])

    changed = True
    while changed:  # each pass only adds to `hidden`, so this ends
        changed = False
        for line in lines:
            if sum(1 for key, _ in line if key in hidden) == 1:
                extra = _smallest_open(line, hidden)
                if extra is not None:
                    hidden.add(extra)
                    changed = True

    return SuppressedTable(
        cells={key: (None if key in hidden else n) for key, n in counts.items()},
        row_totals={r: (None if ("row", r) in hidden else n) for r, n in row_totals.items()},
        column_totals={c: (None if ("column", c) in hidden else n) for c, n in column_totals.items()},
        total=None if ("total",) in hidden else total,
    )
