"""The simulated network is deterministic and keeps each CSS's habits."""

from __future__ import annotations

from datetime import UTC, date, datetime

from connectors.simulator import SimulatedCss, last_school_day, simulated_network
from schemas.contracts import Dataset

TODAY = date(2026, 11, 20)
NOW = datetime(2026, 11, 20, 14, tzinfo=UTC)


def test_same_seed_same_events(organizations) -> None:
    a = SimulatedCss(organizations["capitale"], seed=9).attendance_sheet(TODAY, NOW)
    b = SimulatedCss(organizations["capitale"], seed=9).attendance_sheet(TODAY, NOW)
    c = SimulatedCss(organizations["capitale"], seed=10).attendance_sheet(TODAY, NOW)
    assert a == b
    assert a != c


def test_event_ids_unique_within_a_run(organizations) -> None:
    css = SimulatedCss(organizations["iles"], seed=1)  # small CSS: its groups wrap quickly
    ids = [m["event_id"] for _ in range(200) for m in css.attendance_sheet(TODAY, NOW)["marks"]]
    assert len(ids) == len(set(ids))


def test_every_css_sends_every_dataset_on_the_first_tick(organizations) -> None:
    for css in simulated_network(organizations, seed=1):
        assert {ds for ds, _ in css.tick(0, 1.0, TODAY)} == set(Dataset)


def test_volume_scales_with_students(organizations) -> None:
    big = sum(
        ds is Dataset.ATTENDANCE for ds, _ in SimulatedCss(organizations["montreal"], 1).tick(1, 1.0, TODAY)
    )
    small = sum(
        ds is Dataset.ATTENDANCE for ds, _ in SimulatedCss(organizations["iles"], 1).tick(1, 1.0, TODAY)
    )
    assert big > 5 * small


def test_habits_differ_between_css(organizations) -> None:
    montreal = SimulatedCss(organizations["montreal"], seed=1)
    english = SimulatedCss(organizations["english-montreal"], seed=1)
    phares = SimulatedCss(organizations["phares"], seed=1)
    codes = {m["absence_code"] for _ in range(30) for m in montreal.attendance_sheet(TODAY, NOW)["marks"]}
    texts = {m["absence_text"] for _ in range(30) for m in phares.attendance_sheet(TODAY, NOW)["marks"]}
    assert "01" in codes and None in codes
    assert any(t and "rdv" in t for t in texts)
    assert english.statuses == ("P", "A", "L", "E")


def test_school_days_skip_weekends() -> None:
    assert last_school_day(date(2026, 11, 22)) == date(2026, 11, 20)  # Sunday → Friday
    assert last_school_day(date(2026, 11, 23), back=1) == date(2026, 11, 20)
