"""Source rows (dicts with Vigie's column names) → typed records → raw Avro batches.

A source's query (or a file's columns, renamed by the configuration) yields rows with
the column names below. Rows are coerced to their types, named by their key columns,
fingerprinted by a hash of their content, and grouped into the natural batches the raw
contracts carry: an attendance sheet per (school, group, day, period), one
evaluation's results per group, staff changes in sets.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from connectors.events import event_id, record_key
from schemas.contracts import RAW_RECORDS_FIELD, Dataset

STR, INT, DATE, DATETIME, BOOL = "str", "int", "date", "datetime", "bool"

# (column, type, required) per dataset; header columns are shared by a batch's records.
HEADER_COLUMNS: dict[Dataset, tuple[tuple[str, str, bool], ...]] = {
    Dataset.ATTENDANCE: (("school_code", STR, True), ("group_code", STR, True), ("period", INT, True),
                         ("sheet_date", DATE, True)),
    Dataset.GRADES: (("school_code", STR, True), ("group_code", STR, True), ("level", STR, True),
                     ("subject_code", STR, True), ("competency_code", STR, True), ("etape", INT, True),
                     ("evaluation_date", DATE, True), ("scale", STR, True)),
    Dataset.STAFF: (),
}  # fmt: skip
_STUDENT = (("student_local_id", STR, True), ("code_permanent", STR, False), ("first_name", STR, False),
            ("last_name", STR, False), ("birth_date", DATE, False), ("postal_code", STR, False))  # fmt: skip
RECORD_COLUMNS: dict[Dataset, tuple[tuple[str, str, bool], ...]] = {
    Dataset.ATTENDANCE: (*_STUDENT, ("status_code", STR, True), ("absence_code", STR, False),
                         ("absence_text", STR, False), ("occurred_at", DATETIME, False)),
    Dataset.GRADES: (*_STUDENT, ("sex", STR, False), ("intervention_plan", BOOL, False),
                     ("language_group", STR, False), ("immigration", STR, False), ("result", STR, True),
                     ("occurred_at", DATETIME, False)),
    Dataset.STAFF: (("employee_number", STR, True), ("first_name", STR, False), ("last_name", STR, False),
                    ("birth_date", DATE, False), ("email", STR, False), ("phone", STR, False),
                    ("job_code", STR, True), ("change_type", STR, True), ("leave_type", STR, False),
                    ("school_code", STR, False), ("legally_qualified", BOOL, False),
                    ("effective_date", DATE, True), ("occurred_at", DATETIME, False)),
}  # fmt: skip
DEFAULT_KEYS: dict[Dataset, tuple[str, ...]] = {
    Dataset.ATTENDANCE: ("school_code", "group_code", "sheet_date", "period", "student_local_id"),
    Dataset.GRADES: ("school_code", "group_code", "subject_code", "competency_code", "etape",
                     "evaluation_date", "student_local_id"),
    Dataset.STAFF: ("employee_number", "change_type", "effective_date"),
}  # fmt: skip
_TRUE = {"1", "true", "t", "yes", "y", "oui", "o", "vrai"}
_FALSE = {"0", "false", "f", "no", "n", "non", "faux"}


class RowError(ValueError):
    """A source row that cannot become a record (the message names the column, never the value)."""


def columns(dataset: Dataset) -> tuple[tuple[str, str, bool], ...]:
    return HEADER_COLUMNS[dataset] + RECORD_COLUMNS[dataset]


def required_columns(dataset: Dataset) -> set[str]:
    return {name for name, _, required in columns(dataset) if required}


def _coerce(name: str, kind: str, value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        if value == "":
            return None
    if value is None:
        return None
    try:
        if kind == STR:
            return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
        if kind == INT:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == DATE:
            if isinstance(value, datetime):
                return value.date()
            if isinstance(value, date):
                return value
            return date.fromisoformat(str(value)[:10])
        if kind == DATETIME:
            moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        if kind == BOOL:
            if isinstance(value, bool):
                return value
            text = str(value).casefold()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
    except (ValueError, TypeError):
        raise RowError(f"column {name}: not a valid {kind}") from None
    raise AssertionError(kind)


def coerce_row(dataset: Dataset, row: dict[str, Any]) -> dict[str, Any]:
    """Typed row with exactly the dataset's columns; RowError if a required one is missing."""
    out = {}
    for name, kind, required in columns(dataset):
        value = _coerce(name, kind, row.get(name))
        if required and value is None:
            raise RowError(f"column {name}: required value missing")
        out[name] = value
    return out


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


