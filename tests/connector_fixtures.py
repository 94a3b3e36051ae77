"""Source databases for connector tests: real PostgreSQL (127.0.0.1:5432, database test)
and SQLite, through SQLAlchemy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
URLS = {"postgresql": POSTGRES_URL, "mariadb": MARIADB_URL}

ATTENDANCE_DDL = """CREATE TABLE {t} (
    school_code VARCHAR(20), group_code VARCHAR(20), period INTEGER, sheet_date DATE,
    student_local_id VARCHAR(20), first_name VARCHAR(50), last_name VARCHAR(50), birth_date DATE,
    status_code VARCHAR(10), absence_code VARCHAR(10), absence_text VARCHAR(200), updated_at TIMESTAMP NULL)"""


def attendance_row(
    n: int, status: str = "P", updated: datetime | None = None, group: str = "G1"
) -> dict[str, Any]:
    return {
        "school_code": "S001", "group_code": group, "period": 1 + n % 6, "sheet_date": TODAY,
        "student_local_id": f"ST{n:05d}", "first_name": "Léa", "last_name": "Tremblay",
        "birth_date": date(2015, 3, 4), "status_code": status, "absence_code": None,
        "absence_text": "malade" if status == "A" else None, "updated_at": updated or datetime(2026, 11, 20, 8, 0),
    }  # fmt: skip


# Today (UTC), so that rows fall inside the connector's deletion window whenever the tests run.
TODAY = datetime.now(UTC).date()


class SourceTable:
    """A throw-away attendance table in a real database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = f"presences_{uuid.uuid4().hex[:8]}"
        self.engine: Engine = create_engine(url)
        with self.engine.begin() as conn:
            conn.execute(text(ATTENDANCE_DDL.format(t=self.name)))

    def insert(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        cols = list(rows[0])
        sql = f"INSERT INTO {self.name} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"
        with self.engine.begin() as conn:
            conn.execute(text(sql), rows)

    def execute(self, sql: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(sql.format(t=self.name)), params)

    def drop(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {self.name}"))
        self.engine.dispose()


def source_table(kind: str, tmp_path: Path) -> Iterator[SourceTable]:
    url = URLS.get(kind) or f"sqlite:///{tmp_path / 'source.sqlite'}"
    table = SourceTable(url)
    try:
        yield table
    finally:
        table.drop()
