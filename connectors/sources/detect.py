"""Change detection shared by the sources: compare typed rows with the hashes last sent."""

from __future__ import annotations

import json
from typing import Any

from connectors.outbox import SourceRowState
from connectors.source_rows import (
    make_change,
    record_key_of,
    row_fingerprint,
    row_from_json,
    row_skeleton,
    scope_value,
    source_key,
)
from connectors.sources import Poll
from schemas.contracts import Dataset


def detect_changes(
    poll: Poll,
    css: str,
    source_system: str,
    dataset: Dataset,
    rows: list[dict[str, Any]],
    key_columns: tuple[str, ...],
    known: dict[str, str],
    scope_column: str | None = None,
    seen_since: str | None = None,
    keep_skeleton: bool = True,
) -> set[str]:
    """Append to ``poll`` the rows that are new or changed (``known``: record key → hash last
    sent, updated in place); return the record keys seen (with ``seen_since``, only those of
    rows in the deletion window: the others are never compared, so never kept)."""
    seen: set[str] = set()
    for row in rows:
        key = source_key(row, key_columns)
        fingerprint = row_fingerprint(row)
        rk = record_key_of(css, source_system, dataset, key)
        scope = scope_value(row.get(scope_column)) if scope_column else None
        if seen_since is None or (scope is not None and scope >= seen_since):
            seen.add(rk)
        if known.get(rk) == fingerprint:
            continue
        change = make_change(css, source_system, dataset, row, key, fingerprint, "upsert")
        poll.changes.append(change)
        # A source that never deletes (a drop folder of partial exports) keeps the hash only.
        skeleton = row_skeleton(dataset, row, key_columns) if keep_skeleton else ""
        poll.upserts.append((rk, SourceRowState(fingerprint, scope, skeleton)))
        known[rk] = fingerprint
    return seen


def detect_deletions(
    poll: Poll,
    css: str,
    source_system: str,
    dataset: Dataset,
    state: dict[str, SourceRowState],
    seen: set[str],
    key_columns: tuple[str, ...],
) -> None:
    """Rows sent before and now gone: a delete event naming the row and the version it ends."""
    for rk in sorted(set(state) - seen):
        last = state[rk]
        if not last.skeleton:  # stored while the source could not delete: nothing to name it by
            continue
        row = row_from_json(dataset, last.skeleton)
        key = source_key(json.loads(last.skeleton), key_columns)
        poll.changes.append(make_change(css, source_system, dataset, row, key, last.fingerprint, "delete"))
        poll.deletes.append(rk)
