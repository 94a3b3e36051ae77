"""The 72 school organizations (CSS and CS) by administrative region."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Organization:
    """A school service centre (CSS) or school board (CS)."""

    code: str
    name: str
    kind: str
    language: str
    region_code: str
    region_name: str
    students_approx: int


class OrganizationsError(ValueError):
    """The organizations file is missing or malformed."""


def load_organizations(path: Path) -> dict[str, Organization]:
    """Read organizations.csv into a dict keyed by organization code, in file order."""
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise OrganizationsError(f"cannot read organizations file {path}: {exc}") from exc
    orgs: dict[str, Organization] = {}
    for line, row in enumerate(rows, start=2):
        try:
            org = Organization(
                code=row["code"].strip(),
                name=row["name"].strip(),
                kind=row["kind"].strip(),
                language=row["language"].strip(),
                region_code=row["region_code"].strip(),
                region_name=row["region_name"].strip(),
                students_approx=int(row["students_approx"]),
            )
        except (KeyError, ValueError, AttributeError) as exc:
            raise OrganizationsError(f"{path}:{line}: malformed organization row ({exc})") from exc
        if org.code in orgs:
            raise OrganizationsError(f"{path}:{line}: duplicate organization code {org.code!r}")
        orgs[org.code] = org
    if not orgs:
        raise OrganizationsError(f"{path}: no organizations")
    return orgs