def row_fingerprint(row: dict[str, Any]) -> str:
    """Hash of a typed row's content: changes whenever any column changes."""
    canonical = json.dumps({k: _jsonable(v) for k, v in sorted(row.items())}, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def source_key(row: dict[str, Any], key_columns: Iterable[str]) -> str:
    parts = []
    for name in key_columns:
        if row.get(name) is None:
            raise RowError(f"key column {name}: value missing")
        parts.append(str(_jsonable(row[name])))
    return "\x1f".join(parts)


def row_to_json(row: dict[str, Any]) -> str:
    return json.dumps({k: _jsonable(v) for k, v in row.items()}, separators=(",", ":"))


def row_from_json(dataset: Dataset, text: str) -> dict[str, Any]:
    return coerce_row(dataset, json.loads(text))


@dataclass(frozen=True)
class Change:
    """One new, changed or deleted source row, with its ids."""

    dataset: Dataset
    row: dict[str, Any]
    record_key: str
    event_id: str
    op: str  # "upsert" or "delete"


def record_key_of(css: str, source_system: str, dataset: Dataset, key: str) -> str:
    """The record key of a source row (what the change-detection state is keyed by)."""
    return record_key(css, source_system, dataset.value, key)


def make_change(
    css: str, source_system: str, dataset: Dataset, row: dict[str, Any], key: str, fingerprint: str, op: str
) -> Change:
    version = fingerprint if op == "upsert" else f"deleted:{fingerprint}"
    return Change(
        dataset, row, record_key(css, source_system, dataset.value, key),
        event_id(css, source_system, dataset.value, key, version), op,
    )  # fmt: skip


def build_batches(
    css: str, source_system: str, changes: list[Change], detected_at: datetime, max_records: int
) -> list[tuple[Dataset, dict[str, Any], int]]:
    """Group changes into the natural batches of their raw contracts: (dataset, batch, records)."""
    groups: dict[tuple[Dataset, tuple[Any, ...]], list[Change]] = defaultdict(list)
    for change in changes:
        values = tuple(change.row[name] for name, _, _ in HEADER_COLUMNS[change.dataset])
        groups[(change.dataset, values)].append(change)
    out = []
    for (dataset, header_values), members in groups.items():
        header = {
            name: value for (name, _, _), value in zip(HEADER_COLUMNS[dataset], header_values, strict=True)
        }
        for start in range(0, len(members), max_records):
            records = []
            for change in members[start : start + max_records]:
                record = {name: change.row[name] for name, _, _ in RECORD_COLUMNS[dataset]}
                record.update(
                    event_id=change.event_id, record_key=change.record_key, op=change.op,
                    occurred_at=record["occurred_at"] or detected_at, detected_at=detected_at,
                )  # fmt: skip
                records.append(record)
            batch = {
                "css": css,
                "source_system": source_system,
                **header,
                RAW_RECORDS_FIELD[dataset]: records,
            }
            out.append((dataset, batch, len(records)))
    return out


# Columns never kept in the connector's change-detection state: a deletion is named by its key
# and carries the batch header and required columns, nothing that identifies a person beyond
# the key the source itself uses.
DIRECT_IDENTIFIERS = frozenset({"code_permanent", "first_name", "last_name", "birth_date", "postal_code",
                                "email", "phone", "absence_text"})  # fmt: skip
# The column whose value bounds deletion detection to a recent window (default per dataset).
DEFAULT_WINDOW_COLUMNS: dict[Dataset, str] = {
    Dataset.ATTENDANCE: "sheet_date",
    Dataset.GRADES: "evaluation_date",
    Dataset.STAFF: "effective_date",
}


def row_skeleton(dataset: Dataset, row: dict[str, Any], key_columns: Iterable[str]) -> str:
    """JSON of the columns a later deletion needs (key, header, required), identifiers dropped."""
    keep = set(key_columns) | required_columns(dataset) | {n for n, _, _ in HEADER_COLUMNS[dataset]}
    return row_to_json({k: v for k, v in row.items() if k in keep and k not in DIRECT_IDENTIFIERS})


def key_of_raw(dataset: Dataset, raw: dict[str, Any], key_columns: Iterable[str]) -> str | None:
    """The source key of a row that failed as a whole, from its key columns alone (None if
    those are unreadable too): a malformed row is known to still exist, so not deleted."""
    kinds = {name: kind for name, kind, _ in columns(dataset)}
    try:
        typed = {name: _coerce(name, kinds.get(name, STR), raw.get(name)) for name in key_columns}
        return source_key(typed, key_columns)
    except RowError:
        return None


def scope_value(value: Any) -> str | None:
    """A deletion-window value as text ('YYYY-MM-DD' for dates and times)."""
    if value is None:
        return None
    if isinstance(value, date | datetime):
        return value.isoformat()[:10]
    return str(value).strip()[:10] or None
