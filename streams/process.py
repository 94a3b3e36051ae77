"""The stream stage as one pure function over a decoded raw batch.

Stages run in order: validate → CSS check → consent gate → schools reference → de-identify
→ harmonize. Everything that leaves is a code of a closed vocabulary, a code of a reference,
or keyed with the secret key (pseudonyms, record keys, event ids, groups).
``process_batch`` knows nothing about Kafka: it takes the CSS and dataset of the
topic a batch arrived on, the batch decoded in the stage's plain view (timestamps as epoch
milliseconds, dates as days since 1970-01-01: ``Contract.plain``) and a context; it returns the curated
records, the refusals and what could not be mapped. Running it twice on the same
input gives the same output (at-least-once delivery makes that a requirement).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from schemas.contracts import RAW_RECORDS_FIELD, Dataset, from_epoch_days
from schemas.organizations import Organization
from schemas.schools import School
from streams.deidentify import staff_identity, student_identity
from streams.harmonize import UNMAPPED_VALUE_MAX, Harmonizer, Unmapped
from streams.pseudonymize import Pseudonymizer
from streams.rejection import Reason, RecordRefused, Rejection, Stage, reason
from streams.validate import normalize_level, validate_record


class ConsentSource(Protocol):
    """Anything that can tell whether a CSS consented to a dataset on a date."""

    def allows(self, css: str, dataset: Dataset, on: date) -> bool: ...


@dataclass
class Outcome:
    """What one raw batch became."""

    records: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    unmapped: list[Unmapped] = field(default_factory=list)


@dataclass(frozen=True)
class StageContext:
    """Everything the stages need, resolved once at start-up."""

    organizations: dict[str, Organization]
    consent: ConsentSource
    pseudonymizer: Pseudonymizer
    harmonizer: Harmonizer
    schools: dict[str, dict[str, School]]
    today: Callable[[], date] = date.today


# A batch's shared curated fields (keyed once per batch), then one record's curated record.
Shared = Callable[[dict[str, Any], StageContext, str], dict[str, Any]]
Curator = Callable[
    [dict[str, Any], dict[str, Any], dict[str, Any], StageContext, str, list[Unmapped]], dict[str, Any]
]


def _times(rec: dict[str, Any]) -> dict[str, Any]:
    return {"occurred_at": rec["occurred_at"], "detected_at": rec["detected_at"]}


def _identity(rec: dict[str, Any], css: str, p: Pseudonymizer) -> dict[str, Any]:
    """The event's ids, keyed (the connector's are public UUIDv5 of the source key, which
    holds the local student number), and whether it deletes its source row."""
    return {
        "event_id": p.event_id(css, rec["event_id"]),
        "record_key": p.record_key(css, rec["record_key"] or rec["event_id"]),
        "deleted": rec["op"] == "delete",
        "css": css,
    }


def _group(batch: dict[str, Any], css: str, p: Pseudonymizer) -> str:
    """The group, keyed: a local group code is free text ("Groupe de Mme Tremblay")."""
    return p.keyed(css, "group", f"{batch['school_code']}\x1f{batch['group_code'].strip()}")


def _sheet(batch: dict[str, Any], ctx: StageContext, css: str) -> dict[str, Any]:
    """The fields an attendance sheet's records share, keyed once per sheet, not per mark."""
    return {
        "school_code": batch["school_code"],
        "group_code": _group(batch, css, ctx.pseudonymizer),
        "period": batch["period"],
        "sheet_date": batch["sheet_date"],
    }


def _evaluation(batch: dict[str, Any], ctx: StageContext, css: str) -> dict[str, Any]:
    """The fields an evaluation's results share, keyed once per evaluation."""
    return {
        "school_code": batch["school_code"],
        "group_code": _group(batch, css, ctx.pseudonymizer),
        "level": normalize_level(batch["level"]),
        "etape": batch["etape"],
        "evaluation_date": batch["evaluation_date"],
    }


def _change_set(_batch: dict[str, Any], _ctx: StageContext, _css: str) -> dict[str, Any]:
    return {}  # an HR change set's records share nothing that leaves the stage


