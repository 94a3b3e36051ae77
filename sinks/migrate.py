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
LOCAL_SUFFIX = "_local"
_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS \{db\}\.(\w+)\s*\(", re.S)
_ENGINE = re.compile(r"\)\s*ENGINE\s*=\s*(\w*MergeTree)\b(\s*\()?", re.S)
_ORDER_BY = re.compile(r"\bORDER BY\s+(\([^)]*\)|[\w.]+)", re.S)
_TABLE_REF = re.compile(r"\{db\}\.(\w+)")
# « CREATE OR REPLACE TABLE x … [SETTINGS …] AS SELECT * FROM x »: a table rebuilt in place.
_REBUILD = re.compile(
    r"^CREATE OR REPLACE TABLE \{db\}\.(\w+) .*?(?: SETTINGS (.+?))? AS SELECT \* FROM \{db\}\.\1$"
)
# Table settings a replicated table can take in place (ALTER … MODIFY SETTING), and those the
# migrations set on a rebuilt table: the only settings the warehouse server accepts.
IN_PLACE_SETTINGS = ("merge_max_block_size", "merge_max_block_size_bytes")
REBUILD_SETTINGS = frozenset({"index_granularity_bytes", *IN_PLACE_SETTINGS})


def _balanced(text: str, start: int) -> int:
    """Index just after the parenthesis closing the one opened at ``start``."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
    raise MigrationError("unbalanced parentheses in a migration statement")


def replicated_tables(migrations: list[Migration]) -> set[str]:
    """The tables created with a MergeTree-family engine: on a cluster each becomes a
    Replicated* table ``<name>_local`` on every node, under a Distributed table ``<name>``."""
    return {m[1] for mig in migrations for s in mig.up
            if (m := _CREATE_TABLE.match(s)) and _ENGINE.search(s)}  # fmt: skip


def for_cluster(statement: str, cluster: str, replicated: set[str]) -> list[str]:
    """One migration statement rewritten for a ClickHouse cluster (``ON CLUSTER``).

    Writers and readers keep the table names they use on one server: those are Distributed
    tables, sharded by a hash of the sorting key (so ReplacingMergeTree/SummingMergeTree rows of
    one key meet on one shard), over ``<name>_local`` Replicated* tables. Materialized views run
    on each node, from and into the local tables."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cluster):
        raise MigrationError(f"cluster name {cluster!r} is not an identifier")
    on = f"ON CLUSTER {cluster}"
    s = " ".join(statement.split())
    if m := _CREATE_TABLE.match(s):
        table, engine = m[1], _ENGINE.search(s)
        head = f"CREATE TABLE IF NOT EXISTS {{db}}.{table}"
        if engine is None:
            return [s.replace(head, f"{head} {on}", 1)]
        if engine[2]:  # engine arguments, e.g. ReplacingMergeTree(row_version, is_deleted)
            args_start = engine.end() - 1
            args_end = _balanced(s, args_start)
            args = s[args_start + 1 : args_end - 1].strip()
        else:
            args_end, args = engine.end(), ""
        path = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
        replicated_engine = f"Replicated{engine[1]}({path}{', ' + args if args else ''})"
        columns = s[m.end() - 1 : engine.start() + 1]
        local_name = f"{table}{LOCAL_SUFFIX}"
        local = (f"CREATE TABLE IF NOT EXISTS {{db}}.{local_name} {on} {columns}"
                 f" ENGINE = {replicated_engine}{s[args_end:]}")  # fmt: skip
        order = _ORDER_BY.search(s, args_end)
        key = order[1].strip("()") if order else "rand()"
        sharding = f"Distributed({cluster}, '{{db}}', '{local_name}', cityHash64({key}))"
        distributed = f"CREATE TABLE IF NOT EXISTS {{db}}.{table} {on} AS {{db}}.{local_name} ENGINE = "
        distributed += sharding
        return [local, distributed]
    if m := re.match(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS \{db\}\.(\w+) TO ", s):
        name_end = m.start() + len(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.{m[1]}")
        rest = _TABLE_REF.sub(lambda r: f"{{db}}.{r[1]}{LOCAL_SUFFIX}" if r[1] in replicated else r[0],
                              s[name_end:])  # fmt: skip
        return [s[:name_end] + f" {on}" + rest]
    views = r"^(CREATE VIEW IF NOT EXISTS|CREATE OR REPLACE VIEW|DROP VIEW IF EXISTS) \{db\}\.(\w+)"
    if m := re.match(views, s):
        return [s[: m.end()] + f" {on}" + s[m.end() :]]
    if m := re.match(r"^DROP TABLE IF EXISTS \{db\}\.(\w+)$", s):
        names = [m[1], f"{m[1]}{LOCAL_SUFFIX}"] if m[1] in replicated else [m[1]]
        return [f"DROP TABLE IF EXISTS {{db}}.{n} {on} SYNC" for n in names]
    if m := re.match(r"^ALTER TABLE \{db\}\.(\w+) (.*)$", s):
        table, action = m[1], m[2]
        if table not in replicated:
            return [f"ALTER TABLE {{db}}.{table} {on} {action}"]
        local = f"ALTER TABLE {{db}}.{table}{LOCAL_SUFFIX} {on} {action}"
        if re.match(r"(MODIFY|REMOVE) TTL\b", action):
            return [local]  # data lives in the local tables only
        return [local, f"ALTER TABLE {{db}}.{table} {on} {action}"]  # columns: both, local first
    if m := _REBUILD.match(s):
        # A server rebuilds the table with its storage settings (the granule size is fixed at
        # creation); a cluster's replicated tables keep their granules and ZooKeeper paths and
        # take, in place, the settings that can change.
        local = f"ALTER TABLE {{db}}.{m[1]}{LOCAL_SUFFIX} {on}"
        items = [i for i in (m[2] or "").split(", ") if i.split(" = ")[0] in IN_PLACE_SETTINGS]
        if items:
            return [f"{local} MODIFY SETTING {', '.join(items)}"]
        return [f"{local} RESET SETTING {', '.join(IN_PLACE_SETTINGS)}"]
    if re.match(r"^INSERT INTO \{db\}\.\w+ ", s):
        return [s]  # through the Distributed table: rows reach their shard once
    raise MigrationError(f"no cluster form for the statement: {s[:80]}")


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


def _statements(statements: tuple[str, ...], cluster: str, replicated: set[str]) -> list[str]:
    if not cluster:
        return list(statements)
    return [out for s in statements for out in for_cluster(s, cluster, replicated)]


def migrate_up(
    wh: Warehouse, migrations: list[Migration] | None = None, cluster: str = ""
) -> list[Migration]:
    """Apply every migration not yet applied, under the lock; return those applied now.
    Refuses to run when an applied migration's file was edited since. With ``cluster``, the
    statements are the cluster forms (``for_cluster``); the ledger stays on the node migrated."""
    todo = migrations if migrations is not None else load_migrations()
    replicated = replicated_tables(todo)
    with migration_lock(wh):
        ledger = _ledger(wh)
        _check_unedited(ledger, todo)
        applied = []
        for m in todo:
            if m.version in ledger:
                if not ledger[m.version]:
                    _record(wh, m, True)  # applied before checksums: record the file as it is now
                continue
            for statement in _statements(m.up, cluster, replicated):
                try:
                    wh.command(statement.replace("{db}", wh.database))
                except Exception as exc:
                    raise MigrationError(f"migration {m.label} failed: {exc}") from exc
            _record(wh, m, True)
            applied.append(m)
        return applied


def migrate_down(
    wh: Warehouse, to_version: int, migrations: list[Migration] | None = None, cluster: str = ""
) -> list[Migration]:
    """Undo applied migrations newer than ``to_version``, newest first, under the lock."""
    todo = migrations if migrations is not None else load_migrations()
    replicated = replicated_tables(todo)
    with migration_lock(wh):
        ledger = _ledger(wh)
        _check_unedited(ledger, todo)
        undone = []
        for m in reversed(todo):
            if m.version <= to_version or m.version not in ledger:
                continue
            for statement in _statements(m.down, cluster, replicated):
                try:
                    wh.command(statement.replace("{db}", wh.database))
                except Exception as exc:
                    raise MigrationError(f"undoing migration {m.label} failed: {exc}") from exc
            _record(wh, m, False)
            undone.append(m)
        return undone
