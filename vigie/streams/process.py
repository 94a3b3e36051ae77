"""The stream stage as one pure function over a decoded raw batch.

``process_batch`` knows nothing about Kafka: it takes the CSS and dataset of the
topic a batch arrived on, the decoded batch, and a context; it returns the curated
records and the refusals. Running it twice on the same input gives the same output
(the at-least-once delivery of the stage above makes that a requirement).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from vigie.reference.organizations import Organization
from vigie.schemas.contracts import RAW_RECORDS_FIELD, Dataset
from vigie.streams.consent import ConsentRegistry
from vigie.streams.harmonize import HarmonizationError, Harmonizer
from vigie.streams.pseudonymize import (
    STAFF_AGE_BANDS,
    STUDENT_AGE_BANDS,
    Pseudonymizer,
    age_band,
)

EARLIEST_PLAUSIBLE = date(2000, 1, 1)
STAFF_CHANGE_TYPES = frozenset(
    {"hire", "departure", "leave_start", "leave_end", "position_open", "position_filled"}
)


@dataclass(frozen=True)
class Rejection:
    """A refusal: the stage, a machine reason code and a human reason without identifiers."""

    stage: str
    reason_code: str
    reason: str
    record_count: int = 1
    event_id: str | None = None
    keep_payload: bool = True


@dataclass
class Outcome:
    """What one raw batch became."""

    records: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


@dataclass(frozen=True)
class StageContext:
    """Everything the stages need, resolved once at start-up."""

    organizations: dict[str, Organization]
    consent: ConsentRegistry
    pseudonymizer: Pseudonymizer
    harmonizer: Harmonizer
    today: Callable[[], date] = date.today


class InvalidRecord(ValueError):
    """A record that breaks a business rule; it goes to the dead-letter topic."""


def _plausible(d: date, today: date, what: str, ahead_days: int = 1) -> None:
    if not EARLIEST_PLAUSIBLE <= d <= today + timedelta(days=ahead_days):
        raise InvalidRecord(f"implausible {what} {d.isoformat()}")


def _check_times(rec: dict[str, Any], today: date) -> None:
    occurred: datetime = rec["occurred_at"]
    _plausible(occurred.date(), today, "occurred_at")


def _attendance(batch: dict[str, Any], rec: dict[str, Any], ctx: StageContext, css: str) -> dict[str, Any]:
    sheet_date: date = batch["sheet_date"]
    _plausible(sheet_date, ctx.today(), "sheet_date")
    _check_times(rec, ctx.today())
    if not 1 <= batch["period"] <= 12:
        raise InvalidRecord(f"period {batch['period']} outside 1-12")
    status = ctx.harmonizer.status(rec["status_code"])
    reason, mapped = None, True
    if status != "present":
        found = ctx.harmonizer.absence.classify(css, rec["absence_code"], rec["absence_text"])
        reason, mapped = found.category, found.mapped
    p = ctx.pseudonymizer
    return {
        "event_id": rec["event_id"],
        "css": css,
        "school_code": batch["school_code"],
        "group_code": batch["group_code"],
        "period": batch["period"],
        "sheet_date": sheet_date,
        "student_pseudonym": p.pseudonym(css, "student", rec["student_local_id"]),
        "key_id": p.key_id,
        "age_band": age_band(rec["birth_date"], sheet_date, STUDENT_AGE_BANDS, "18+"),
        "status": status,
        "absence_reason": reason,
        "reason_mapped": mapped,
        "occurred_at": rec["occurred_at"],
        "detected_at": rec["detected_at"],
    }


def _grades(batch: dict[str, Any], rec: dict[str, Any], ctx: StageContext, css: str) -> dict[str, Any]:
    evaluated: date = batch["evaluation_date"]
    _plausible(evaluated, ctx.today(), "evaluation_date")
    _check_times(rec, ctx.today())
    if not 1 <= batch["etape"] <= 3:
        raise InvalidRecord(f"étape {batch['etape']} outside 1-3")
    result = ctx.harmonizer.grade(batch["scale"], rec["result"])
    sex = (rec["sex"] or "").strip().upper()[:1] or None
    p = ctx.pseudonymizer
    return {
        "event_id": rec["event_id"],
        "css": css,
        "school_code": batch["school_code"],
        "group_code": batch["group_code"],
        "level": batch["level"],
        "subject_code": batch["subject_code"],
        "competency_code": batch["competency_code"],
        "etape": batch["etape"],
        "evaluation_date": evaluated,
        "student_pseudonym": p.pseudonym(css, "student", rec["student_local_id"]),
        "key_id": p.key_id,
        "age_band": age_band(rec["birth_date"], evaluated, STUDENT_AGE_BANDS, "18+"),
        "sex": sex if sex in {"F", "M", "X"} else None,
        "result_percent": result.percent,
        "result_band": result.band,
        "passed": result.passed,
        "occurred_at": rec["occurred_at"],
        "detected_at": rec["detected_at"],
    }


def _staff(batch: dict[str, Any], rec: dict[str, Any], ctx: StageContext, css: str) -> dict[str, Any]:
    effective: date = rec["effective_date"]
    _plausible(effective, ctx.today(), "effective_date", ahead_days=366)
    _check_times(rec, ctx.today())
    if rec["change_type"] not in STAFF_CHANGE_TYPES:
        raise InvalidRecord(f"unknown change_type {rec['change_type'][:20]!r}")
    p = ctx.pseudonymizer
    return {
        "event_id": rec["event_id"],
        "css": css,
        "staff_pseudonym": p.pseudonym(css, "staff", rec["employee_number"]),
        "key_id": p.key_id,
        "age_band": age_band(rec["birth_date"], effective, STAFF_AGE_BANDS, "55+"),
        "job_class": ctx.harmonizer.job_class(css, rec["job_code"]),
        "change_type": rec["change_type"],
        "leave_type": ctx.harmonizer.leave_type(rec["leave_type"]),
        "school_code": rec["school_code"],
        "legally_qualified": rec["legally_qualified"],
        "effective_date": effective,
        "occurred_at": rec["occurred_at"],
        "detected_at": rec["detected_at"],
    }


_CURATORS: dict[Dataset, Callable[[dict[str, Any], dict[str, Any], StageContext, str], dict[str, Any]]] = {
    Dataset.ATTENDANCE: _attendance,
    Dataset.GRADES: _grades,
    Dataset.STAFF: _staff,
}


def _batch_date(dataset: Dataset, batch: dict[str, Any], today: date) -> date:
    if dataset is Dataset.ATTENDANCE:
        return batch["sheet_date"]
    if dataset is Dataset.GRADES:
        return batch["evaluation_date"]
    return today


def process_batch(topic_css: str, dataset: Dataset, batch: dict[str, Any], ctx: StageContext) -> Outcome:
    """Validate, check the CSS, gate on consent, de-identify and harmonize one raw batch."""
    records: list[dict[str, Any]] = batch[RAW_RECORDS_FIELD[dataset]]
    n = len(records)
    if topic_css not in ctx.organizations:
        return Outcome(
            rejections=[Rejection("css_check", "unknown_css", "topic names an unknown organization", n)]
        )
    if batch["css"] != topic_css:
        return Outcome(
            rejections=[
                Rejection("css_check", "css_mismatch", "payload CSS differs from the CSS of its raw topic", n)
            ]
        )
    if not ctx.consent.allows(topic_css, dataset, _batch_date(dataset, batch, ctx.today())):
        # Not stored anywhere: only counted, so the status view can show "no consent".
        return Outcome(
            rejections=[
                Rejection(
                    "consent",
                    "no_consent",
                    f"no valid consent for dataset {dataset.value}",
                    n,
                    keep_payload=False,
                )
            ]
        )
    curate = _CURATORS[dataset]
    out = Outcome()
    for rec in records:
        try:
            out.records.append(curate(batch, rec, ctx, topic_css))
        except (InvalidRecord, HarmonizationError) as exc:
            out.rejections.append(Rejection("validate", "invalid_record", str(exc), 1, rec["event_id"]))
    return out
