"""Validate: business rules a record must meet before anything else looks at it.

Schema conformance is already guaranteed by decoding against the raw contract; here
are the rules Avro cannot express: plausible dates and times, ranges, closed
vocabularies, non-empty identifiers. A refusal names the field and the rule, never the
value (the value stays in the dead letter's payload, inside the identified zone).

Records are the stage's plain view of the contract (``Contract.plain``): timestamps are epoch
milliseconds and dates days since 1970-01-01, compared as numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from schemas.contracts import Dataset, epoch_days, epoch_millis
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


@dataclass(frozen=True)
class Bounds:
    """The plausible ranges for a day, as plain numbers (days since 1970-01-01, epoch ms)."""

    earliest: int  # a sheet's or an evaluation's date
    ahead: int  # latest such date: tomorrow
    earliest_birth: int
    today: int  # latest birth date
    effective_ahead: int  # latest HR change date
    earliest_event_ms: int
    latest_event_ms: int


@lru_cache(maxsize=8)
def bounds(today: date, now: datetime | None = None) -> Bounds:
    """The bounds for ``today`` (event times up to ``now`` plus the tolerance; default: the
    end of ``today``). Cached: a batch's records share them."""
    now = now or datetime.combine(today, datetime.max.time(), UTC)
    return Bounds(
        earliest=epoch_days(EARLIEST_PLAUSIBLE),
        ahead=epoch_days(today + FUTURE_TOLERANCE),
        earliest_birth=epoch_days(EARLIEST_BIRTH),
        today=epoch_days(today),
        effective_ahead=epoch_days(today + EFFECTIVE_DATE_AHEAD),
        earliest_event_ms=epoch_millis(EARLIEST_EVENT_TIME),
        latest_event_ms=epoch_millis(now + FUTURE_TOLERANCE),
    )


def _date_within(days: int, low: int, high: int, field: str) -> None:
    if not low <= days <= high:
        raise _refuse(Reason.IMPLAUSIBLE_DATE, field, "outside the plausible dates")


def _time_within(ms: int, b: Bounds, field: str) -> None:
    if not b.earliest_event_ms <= ms <= b.latest_event_ms:
        raise _refuse(Reason.IMPLAUSIBLE_DATE, field, "before the year two thousand or more than a day ahead")


def _required(rec: dict[str, Any], *fields: str) -> None:
    for name in fields:
        value = rec.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise _refuse(Reason.MISSING_VALUE, name, "empty")


def normalize_level(value: str) -> str:
    """A level as the closed vocabulary spells it ('Sec3 ' → 'sec3')."""
    return value.strip().lower()


def _common(rec: dict[str, Any], b: Bounds) -> None:
    _required(rec, "event_id")
    if rec["op"] not in RECORD_OPS:
        raise _refuse(Reason.UNKNOWN_VALUE, "op", "not upsert or delete")
    _time_within(rec["occurred_at"], b, "occurred_at")
    _time_within(rec["detected_at"], b, "detected_at")
    birth: int | None = rec.get("birth_date")
    if birth is not None:
        _date_within(birth, b.earliest_birth, b.today, "birth_date")


def validate_record(
    dataset: Dataset, batch: dict[str, Any], rec: dict[str, Any], today: date, now: datetime | None = None
) -> None:
    """Raise RecordRefused if the plain record breaks a business rule (``now`` bounds event
    times; default: the end of ``today``)."""
    b = bounds(today, now)
    _common(rec, b)
    if dataset is Dataset.ATTENDANCE:
        _required(rec, "student_local_id", "status_code")
        _date_within(batch["sheet_date"], b.earliest, b.ahead, "sheet_date")
        if not 1 <= batch["period"] <= 12:
            raise _refuse(Reason.OUT_OF_RANGE, "period", "not a period of the school day (one to twelve)")
    elif dataset is Dataset.GRADES:
        _required(rec, "student_local_id", "result")
        _date_within(batch["evaluation_date"], b.earliest, b.ahead, "evaluation_date")
        if not 1 <= batch["etape"] <= 3:
            raise _refuse(Reason.OUT_OF_RANGE, "etape", "not an étape (one to three)")
        if batch["scale"] not in GRADE_SCALES:
            raise _refuse(Reason.UNKNOWN_VALUE, "scale", "not percent, letter or pass_fail")
        if normalize_level(batch["level"]) not in LEVELS:
            raise _refuse(Reason.UNKNOWN_VALUE, "level", "not in the closed vocabulary of levels")
    else:
        _required(rec, "employee_number", "job_code")
        _date_within(rec["effective_date"], b.earliest, b.effective_ahead, "effective_date")
        if rec["change_type"] not in STAFF_CHANGE_TYPES:
            raise _refuse(Reason.UNKNOWN_VALUE, "change_type", "not in the closed vocabulary of changes")