def _student_record(
    shared: dict[str, Any], rec: dict[str, Any], ctx: StageContext, css: str, on: int,
    harmonized: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """A curated record about a student: keyed ids, the batch's shared fields, pseudonym and
    age band on day ``on``, the harmonized fields, the event times."""
    return {
        **_identity(rec, css, ctx.pseudonymizer),
        **shared,
        **student_identity(css, rec, on, ctx.pseudonymizer),
        **harmonized,
        **_times(rec),
    }


def _attendance(
    batch: dict[str, Any], shared: dict[str, Any], rec: dict[str, Any], ctx: StageContext, css: str,
    unmapped: list[Unmapped],
) -> dict[str, Any]:  # fmt: skip
    harmonized = ctx.harmonizer.attendance(css, rec, unmapped)
    return _student_record(shared, rec, ctx, css, batch["sheet_date"], harmonized)


def _grades(
    batch: dict[str, Any], shared: dict[str, Any], rec: dict[str, Any], ctx: StageContext, css: str,
    unmapped: list[Unmapped],
) -> dict[str, Any]:  # fmt: skip
    harmonized = ctx.harmonizer.grades(css, batch, rec, unmapped)
    return _student_record(shared, rec, ctx, css, batch["evaluation_date"], harmonized)


def _staff(
    _batch: dict[str, Any], _shared: dict[str, Any], rec: dict[str, Any], ctx: StageContext, css: str,
    unmapped: list[Unmapped],
) -> dict[str, Any]:  # fmt: skip
    on: int = rec["effective_date"]
    school = rec["school_code"]
    if school is not None and school not in ctx.schools.get(css, {}):
        unmapped.append(Unmapped(css, "staff", "school_code", school.strip()[:UNMAPPED_VALUE_MAX]))
        raise RecordRefused(Stage.VALIDATE, Reason.UNKNOWN_SCHOOL, _UNKNOWN_SCHOOL)
    return {
        **_identity(rec, css, ctx.pseudonymizer),
        **staff_identity(css, rec, on, ctx.pseudonymizer),
        **ctx.harmonizer.staff(css, rec, unmapped),
        "change_type": rec["change_type"],
        "school_code": rec["school_code"],
        "legally_qualified": rec["legally_qualified"],
        "effective_date": on,
        **_times(rec),
    }


CURATORS: dict[Dataset, tuple[Shared, Curator]] = {
    Dataset.ATTENDANCE: (_sheet, _attendance),
    Dataset.GRADES: (_evaluation, _grades),
    Dataset.STAFF: (_change_set, _staff),
}


def _consent_date(dataset: Dataset, batch: dict[str, Any], today: date) -> date | None:
    """The date a batch's facts belong to: consent must cover it. None for a day no calendar
    has (the plain view reads any int; validation then refuses every record of the batch)."""
    if dataset is Dataset.STAFF:
        return today
    days = batch["sheet_date" if dataset is Dataset.ATTENDANCE else "evaluation_date"]
    try:
        return from_epoch_days(days)
    except (ValueError, OverflowError):
        return None


_UNKNOWN_SCHOOL = reason("school_code", "not a school of this organization in the schools reference")


def check_school(dataset: Dataset, batch: dict[str, Any], ctx: StageContext, css: str, n: int,
                 unmapped: list[Unmapped]) -> Rejection | None:  # fmt: skip
    """A sheet's or an evaluation's school must be one of its CSS's schools (reference); an
    unknown one is refused whole and shown to the stewards."""
    if dataset is Dataset.STAFF:
        return None  # per record, in _staff
    school: str = batch["school_code"]
    if school in ctx.schools.get(css, {}):
        return None
    if school.strip():
        unmapped.append(Unmapped(css, dataset.value, "school_code", school.strip()[:UNMAPPED_VALUE_MAX]))
    return Rejection(Stage.VALIDATE, Reason.UNKNOWN_SCHOOL, _UNKNOWN_SCHOOL, n)


def check_css(topic_css: str, batch: dict[str, Any], ctx: StageContext, n: int) -> Rejection | None:
    """The organization must be known, and a connector may publish only for its own CSS."""
    if topic_css not in ctx.organizations:
        return Rejection(
            Stage.CSS_CHECK, Reason.UNKNOWN_CSS, reason("topic", "names no organization of the reference"), n
        )
    if batch["css"] != topic_css:
        return Rejection(
            Stage.CSS_CHECK,
            Reason.CSS_MISMATCH,
            reason("css", "differs from the organization of its raw topic"),
            n,
        )
    return None


def process_batch(topic_css: str, dataset: Dataset, batch: dict[str, Any], ctx: StageContext) -> Outcome:
    """Validate, check the CSS, gate on consent, de-identify and harmonize one raw batch."""
    out = Outcome()
    today = ctx.today()
    # Known up front so that no record of an unconsented dataset is kept, not even in a
    # dead letter; the refusal itself is reported in stage order, after validation.
    on = _consent_date(dataset, batch, today)
    consented = on is not None and ctx.consent.allows(topic_css, dataset, on)
    valid = []
    for rec in batch[RAW_RECORDS_FIELD[dataset]]:
        try:
            validate_record(dataset, batch, rec, today)
        except RecordRefused as refused:
            out.rejections.append(_refusal(refused, rec, keep=consented))
        else:
            valid.append(rec)
    if not valid:
        return out
    batch_refusal = check_css(topic_css, batch, ctx, len(valid))
    if batch_refusal is None and not consented:
        # Neither forwarded nor kept: only counted, so the status view can show "no consent".
        batch_refusal = Rejection(
            Stage.CONSENT, Reason.NO_CONSENT, reason("dataset", f"no valid consent to {dataset.value}"),
            len(valid), keep_payload=False,
        )  # fmt: skip
    if batch_refusal is None:
        batch_refusal = check_school(dataset, batch, ctx, topic_css, len(valid), out.unmapped)
    if batch_refusal is not None:
        out.rejections.append(batch_refusal)
        return out
    share, curate = CURATORS[dataset]
    shared = share(batch, ctx, topic_css)
    if dataset is Dataset.ATTENDANCE:
        ctx.harmonizer.prepare_attendance(topic_css, valid)
    for rec in valid:
        try:
            out.records.append(curate(batch, shared, rec, ctx, topic_css, out.unmapped))
        except RecordRefused as refused:
            out.rejections.append(_refusal(refused, rec))
    return out


def _refusal(refused: RecordRefused, rec: dict[str, Any], keep: bool = True) -> Rejection:
    return Rejection(
        refused.stage, refused.reason_code, refused.reason, 1, rec.get("event_id"),
        rec if keep else None, keep_payload=keep,
    )  # fmt: skip
