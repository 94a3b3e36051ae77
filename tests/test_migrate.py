"""The migration runner: one at a time (lock), idempotent statements, edited files refused."""

from __future__ import annotations

import dataclasses
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sinks.migrate import (
    LOCK_TABLE,
    MIGRATIONS_DIR,
    MigrationError,
    applied_versions,
    for_cluster,
    load_migrations,
    migrate_up,
    migration_lock,
    replicated_tables,
)
from sinks.warehouse import ClickHouseWarehouse
from tests.embedded import WarehouseProcess


def _schema(wh) -> list[tuple[str, str, str]]:
    return [(r["table"], r["name"], r["type"]) for r in wh.query(
        f"SELECT table, name, type FROM system.columns WHERE database = '{wh.database}' "
        "AND table != 'schema_migrations' ORDER BY table, position")]  # fmt: skip


def _tables(wh) -> set[str]:
    return {r["name"] for r in wh.query(f"SELECT name FROM system.tables WHERE database = '{wh.database}'")}


def test_every_up_statement_can_run_twice(empty_warehouse) -> None:
    """A runner killed after some statements leaves them applied: the next run repeats them."""
    wh = empty_warehouse
    migrate_up(wh)
    fresh = _schema(wh)
    for m in load_migrations():
        for statement in m.up:
            wh.command(statement.replace("{db}", wh.database))
    assert _schema(wh) == fresh


def test_a_half_applied_migration_is_finished_by_the_next_run(empty_warehouse, chdb_session) -> None:
    reference = chdb_session.for_database(f"ref_{uuid.uuid4().hex[:8]}")
    migrate_up(reference)
    wh = empty_warehouse
    migrations = load_migrations()
    migrate_up(wh, migrations[:1])
    second = migrations[1]
    for statement in second.up[: len(second.up) // 2]:  # the crash: half of 0002, not recorded
        wh.command(statement.replace("{db}", wh.database))
    assert [m.version for m in migrate_up(wh)] == [m.version for m in migrations[1:]]
    assert _schema(wh) == _schema(reference)


def test_an_edited_applied_migration_is_refused(empty_warehouse, tmp_path: Path) -> None:
    wh = empty_warehouse
    migrate_up(wh)
    files = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, files)
    first = sorted(files.glob("*.sql"))[0]
    # A comment is not an edit of the statements.
    first.write_text("-- a note added later\n" + first.read_text(encoding="utf-8"), encoding="utf-8")
    assert migrate_up(wh, load_migrations(files)) == []
    first.write_text(first.read_text(encoding="utf-8").replace("IF NOT EXISTS", "", 1), encoding="utf-8")
    with pytest.raises(MigrationError, match=rf"{first.stem} was edited after it was applied"):
        migrate_up(wh, load_migrations(files))
    assert LOCK_TABLE not in _tables(wh)  # the refusal released the lock


def test_a_ledger_from_before_checksums_is_upgraded(empty_warehouse) -> None:
    wh = empty_warehouse
    db = wh.database
    wh.command(
        f"CREATE TABLE {db}.schema_migrations (version UInt32, name String, applied UInt8, "
        "changed_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree(changed_at) "
        "ORDER BY version"
    )
    migrations = load_migrations()
    for m in migrations:
        for statement in m.up:
            wh.command(statement.replace("{db}", db))
        wh.command(
            f"INSERT INTO {db}.schema_migrations (version, name, applied) VALUES ({m.version}, '{m.name}', 1)"
        )
    assert migrate_up(wh) == []
    assert applied_versions(wh) == {m.version for m in migrations}
    edited = dataclasses.replace(migrations[0], down=(*migrations[0].down, "SELECT 2"))
    with pytest.raises(MigrationError, match="edited after it was applied"):
        migrate_up(wh, [edited])


