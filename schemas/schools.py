"""The schools of each organization: the reference a school code is checked against.

A school code is a free string in a CSS's local system; it crosses the stream stage only
if it names a school of that CSS in this reference (simulated like the organizations list;
production loads the official one), so no typed-in text reaches the warehouse as a code.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DEFAULT_SCHOOLS_FILE = Path(__file__).parent / "reference" / "schools.csv"
SCHOOL_KINDS = frozenset({"primaire", "secondaire"})


@dataclass(frozen=True)
class School:
    """One school of an organization."""

    css_code: str
    school_code: str
    name: str
    kind: str


class SchoolsError(ValueError):
    """The schools file is missing or malformed."""


def load_schools(path: Path) -> dict[str, dict[str, School]]:
    """Read schools.csv into ``{css_code: {school_code: School}}``, in file order."""
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise SchoolsError(f"cannot read schools file {path}: {exc}") from exc
    schools: dict[str, dict[str, School]] = {}
    for line, row in enumerate(rows, start=2):
        try:
            school = School(
                css_code=row["css_code"].strip(),
                school_code=row["school_code"].strip(),
                name=row["name"].strip(),
                kind=row["kind"].strip(),
            )
        except (KeyError, AttributeError) as exc:
            raise SchoolsError(f"{path}:{line}: malformed school row ({exc})") from exc
        if not school.css_code or not school.school_code:
            raise SchoolsError(f"{path}:{line}: empty css_code or school_code")
        if school.kind not in SCHOOL_KINDS:
            raise SchoolsError(f"{path}:{line}: kind must be primaire or secondaire")
        of_css = schools.setdefault(school.css_code, {})
        if school.school_code in of_css:
            raise SchoolsError(f"{path}:{line}: duplicate school code for {school.css_code}")
        of_css[school.school_code] = school
    if not schools:
        raise SchoolsError(f"{path}: no schools")
    return schools


def schools_by_kind(schools: dict[str, School]) -> dict[str, list[str]]:
    """One organization's school codes by kind, in file order."""
    out: dict[str, list[str]] = {kind: [] for kind in sorted(SCHOOL_KINDS)}
    for school in schools.values():
        out[school.kind].append(school.school_code)
    return out


@cache
def default_schools() -> dict[str, dict[str, School]]:
    """The reference shipped in ``schemas/reference/schools.csv`` (the simulator draws from it)."""
    return load_schools(DEFAULT_SCHOOLS_FILE)
