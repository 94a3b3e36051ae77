"""Validate: business rules a record must meet before anything else looks at it.

Schema conformance is already guaranteed by decoding against the raw contract; here
are the rules Avro cannot express: plausible dates and times, ranges, closed
vocabularies, non-empty identifiers. A refusal names the field and the rule, never the
value (the value stays in the dead letter's payload, inside the identified zone).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from schemas.contracts import Dataset
from streams.rejection import Reason, RecordRefused, Stage, reason

EARLIEST_PLAUSIBLE = date(2000, 1, 1)
EARLIEST_BIRTH = date(1900, 1, 1)
# Event times are refused before 2000 and more than a day ahead: a time in 1900 wrapped the
# warehouse's row_version, one in 2100 made a row uncorrectable and its CSS "live" forever.
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(days=1)
# Planned HR changes (a leave starting next month) may be dated up to a year ahead.
EFFECTIVE_DATE_AHEAD = timedelta(days=366)
GRADE_SCALES = frozenset({"percent", "letter", "pass_fail"})
STAFF_CHANGE_TYPES = frozenset(
    {"hire", "departure", "leave_start", "leave_end", "position_open", "position_filled"}
)
# Québec levels: maternelle 4 and 5 ans, primaire 1-6, secondaire 1-5.
LEVELS = frozenset({"mat4", "mat5", *(f"prim{n}" for n in range(1, 7)), *(f"sec{n}" for n in range(1, 6))})
RECORD_OPS = frozenset({"upsert", "delete"})


def _refuse(code: Reason, field: str, rule: str) -> RecordRefused:
    return RecordRefused(Stage.VALIDATE, code, reason(field, rule))


def _date_within(value: date, low: date, high: date, field: str) -> None:
    if not low <= value <= high:
        raise _refuse(Reason.IMPLAUSIBLE_DATE, field, "outside the plausible dates")


def _time_within(value: datetime, now: datetime, field: str) -> None:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not EARLIEST_EVENT_TIME <= value <= now + FUTURE_TOLERANCE:
        raise _refuse(Reason.IMPLAUSIBLE_DATE, field, "before the year two thousand or more than a day ahead")


def _required(rec: dict[str, Any], *fields: str) -> None:
    for name in fields:
        value = rec.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise _refuse(Reason.MISSING_VALUE, name, "empty")


def normalize_level(value: str) -> str:
    """A level as the closed vocabulary spells it ('Sec3 ' → 'sec3')."""
    return value.strip().lower()


def _common(rec: dict[str, Any], today: date, now: datetime) -> None:
    _required(rec, "event_id")
    if rec["op"] not in RECORD_OPS:
        raise _refuse(Reason.UNKNOWN_VALUE, "op", "not upsert or delete")
    _time_within(rec["occurred_at"], now, "occurred_at")
    _time_within(rec["detected_at"], now, "detected_at")
    birth: date | None = rec.get("birth_date")
    if birth is not None:
        _date_within(birth, EARLIEST_BIRTH, today, "birth_date")


def validate_record(
    dataset: Dataset, batch: dict[str, Any], rec: dict[str, Any], today: date, now: datetime | None = None
) -> None:
    """Raise RecordRefused if the record breaks a business rule (``now`` bounds event times;
    default: the end of ``today``)."""
    now = now or datetime.combine(today, datetime.max.time(), UTC)
    _common(rec, today, now)
    ahead = today + FUTURE_TOLERANCE
    if dataset is Dataset.ATTENDANCE:
        _required(rec, "student_local_id", "status_code")
        _date_within(batch["sheet_date"], EARLIEST_PLAUSIBLE, ahead, "sheet_date")
        if not 1 <= batch["period"] <= 12:
            raise _refuse(Reason.OUT_OF_RANGE, "period", "not a period of the school day (one to twelve)")
    elif dataset is Dataset.GRADES:
        _required(rec, "student_local_id", "result")
        _date_within(batch["evaluation_date"], EARLIEST_PLAUSIBLE, ahead, "evaluation_date")
        if not 1 <= batch["etape"] <= 3:
            raise _refuse(Reason.OUT_OF_RANGE, "etape", "not an étape (one to three)")
        if batch["scale"] not in GRADE_SCALES:
            raise _refuse(Reason.UNKNOWN_VALUE, "scale", "not percent, letter or pass_fail")
        if normalize_level(batch["level"]) not in LEVELS:
            raise _refuse(Reason.UNKNOWN_VALUE, "level", "not in the closed vocabulary of levels")
    else:
        _required(rec, "employee_number", "job_code")
        _date_within(
            rec["effective_date"], EARLIEST_PLAUSIBLE, today + EFFECTIVE_DATE_AHEAD, "effective_date"
        )
        if rec["change_type"] not in STAFF_CHANGE_TYPES:
            raise _refuse(Reason.UNKNOWN_VALUE, "change_type", "not in the closed vocabulary of changes")
