"""Roles and row policies (``access.sql``): the writer, the ministry, one role per CSS and
one per school.

The ministry reads the aggregate ``ministry_*`` views only (migration 0005, run with
their definer's rights), a CSS its own rows, a school's direction its own school's rows.
The DDL runs on a ClickHouse server; the embedded engine (no access control) is
compartmented by the ``css_*`` parameterized views, and these statements are still
checked against its parser by the tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from schemas.schools import DEFAULT_SCHOOLS_FILE, load_schools
from sinks.migrate import statements_of
from sinks.warehouse import Warehouse

ACCESS_FILE = Path(__file__).parent / "access.sql"
_CSS_CODE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_SCHOOL_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_SECTIONS = ("writer", "ministry", "css", "school")


def css_role(css: str) -> str:
    """The role name of one CSS (identifiers cannot hold '-')."""
    return "vigie_css_" + css.replace("-", "_")


def school_role(css: str, school: str) -> str:
    """The role name of one school's direction."""
    return f"vigie_school_{css}__{school}".replace("-", "_").lower()


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^-- access:(\w+)\s*$", text, flags=re.MULTILINE)
    found = dict(zip(parts[1::2], parts[2::2], strict=True))
    if set(found) != set(_SECTIONS):
        raise ValueError(f"access.sql needs the sections {', '.join(_SECTIONS)}")
    return found


def load_school_pairs(path: Path = DEFAULT_SCHOOLS_FILE) -> list[tuple[str, str]]:
    """(css_code, school_code) of every school of the reference (one role each)."""
    return [(css, code) for css, schools in load_schools(path).items() for code in schools]


def access_statements(
    database: str, css_codes: list[str], schools: Iterable[tuple[str, str]] = (), path: Path = ACCESS_FILE
) -> list[str]:
    """The access DDL expanded for ``database``, every CSS code and every (CSS, school)."""
    sections = _sections(path.read_text(encoding="utf-8"))
    statements = [s.replace("{db}", database) for s in statements_of(sections["writer"])]
    statements += [s.replace("{db}", database) for s in statements_of(sections["ministry"])]
    for css in css_codes:
        if not _CSS_CODE.match(css):
            raise ValueError(f"organization code {css!r} cannot name a role (expected a-z, 0-9, '-')")
        statements += [
            s.replace("{db}", database).replace("{role}", css_role(css)).replace("{css}", css)
            for s in statements_of(sections["css"])
        ]
    known, roles = set(css_codes), set()
    for css, school in schools:
        if css not in known:
            raise ValueError(f"school {school!r}: organization {css!r} is not in the reference list")
        if not _SCHOOL_CODE.match(school):
            raise ValueError(f"school code {school!r} cannot name a role (expected A-Z, a-z, 0-9, '-')")
        role = school_role(css, school)
        if role in roles:
            raise ValueError(f"two schools of {css!r} would share the role {role}")
        roles.add(role)
        for s in statements_of(sections["school"]):
            s = s.replace("{db}", database).replace("{role}", role)
            statements.append(s.replace("{css}", css).replace("{school}", school))
    return statements


def apply_access(
    warehouse: Warehouse, css_codes: list[str], schools: Iterable[tuple[str, str]] | None = None
) -> int:
    """Create the roles and policies where the warehouse has access control; return how many
    statements ran (0 on the embedded engine). ``schools`` defaults to the schools reference."""
    if not warehouse.supports_access_control:
        return 0
    pairs = load_school_pairs() if schools is None else list(schools)
    statements = access_statements(warehouse.database, css_codes, pairs)
    for statement in statements:
        warehouse.command(statement)
    return len(statements)
