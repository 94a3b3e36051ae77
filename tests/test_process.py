"""The stream stage as a pure function: what leaves it is what the ministry may see."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.simulator import SimulatedCss
from schemas.contracts import Dataset
from schemas.schools import default_schools
from streams.absence import CANONICAL_REASONS
from streams.process import StageContext
from tests.stage import run_stage

NOW = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
TODAY = date(2026, 11, 20)


def a_school(css: str) -> str:
    """A school of ``css`` in the reference (any other code is refused)."""
    return next(iter(default_schools()[css]))


# Six letters at least: a shorter string may occur by chance inside a hex pseudonym.
names = st.text(st.characters(codec="utf-8", categories=("L",)), min_size=6, max_size=20)
births = st.dates(date(1950, 1, 1), date(2020, 12, 31))


def _flatten(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _flatten(v)]
    if isinstance(value, list):
        return [s for v in value for s in _flatten(v)]
    return [str(value)] if value is not None else []


def _forms(d: date) -> set[str]:
    return {d.isoformat(), f"{d:%d%m%y}", f"{d:%Y%m%d}", f"{d:%d/%m/%Y}"}


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=names, last=names, birth=births, cp=st.from_regex(r"[A-Z]{4}\d{8}", fullmatch=True),
       postal=st.from_regex(r"[GHJ]\d[A-Z] \d[A-Z]\d", fullmatch=True),
       text=names)  # fmt: skip
def test_no_identifier_reaches_a_curated_attendance_record(
    stage_context: StageContext, first: str, last: str, birth: date, cp: str, postal: str, text: str
) -> None:
    mark = {"event_id": "e1", "record_key": "r1", "op": "upsert",
            "student_local_id": "S-1", "code_permanent": cp, "first_name": first,
            "last_name": last, "birth_date": birth, "postal_code": postal, "status_code": "A",
            "absence_code": None, "absence_text": text, "occurred_at": NOW, "detected_at": NOW}  # fmt: skip
    batch = {"css": "phares", "source_system": "GPI", "school_code": a_school("phares"), "group_code": "G1",
             "period": 2, "sheet_date": TODAY, "marks": [mark]}  # fmt: skip
    out = run_stage("phares", Dataset.ATTENDANCE, batch, stage_context)
    [record] = out.records
    # The motif is a closed vocabulary: it may equal a word of the text ("voyage") without
    # leaking anything; every other field must not contain any identifier.
    assert record.pop("absence_reason") in CANONICAL_REASONS
    assert record.pop("school_code") == batch["school_code"]  # the ministry's code, passed through
    values = _flatten(record)
    for secret in (first, last, cp, postal, text, *_forms(birth)):
        assert all(secret not in v for v in values), secret


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=names, last=names, birth=births, number=st.from_regex(r"E\d{5}", fullmatch=True),
       email=st.emails(), phone=st.from_regex(r"\d{3}-\d{3}-\d{4}", fullmatch=True))  # fmt: skip
def test_no_identifier_reaches_a_curated_staff_record(
    stage_context: StageContext, first: str, last: str, birth: date, number: str, email: str, phone: str
) -> None:
    change = {"event_id": "e1", "record_key": "r1", "op": "upsert",
              "employee_number": number, "first_name": first, "last_name": last,
              "birth_date": birth, "email": email, "phone": phone, "job_code": "ENS",
              "change_type": "leave_start", "leave_type": "MAL", "school_code": a_school("laval"),
              "legally_qualified": True, "effective_date": TODAY,
              "occurred_at": NOW, "detected_at": NOW}  # fmt: skip
    batch = {"css": "laval", "source_system": "HR", "changes": [change]}
    out = run_stage("laval", Dataset.STAFF, batch, stage_context)
    [record] = out.records
    # Fields from closed vocabularies cannot carry an identifier, though a generated name
    # may happen to be part of one ("maladi" in "maladie").
    assert {record.pop(f) for f in ("job_class", "change_type", "leave_type")} == {
        "enseignant", "leave_start", "maladie"
    }  # fmt: skip
    # The school's code is the ministry's, passed through: a birth date's ddmmyy form can
    # equal it (« 051001 » is 5 October 2001).
    assert record.pop("school_code") == change["school_code"]
    values = _flatten(record)
    for secret in (first, last, number, email, phone, *_forms(birth)):
        assert all(secret not in v for v in values), secret


def test_simulated_batches_are_curated_without_identifiers(stage_context, organizations) -> None:
    css = SimulatedCss(organizations["montreal"], seed=3)
    for dataset, batch in css.tick(0, 1.0, TODAY):
        out = run_stage("montreal", dataset, batch, stage_context)
        assert out.records and not out.rejections
        values = set(_flatten(out.records))
        for rec in batch[{"attendance": "marks", "grades": "results", "staff": "changes"}[dataset.value]]:
            for key in ("first_name", "last_name", "code_permanent", "postal_code", "email", "phone"):
                if rec.get(key):
                    assert rec[key] not in values


def test_processing_twice_gives_identical_output(stage_context, organizations) -> None:
    css = SimulatedCss(organizations["capitale"], seed=1)
    for dataset, batch in css.tick(0, 1.0, TODAY):
        assert run_stage("capitale", dataset, batch, stage_context) == run_stage(
            "capitale", dataset, batch, stage_context
        )


def test_payload_css_must_match_topic_css(stage_context, organizations) -> None:
    batch = SimulatedCss(organizations["laval"], seed=1).attendance_sheet(TODAY, NOW)
    out = run_stage("montreal", Dataset.ATTENDANCE, batch, stage_context)
    assert not out.records
    [rej] = out.rejections
    assert (rej.stage, rej.reason_code, rej.record_count) == (
        "css_check",
        "css_mismatch",
        len(batch["marks"]),
    )


def test_unknown_css_is_refused(stage_context, organizations) -> None:
    batch = SimulatedCss(organizations["laval"], seed=1).attendance_sheet(TODAY, NOW)
    batch["css"] = "atlantis"
    [rej] = run_stage("atlantis", Dataset.ATTENDANCE, batch, stage_context).rejections
    assert rej.reason_code == "unknown_css"


def test_unconsented_dataset_is_withheld_without_payload(stage_context, organizations) -> None:
    assert not stage_context.consent.allows("english-montreal", Dataset.STAFF, TODAY)
    batch = SimulatedCss(organizations["english-montreal"], seed=1).staff_changes(TODAY, NOW)
    out = run_stage("english-montreal", Dataset.STAFF, batch, stage_context)
    [rej] = out.rejections
    assert not out.records
    assert (rej.reason_code, rej.keep_payload, rej.record_count) == (
        "no_consent",
        False,
        len(batch["changes"]),
    )


def test_invalid_records_are_refused_one_by_one(stage_context, organizations) -> None:
    batch = SimulatedCss(organizations["laval"], seed=1).attendance_sheet(TODAY, NOW)
    batch["marks"][0]["status_code"] = "?"
    batch["marks"][1]["occurred_at"] = datetime(2199, 1, 1, tzinfo=UTC)
    out = run_stage("laval", Dataset.ATTENDANCE, batch, stage_context)
    assert len(out.records) == len(batch["marks"]) - 2
    assert {r.event_id for r in out.rejections} == {m["event_id"] for m in batch["marks"][:2]}
    by_event = {r.event_id: r for r in out.rejections}
    status = by_event[batch["marks"][0]["event_id"]]
    date_ = by_event[batch["marks"][1]["event_id"]]
    assert (status.stage, status.reason_code) == ("harmonize", "unknown_status")
    assert (date_.stage, date_.reason_code) == ("validate", "implausible_date")
    assert status.record == batch["marks"][0]  # the original record goes to the dead letter
    # Reasons describe the rule, never a person.
    assert not any(batch["marks"][0]["last_name"] in r.reason for r in out.rejections)


def test_absences_carry_a_canonical_reason(stage_context, organizations) -> None:
    css = SimulatedCss(organizations["montreal"], seed=5)
    reasons = set()
    for _ in range(20):
        out = run_stage("montreal", Dataset.ATTENDANCE, css.attendance_sheet(TODAY, NOW), stage_context)
        for r in out.records:
            if r["status"] in ("present", "absent"):
                assert (r["absence_reason"] is None) == (r["status"] == "present")
            else:  # late or left early: a motif only when one was given, never 'inconnu' for none
                assert r["reason_mapped"] or r["absence_reason"] == "inconnu"
            reasons.add(r["absence_reason"])
    assert {"maladie", "sante_rdv"} <= reasons
