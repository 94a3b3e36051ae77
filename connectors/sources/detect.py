"""Change detection shared by the sources: compare typed rows with what was last sent."""

from __future__ import annotations

from typing import Any

from connectors.outbox import SourceRowState
from connectors.source_rows import make_change, row_fingerprint, row_from_json, row_to_json, source_key
from connectors.sources import Poll
from schemas.contracts import Dataset


def detect_changes(
    poll: Poll,
    css: str,
    source_system: str,
    dataset: Dataset,
    rows: list[dict[str, Any]],
    key_columns: tuple[str, ...],
    state: dict[str, SourceRowState],
) -> set[str]:
    """Append to ``poll`` the rows that are new or changed; return the record keys seen."""
    seen: set[str] = set()
    for row in rows:
        key = source_key(row, key_columns)
        fingerprint = row_fingerprint(row)
        change = make_change(css, source_system, dataset, row, key, fingerprint, "upsert")
        seen.add(change.record_key)
        previous = state.get(change.record_key)
        if previous is not None and previous.fingerprint == fingerprint:
            continue
        poll.changes.append(change)
        poll.upserts.append((change.record_key, SourceRowState(fingerprint, key, row_to_json(row))))
        state[change.record_key] = poll.upserts[-1][1]
    return seen


def detect_deletions(
    poll: Poll,
    css: str,
    source_system: str,
    dataset: Dataset,
    state: dict[str, SourceRowState],
    seen: set[str],
) -> None:
    """Rows sent before and now gone: a delete event carrying the last known version."""
    for rk in sorted(set(state) - seen):
        last = state[rk]
        row = row_from_json(dataset, last.row_json)
        poll.changes.append(
            make_change(css, source_system, dataset, row, last.source_key, last.fingerprint, "delete")
        )
        poll.deletes.append(rk)
