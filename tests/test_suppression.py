"""Small-cell suppression: no published count below the minimum, and no suppressed value
recoverable from a line (row, column or margin) that hides only it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sinks.suppression import suppress

tables = st.dictionaries(
    st.tuples(st.sampled_from("ABCDE"), st.sampled_from("vwxyz")), st.integers(1, 40), max_size=25
)


def _lines(table):
    """Every line of the table with its total: rows, columns, and both margins."""
    rows, columns = {}, {}
    for (r, c), v in table.cells.items():
        rows.setdefault(r, []).append(v)
        columns.setdefault(c, []).append(v)
    lines = [[*vs, table.row_totals[r]] for r, vs in rows.items()]
    lines += [[*vs, table.column_totals[c]] for c, vs in columns.items()]
    lines.append([*table.row_totals.values(), table.total])
    lines.append([*table.column_totals.values(), table.total])
    return lines


@settings(max_examples=300, deadline=None)
@given(tables, st.sampled_from([5, 10]))
def test_no_small_count_is_published_and_no_suppressed_cell_stands_alone(counts, minimum) -> None:
    table = suppress(counts, minimum)
    assert all(v >= minimum for v in table.published())
    for line in _lines(table):
        if len(line) < 2:
            continue  # a total with no parts (empty table) reveals nothing
        assert sum(v is None for v in line) != 1, line
    # What is published is the true count.
    assert all(table.cells[k] in (None, n) for k, n in counts.items())
    if table.total is not None:
        assert table.total == sum(counts.values())


def test_a_lone_small_cell_takes_the_smallest_neighbour_with_it() -> None:
    counts = {("laval", "F"): 40, ("laval", "M"): 3, ("laval", "X"): 12,
              ("phares", "F"): 30, ("phares", "M"): 25, ("phares", "X"): 9}  # fmt: skip
    table = suppress(counts, 5)
    assert table.cells[("laval", "M")] is None
    # Laval's total is published, so one more Laval cell goes: the smallest, X (12) …
    assert table.cells[("laval", "X")] is None and table.cells[("laval", "F")] == 40
    # … and column X would then show one gap, so Phares' X (9) goes too; then Phares' row
    # has one gap, so its smallest other cell (M, 25) goes, which pairs column M's gaps.
    assert table.cells[("phares", "X")] is None and table.cells[("phares", "M")] is None
    assert table.total == 119


def test_a_table_of_only_small_counts_publishes_nothing() -> None:
    table = suppress({("a", "x"): 2, ("a", "y"): 1, ("b", "x"): 1}, 5)
    assert table.published() == []