def test_a_held_lock_makes_a_second_runner_wait_then_fail_clearly(empty_warehouse) -> None:
    wh = empty_warehouse
    with (
        migration_lock(wh),
        pytest.raises(MigrationError, match=rf"another migration holds the lock {wh.database}\.{LOCK_TABLE}"),
        migration_lock(wh, wait_s=0.6, poll_s=0.2),
    ):
        pass
    with migration_lock(wh, wait_s=0.1):  # released
        pass


@pytest.fixture(scope="module")
def warehouse_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarehouseProcess]:
    server = WarehouseProcess(tmp_path_factory.mktemp("warehouse-server")).start()
    yield server
    server.stop()


@pytest.mark.integration
def test_concurrent_runners_apply_each_migration_once(warehouse_process: WarehouseProcess) -> None:
    """The compose `migrate` job and a worker starting at the same time, on a server."""
    database = f"c_{uuid.uuid4().hex[:8]}"
    results: dict[int, list[int] | Exception] = {}

    def run(i: int) -> None:
        wh = ClickHouseWarehouse(warehouse_process.url, database)
        try:
            results[i] = [m.version for m in migrate_up(wh)]
        except Exception as exc:
            results[i] = exc
        finally:
            wh.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(isinstance(r, list) for r in results.values()), results
    applied = [v for r in results.values() if isinstance(r, list) for v in r]
    assert sorted(applied) == [m.version for m in load_migrations()]  # each exactly once


def _parses(wh, statement: str) -> str:
    """The engine's own parser (chDB has no cluster to run ON CLUSTER against)."""
    escaped = statement.replace("\\", "\\\\").replace("'", "\\'")
    return wh.query(f"SELECT formatQuery('{escaped}') AS q")[0]["q"]


def test_the_cluster_form_of_every_migration_parses_and_replicates(warehouse) -> None:
    """VIGIE_WAREHOUSE_CLUSTER: ON CLUSTER everywhere, Replicated* engines for the data, a
    Distributed table under each name the code uses, materialized views local to each node."""
    migrations = load_migrations()
    replicated = replicated_tables(migrations)
    assert {"attendance_marks", "grade_results", "staff_changes", "events_per_minute"} <= replicated
    created: dict[str, str] = {}
    for m in migrations:
        for statement in (*m.up, *m.down):
            for out in for_cluster(statement, "vigie_cluster", replicated):
                sql = out.replace("{db}", "vigie")
                formatted = _parses(warehouse, sql)
                if sql.startswith("INSERT INTO"):
                    # Inserts take no ON CLUSTER: they go through the Distributed table.
                    assert re.match(r"INSERT INTO vigie\.\w+ ", formatted), sql[:120]
                    continue
                assert "ON CLUSTER vigie_cluster" in formatted, sql[:120]
                if (name := re.match(r"CREATE TABLE IF NOT EXISTS vigie\.(\w+)", sql)) is not None:
                    created[name[1]] = sql
                if sql.startswith("CREATE MATERIALIZED VIEW"):
                    target, source = re.search(r" TO vigie\.(\w+) AS .* FROM vigie\.(\w+)", sql).groups()
                    assert target.endswith("_local") and source.endswith("_local"), sql[:120]
    for table in replicated:
        assert re.search(
            r"ENGINE = Replicated\w*MergeTree\('/clickhouse/tables/\{shard\}/", created[f"{table}_local"]
        )
        assert f"ENGINE = Distributed(vigie_cluster, 'vigie', '{table}_local', cityHash64(" in created[table]
    # Facts of one record meet on one shard (the sorting key is the sharding key), so
    # ReplacingMergeTree still replaces a re-harmonized row.
    assert "cityHash64(css, sheet_date, record_key)" in created["attendance_marks"]
    with pytest.raises(MigrationError, match="not an identifier"):
        for_cluster(migrations[0].up[0], "x; DROP TABLE y", replicated)
    # A summary rebuilt in place on one server (0011) takes its merge block sizes in place on a
    # cluster, on the Replicated table that merges (its ZooKeeper path and granules stay).
    rebuild = next(m for m in migrations if m.version == 11)
    assert for_cluster(rebuild.up[0], "vigie_cluster", replicated) == [
        "ALTER TABLE {db}.events_per_minute_local ON CLUSTER vigie_cluster MODIFY SETTING "
        "merge_max_block_size = 4, merge_max_block_size_bytes = 1048576"
    ]
    assert for_cluster(rebuild.down[1], "vigie_cluster", replicated) == [
        "ALTER TABLE {db}.events_per_minute_local ON CLUSTER vigie_cluster RESET SETTING "
        "merge_max_block_size, merge_max_block_size_bytes"
    ]


