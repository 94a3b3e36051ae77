"""Numbered ClickHouse migrations (``sinks/migrations/NNNN_verb_noun.sql``).

Each file has a ``-- migrate:up`` and a ``-- migrate:down`` section; the down
section undoes the up section exactly (tested by a round trip). Applied versions
are recorded in ``<db>.schema_migrations`` with a checksum of their statements: a
migration edited after it was applied is refused (write a new one instead).

One runner at a time: the ``migrate`` job and a worker starting beside it would
otherwise apply the same statements concurrently. The lock is a table created
without ``IF NOT EXISTS`` (the server lets exactly one ``CREATE`` win) and dropped
when done. Statements are idempotent too (``IF NOT EXISTS``), so a run interrupted
half-way is finished by the next one.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sinks.warehouse import Warehouse

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """A migration file is malformed or failed to apply."""


@dataclass(frozen=True)
class Migration:
    """One numbered migration."""

    version: int
    name: str
    up: tuple[str, ...]
    down: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    @property
    def checksum(self) -> str:
        """SHA-256 of the statements (comments and spacing around them do not count)."""
        text = "\n;\n".join(("-- up", *self.up, "-- down", *self.down))
        return hashlib.sha256(text.encode()).hexdigest()


def statements_of(section: str) -> tuple[str, ...]:
    """The statements of a SQL section (comment lines dropped, split on ';')."""
    lines = [line for line in section.splitlines() if not line.strip().startswith("--")]
    return tuple(s.strip() for s in "\n".join(lines).split(";") if s.strip())


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read the migration files in version order."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_verb_noun.sql")
        text = path.read_text(encoding="utf-8")
        if "-- migrate:up" not in text or "-- migrate:down" not in text:
            raise MigrationError(f"{path.name}: needs '-- migrate:up' and '-- migrate:down' sections")
        up, down = text.split("-- migrate:up", 1)[1].split("-- migrate:down", 1)
        migrations.append(Migration(int(match[1]), match[2], statements_of(up), statements_of(down)))
    return migrations


LOCK_TABLE = "schema_migrations_lock"


def _ensure_ledger(wh: Warehouse) -> None:
    wh.command(
        f"CREATE TABLE IF NOT EXISTS {wh.database}.schema_migrations "
        "(version UInt32, name String, applied UInt8, changed_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree(changed_at) ORDER BY version"
    )
    # Ledgers written before checksums existed gain the column; '' means "not recorded".
    wh.command(f"ALTER TABLE {wh.database}.schema_migrations ADD COLUMN IF NOT EXISTS checksum String")


def _ledger(wh: Warehouse) -> dict[int, str]:
    """Applied versions and the checksum recorded when each was applied."""
    _ensure_ledger(wh)
    rows = wh.query(f"SELECT version, applied, checksum FROM {wh.database}.schema_migrations FINAL")
    return {int(r["version"]): str(r["checksum"]) for r in rows if int(r["applied"])}


def applied_versions(wh: Warehouse) -> set[int]:
    """Versions applied (and not undone) on this database."""
    return set(_ledger(wh))


def _record(wh: Warehouse, m: Migration, applied: bool) -> None:
    wh.command(
        f"INSERT INTO {wh.database}.schema_migrations (version, name, applied, checksum) "
        f"VALUES ({m.version}, '{m.name}', {int(applied)}, '{m.checksum if applied else ''}')"
    )


def _holder() -> str:
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", f"{socket.gethostname()}:{os.getpid()}")


@contextmanager
def migration_lock(wh: Warehouse, wait_s: float = 120.0, poll_s: float = 0.5) -> Iterator[None]:
    """Hold the database's migration lock; wait up to ``wait_s`` for another runner to finish."""
    table = f"{wh.database}.{LOCK_TABLE}"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            wh.command(f"CREATE TABLE {table} (holder String) ENGINE = MergeTree ORDER BY tuple() "
                       f"COMMENT '{_holder()}'")  # fmt: skip
            break
        except Exception as exc:
            if "exist" not in str(exc).lower():
                raise MigrationError(f"cannot take the migration lock {table}: {exc}") from exc
            if time.monotonic() > deadline:
                raise MigrationError(
                    f"another migration holds the lock {table} (see its COMMENT for host:pid) "
                    f"after {wait_s:.0f} s; if none is running, a runner died holding it: "
                    f"DROP TABLE {table}"
                ) from None
            time.sleep(poll_s)
    try:
        yield
    finally:
        wh.command(f"DROP TABLE IF EXISTS {table}")


def _check_unedited(ledger: dict[int, str], migrations: list[Migration]) -> None:
    for m in migrations:
        recorded = ledger.get(m.version)
        if recorded and recorded != m.checksum:
            raise MigrationError(
                f"migration {m.label} was edited after it was applied (checksum {recorded[:12]} "
                f"applied, {m.checksum[:12]} in the file): restore the file and add a new migration"
            )


def migrate_up(wh: Warehouse, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply every migration not yet applied, under the lock; return those applied now.
    Refuses to run when an applied migration's file was edited since."""
    todo = migrations if migrations is not None else load_migrations()
    with migration_lock(wh):
        ledger = _ledger(wh)
        _check_unedited(ledger, todo)
        applied = []
        for m in todo:
            if m.version in ledger:
                if not ledger[m.version]:
                    _record(wh, m, True)  # applied before checksums: record the file as it is now
                continue
            for statement in m.up:
                try:
                    wh.command(statement.replace("{db}", wh.database))
                except Exception as exc:
                    raise MigrationError(f"migration {m.label} failed: {exc}") from exc
            _record(wh, m, True)
            applied.append(m)
        return applied


def migrate_down(
    wh: Warehouse, to_version: int, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Undo applied migrations newer than ``to_version``, newest first, under the lock."""
    todo = migrations if migrations is not None else load_migrations()
    with migration_lock(wh):
        ledger = _ledger(wh)
        _check_unedited(ledger, todo)
        undone = []
        for m in reversed(todo):
            if m.version <= to_version or m.version not in ledger:
                continue
            for statement in m.down:
                try:
                    wh.command(statement.replace("{db}", wh.database))
                except Exception as exc:
                    raise MigrationError(f"undoing migration {m.label} failed: {exc}") from exc
            _record(wh, m, False)
            undone.append(m)
        return undone
