"""Numbered ClickHouse migrations (``sinks/migrations/NNNN_verb_noun.sql``).

Each file has a ``-- migrate:up`` and a ``-- migrate:down`` section; the down
section undoes the up section exactly (tested by a round trip). Applied versions
are recorded in ``<db>.schema_migrations``.
"""

from __future__ import annotations

import re
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


def _ensure_ledger(wh: Warehouse) -> None:
    wh.command(
        f"CREATE TABLE IF NOT EXISTS {wh.database}.schema_migrations "
        "(version UInt32, name String, applied UInt8, changed_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree(changed_at) ORDER BY version"
    )


def applied_versions(wh: Warehouse) -> set[int]:
    _ensure_ledger(wh)
    rows = wh.query(f"SELECT version, applied FROM {wh.database}.schema_migrations FINAL")
    return {int(r["version"]) for r in rows if int(r["applied"])}


def _record(wh: Warehouse, m: Migration, applied: bool) -> None:
    wh.command(
        f"INSERT INTO {wh.database}.schema_migrations (version, name, applied) "
        f"VALUES ({m.version}, '{m.name}', {int(applied)})"
    )


def migrate_up(wh: Warehouse, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply every migration not yet applied; return those applied now."""
    done = applied_versions(wh)
    applied = []
    for m in migrations if migrations is not None else load_migrations():
        if m.version in done:
            continue
        for statement in m.up:
            try:
                wh.command(statement.replace("{db}", wh.database))
            except Exception as exc:
                raise MigrationError(f"migration {m.version:04d}_{m.name} failed: {exc}") from exc
        _record(wh, m, True)
        applied.append(m)
    return applied


def migrate_down(
    wh: Warehouse, to_version: int, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Undo applied migrations newer than ``to_version``, newest first."""
    done = applied_versions(wh)
    undone = []
    for m in reversed(migrations if migrations is not None else load_migrations()):
        if m.version <= to_version or m.version not in done:
            continue
        for statement in m.down:
            wh.command(statement.replace("{db}", wh.database))
        _record(wh, m, False)
        undone.append(m)
    return undone