def _summary_counts(wh) -> tuple[int, int, int]:
    row = wh.query(f"SELECT uniqExactMerge(events) AS events, uniqExactMerge(unmapped) AS unmapped, "
                   f"count() AS cells FROM {wh.database}.events_per_minute")[0]  # fmt: skip
    return int(row["events"]), int(row["unmapped"]), int(row["cells"])


def _insert_summary_states(wh, start: int, count: int) -> None:
    wh.command(
        f"INSERT INTO {wh.database}.events_per_minute SELECT toDateTime('2026-11-30 08:00:00', 'UTC') "
        f"+ INTERVAL (number % 4) MINUTE AS minute, concat('css', toString(number % 9)) AS css, "
        f"'attendance', uniqExactState(toString(number)), uniqExactStateIf(toString(number), number % 7 = 0) "
        f"FROM numbers({start}, {count}) GROUP BY minute, css"
    )


def test_the_summaries_are_rebuilt_with_small_merges_and_keep_their_counts(empty_warehouse) -> None:
    """Migration 0011: the per-minute summaries are rebuilt with granules of 256 KB and merge
    blocks of 4 rows (their uniqExact states made one merge 326 MB at 7 M marks); what they
    held is kept, the materialized views still feed them, and states merge the same —
    every id counted once, re-deliveries too."""
    wh, db = empty_warehouse, empty_warehouse.database
    migrate_up(wh, [m for m in load_migrations() if m.version <= 10])
    _insert_summary_states(wh, 0, 2000)
    before = _summary_counts(wh)
    migrate_up(wh)
    for table in ("events_per_minute", "dead_letters_per_minute"):
        create = wh.query(f"SELECT create_table_query AS q FROM system.tables "
                          f"WHERE database = '{db}' AND name = '{table}'")[0]["q"]  # fmt: skip
        assert "index_granularity_bytes = 262144, merge_max_block_size = 4" in create, table
    assert _summary_counts(wh) == before
    wh.command(f"SYSTEM STOP MERGES {db}.events_per_minute")
    for start in range(1000, 5000, 1000):  # more parts; each batch delivered again by the next one
        _insert_summary_states(wh, start, 2000)
    wh.command(f"SYSTEM START MERGES {db}.events_per_minute")
    wh.command(f"OPTIMIZE TABLE {db}.events_per_minute FINAL")
    parts = wh.query(f"SELECT count() AS n FROM system.parts WHERE database = '{db}' "
                     f"AND table = 'events_per_minute' AND active")[0]["n"]  # fmt: skip
    assert int(parts) == 1
    # 4 minutes × 9 organizations, one row each after the merge; 6,000 ids, a seventh unmapped
    assert _summary_counts(wh) == (6000, len(range(0, 6000, 7)), 36)
    wh.command(
        f"INSERT INTO {db}.attendance_marks (event_id, record_key, css, school_code, group_code, period, "
        f"sheet_date, student_pseudonym, key_id, status, reason_mapped, occurred_at, detected_at, "
        f"mapping_version, processed_at, row_version, is_deleted) VALUES ('new-event', 'k', 'laval', '1', "
        f"'g', 1, '2026-11-30', 'p', 'k1', 'absent', false, now64(3), '2026-11-30 09:00:00', 'v', now64(3), 1, 0)"
    )
    assert _summary_counts(wh)[0] == 6001  # the view writes to the rebuilt table
