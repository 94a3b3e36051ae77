"""Validate: business rules a record must meet before anything else looks at it.

Schema conformance is already guaranteed by decoding against the raw contract; here
are the rules Avro cannot express: plausible dates, ranges, known enumerations,
non-empty identifiers.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from schemas.contracts import Dataset
from streams.rejection import Reason, RecordRefused, Stage

EARLIEST_PLAUSIBLE = date(2000, 1, 1)
EARLIEST_BIRTH = date(1900, 1, 1)
GRADE_SCALES = frozenset({"percent", "letter", "pass_fail"})
STAFF_CHANGE_TYPES = frozenset(
    {"hire", "departure", "leave_start", "leave_end", "position_open", "position_filled"}
)


def _refuse(reason: Reason, message: str) -> RecordRefused:
    return RecordRefused(Stage.VALIDATE, reason, message)


def _date_within(value: date, low: date, high: date, what: str) -> None:
    if not low <= value <= high:
        raise _refuse(Reason.IMPLAUSIBLE_DATE, f"implausible {what} {value.isoformat()}")


def _required(rec: dict[str, Any], *fields: str) -> None:
    for name in fields:
        value = rec.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise _refuse(Reason.MISSING_VALUE, f"{name} is empty")


RECORD_OPS = frozenset({"upsert", "delete"})


def _common(rec: dict[str, Any], today: date) -> None:
    _required(rec, "event_id")
    if rec["op"] not in RECORD_OPS:
        raise _refuse(Reason.UNKNOWN_VALUE, f"unknown op {rec['op'][:12]!r}")
    occurred: datetime = rec["occurred_at"]
    _date_within(occurred.date(), EARLIEST_PLAUSIBLE, today + timedelta(days=1), "occurred_at")
    birth: date | None = rec.get("birth_date")
    if birth is not None:
        _date_within(birth, EARLIEST_BIRTH, today, "birth_date")


def validate_record(dataset: Dataset, batch: dict[str, Any], rec: dict[str, Any], today: date) -> None:
    """Raise RecordRefused if the record breaks a business rule."""
    _common(rec, today)
    if dataset is Dataset.ATTENDANCE:
        _required(rec, "student_local_id", "status_code")
        _date_within(batch["sheet_date"], EARLIEST_PLAUSIBLE, today + timedelta(days=1), "sheet_date")
        if not 1 <= batch["period"] <= 12:
            raise _refuse(Reason.OUT_OF_RANGE, f"period {batch['period']} outside 1-12")
    elif dataset is Dataset.GRADES:
        _required(rec, "student_local_id", "result")
        evaluated: date = batch["evaluation_date"]
        _date_within(evaluated, EARLIEST_PLAUSIBLE, today + timedelta(days=1), "evaluation_date")
        if not 1 <= batch["etape"] <= 3:
            raise _refuse(Reason.OUT_OF_RANGE, f"étape {batch['etape']} outside 1-3")
        if batch["scale"] not in GRADE_SCALES:
            raise _refuse(Reason.UNKNOWN_VALUE, f"unknown grading scale {batch['scale'][:16]!r}")
    else:
        _required(rec, "employee_number", "job_code")
        _date_within(rec["effective_date"], EARLIEST_PLAUSIBLE, today + timedelta(days=366), "effective_date")
        if rec["change_type"] not in STAFF_CHANGE_TYPES:
            raise _refuse(Reason.UNKNOWN_VALUE, f"unknown change_type {rec['change_type'][:20]!r}")
