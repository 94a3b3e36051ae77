"""Roles and row policies (``access.sql``): one role per CSS, one for the ministry.

A CSS role reads only its own rows; the ministry reads everything. The DDL runs on a
ClickHouse server; the embedded engine (no access control) is compartmented by the
``css_*`` parameterized views, and these statements are still checked against its
parser by the tests.
"""

from __future__ import annotations

import re
from pathlib import Path

from sinks.migrate import statements_of
from sinks.warehouse import Warehouse

ACCESS_FILE = Path(__file__).parent / "access.sql"
_CSS_CODE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def css_role(css: str) -> str:
    """The role name of one CSS (identifiers cannot hold '-')."""
    return "vigie_css_" + css.replace("-", "_")


def access_statements(database: str, css_codes: list[str], path: Path = ACCESS_FILE) -> list[str]:
    """The access DDL expanded for ``database`` and every CSS code."""
    text = path.read_text(encoding="utf-8")
    ministry, per_css = text.split("-- access:ministry", 1)[1].split("-- access:css", 1)
    statements = [s.replace("{db}", database) for s in statements_of(ministry)]
    for css in css_codes:
        if not _CSS_CODE.match(css):
            raise ValueError(f"organization code {css!r} cannot name a role (expected a-z, 0-9, '-')")
        statements += [
            s.replace("{db}", database).replace("{role}", css_role(css)).replace("{css}", css)
            for s in statements_of(per_css)
        ]
    return statements


def apply_access(warehouse: Warehouse, css_codes: list[str]) -> int:
    """Create the roles and policies where the warehouse has access control; return how many
    statements ran (0 on the embedded engine)."""
    if not warehouse.supports_access_control:
        return 0
    statements = access_statements(warehouse.database, css_codes)
    for statement in statements:
        warehouse.command(statement)
    return len(statements)
