"""Business rules a raw record must meet."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from connectors.simulator import SimulatedCss
from schemas.contracts import Dataset
from streams.rejection import RecordRefused
from tests.stage import validate

TODAY = date(2026, 11, 20)
NOW = datetime(2026, 11, 20, 14, tzinfo=UTC)


@pytest.fixture
def sheet(organizations):
    return SimulatedCss(organizations["laval"], seed=1).attendance_sheet(TODAY, NOW)


def test_a_good_record_passes(sheet) -> None:
    validate(Dataset.ATTENDANCE, sheet, sheet["marks"][0], TODAY)


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"event_id": " "}, "missing_value"), ({"student_local_id": ""}, "missing_value"),
     ({"occurred_at": datetime(2031, 1, 1, tzinfo=UTC)}, "implausible_date"),
     ({"birth_date": date(1850, 1, 1)}, "implausible_date"),
     ({"birth_date": date(2027, 1, 1)}, "implausible_date")],
)  # fmt: skip
def test_record_rules(sheet, change: dict, reason: str) -> None:
    rec = {**sheet["marks"][0], **change}
    with pytest.raises(RecordRefused) as info:
        validate(Dataset.ATTENDANCE, sheet, rec, TODAY)
    assert (info.value.stage, info.value.reason_code) == ("validate", reason)


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"period": 0}, "out_of_range"), ({"period": 13}, "out_of_range"),
     ({"sheet_date": date(1999, 12, 31)}, "implausible_date"),
     ({"sheet_date": date(2026, 11, 22)}, "implausible_date")],
)  # fmt: skip
def test_sheet_rules(sheet, change: dict, reason: str) -> None:
    with pytest.raises(RecordRefused) as info:
        validate(Dataset.ATTENDANCE, {**sheet, **change}, sheet["marks"][0], TODAY)
    assert info.value.reason_code == reason


def test_grade_and_staff_rules(organizations) -> None:
    css = SimulatedCss(organizations["laval"], seed=1)
    evaluation = css.evaluation(TODAY, NOW)
    with pytest.raises(RecordRefused, match=r"^etape: "):
        validate(Dataset.GRADES, {**evaluation, "etape": 4}, evaluation["results"][0], TODAY)
    with pytest.raises(RecordRefused, match=r"^scale: "):
        validate(Dataset.GRADES, {**evaluation, "scale": "stanine"}, evaluation["results"][0], TODAY)
    changes = css.staff_changes(TODAY, NOW)
    change = changes["changes"][0]
    validate(
        Dataset.STAFF, changes, {**change, "effective_date": date(2027, 8, 25)}, TODAY
    )  # planned hire
    with pytest.raises(RecordRefused, match=r"^change_type: "):
        validate(Dataset.STAFF, changes, {**change, "change_type": "promotion"}, TODAY)
    with pytest.raises(RecordRefused, match=r"^employee_number: "):
        validate(Dataset.STAFF, changes, {**change, "employee_number": ""}, TODAY)
