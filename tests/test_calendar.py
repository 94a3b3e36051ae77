"""The school calendar the simulator follows."""

from __future__ import annotations

from datetime import date

from connectors.calendar import etape, is_school_day, school_days_until


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
