"""A Québec school calendar: school days, periods and report-card terms (étapes)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

PERIODS_PER_DAY = 4
SCHOOL_TIMEZONE = ZoneInfo("America/Toronto")  # Québec's time (Eastern), with DST
SCHOOL_HOURS = (8, 16)  # when a CSS is expected to send attendance


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    d = date(year, month, 1)
    d += timedelta(days=(weekday - d.weekday()) % 7)
    return d + timedelta(weeks=n - 1)


def _easter(year: int) -> date:
    """Gregorian Easter Sunday (anonymous algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month = (h + l_ - 7 * m + 114) // 31
    day = (h + l_ - 7 * m + 114) % 31 + 1
    return date(year, month, day)


def school_year_start(d: date) -> int:
    """The calendar year a school year starts in (it runs late August to June)."""
    return d.year if d.month >= 8 else d.year - 1


def holidays(start_year: int) -> set[date]:
    """Days without school in the school year starting in ``start_year``."""
    y1, y2 = start_year, start_year + 1
    days = {
        _nth_weekday(y1, 9, 0, 1),  # fête du Travail
        _nth_weekday(y1, 10, 0, 2),  # Action de grâce
        _easter(y2) - timedelta(days=2),  # Vendredi saint
        _easter(y2) + timedelta(days=1),  # lundi de Pâques
    }
    may25 = date(y2, 5, 25)
    days.add(may25 - timedelta(days=(may25.weekday() - 0) % 7 or 7))  # Journée nationale des patriotes
    d = date(y1, 12, 22)
    while d <= date(y2, 1, 5):  # congé des Fêtes
        days.add(d)
        d += timedelta(days=1)
    spring = _nth_weekday(y2, 3, 0, 1)  # semaine de relâche
    days.update(spring + timedelta(days=i) for i in range(5))
    return days


def is_school_day(d: date) -> bool:
    start = school_year_start(d)
    first, last = date(start, 8, 28), date(start + 1, 6, 22)
    return first <= d <= last and d.weekday() < 5 and d not in holidays(start)


def school_date(moment: datetime) -> date:
    """The day a school in Québec is living at ``moment`` (aware): at 20:00 in Montréal on
    30 November it is already 1 December in UTC, but the sheets are still November's."""
    return moment.astimezone(SCHOOL_TIMEZONE).date()


def in_school_hours(moment: datetime) -> bool:
    """True during school hours of a school day, in Québec time (``moment`` is aware)."""
    local = moment.astimezone(SCHOOL_TIMEZONE)
    return is_school_day(local.date()) and SCHOOL_HOURS[0] <= local.hour < SCHOOL_HOURS[1]


def school_days_until(last: date, count: int) -> list[date]:
    """The ``count`` school days ending on or before ``last``, oldest first."""
    days: list[date] = []
    d = last
    while len(days) < count and d > last - timedelta(days=800):
        if is_school_day(d):
            days.append(d)
        d -= timedelta(days=1)
    return sorted(days)


def etape(d: date) -> int:
    """Report-card term of a date: 1 until early November, 2 until mid-February, then 3."""
    start = school_year_start(d)
    if d <= date(start, 11, 7):
        return 1
    if d <= date(start + 1, 2, 13):
        return 2
    return 3
