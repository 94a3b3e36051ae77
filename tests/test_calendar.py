"""The school calendar the simulator follows."""

from __future__ import annotations

from datetime import UTC, date, datetime

from connectors.calendar import etape, in_school_hours, is_school_day, school_date, school_days_until


def test_school_days() -> None:
    assert is_school_day(date(2026, 11, 20))  # a Friday in November
    assert not is_school_day(date(2026, 11, 22))  # Sunday
    assert not is_school_day(date(2026, 12, 24))  # congé des Fêtes
    assert not is_school_day(date(2026, 10, 12))  # Action de grâce 2026
    assert not is_school_day(date(2027, 3, 2))  # semaine de relâche
    assert not is_school_day(date(2027, 3, 26))  # Vendredi saint 2027
    assert not is_school_day(date(2026, 7, 15))  # summer
    days = school_days_until(date(2026, 11, 22), 5)
    assert days == [
        date(2026, 11, 16),
        date(2026, 11, 17),
        date(2026, 11, 18),
        date(2026, 11, 19),
        date(2026, 11, 20),
    ]


def test_etapes() -> None:
    assert etape(date(2026, 9, 15)) == 1
    assert etape(date(2026, 11, 20)) == 2
    assert etape(date(2027, 4, 1)) == 3


def test_the_school_day_is_quebecs_not_utcs() -> None:
    # 20:00 in Montréal on 30 November (EST) is already 1 December in UTC: the sheets a CSS
    # writes that evening are November's, and the panels cut days in Québec time too.
    evening = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    assert school_date(evening) == date(2026, 11, 30)
    assert school_date(datetime(2026, 7, 1, 3, 59, tzinfo=UTC)) == date(2026, 6, 30)  # EDT: UTC−4
    assert school_date(datetime(2026, 7, 1, 4, 0, tzinfo=UTC)) == date(2026, 7, 1)
    assert not in_school_hours(evening)
    assert in_school_hours(datetime(2026, 11, 30, 13, 0, tzinfo=UTC))  # 8:00 in Montréal
