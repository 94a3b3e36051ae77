"""Sinks on the real engine: both backends, poison isolation, outage retry, TTL from consent,
dedup-safe summaries, CSS compartments and the access DDL.

The server backend runs against `vigie warehouse serve` (chDB behind ClickHouse's HTTP
protocol) in a subprocess: a ClickHouse server does not install on this machine, and
the test process already holds its one chDB store.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from schemas.contracts import CURATED_RECORDS_FIELD, Dataset, curated_contract, curated_topic
from sinks.access import access_statements, css_role
from sinks.batch import TableSink, write_batch
from sinks.migrate import migrate_up
from sinks.rows import FACT_TABLES, fact_frame, retention_by_css
from sinks.warehouse import ClickHouseWarehouse, WarehouseUnavailable
from streams.consent import ConsentRegistry
from streams.curate import RawMessage
from tests.curated import curated_batches
from tests.embedded import WarehouseProcess

SCHEMA_SQL = (
    "SELECT table, name, type FROM system.columns WHERE database = '{db}' "
    "AND table != 'schema_migrations' ORDER BY table, position"
)


@pytest.fixture(scope="module")
def warehouse_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarehouseProcess]:
    server = WarehouseProcess(tmp_path_factory.mktemp("warehouse-server")).start()
    yield server
    server.stop()


@pytest.fixture
def server_warehouse(warehouse_process: WarehouseProcess) -> Iterator[ClickHouseWarehouse]:
    wh = ClickHouseWarehouse(warehouse_process.url, f"s_{uuid.uuid4().hex[:10]}")
    migrate_up(wh)
    yield wh
    wh.close()


def _messages(codec, dataset: Dataset, batches: list[dict]) -> list[RawMessage]:
    contract = curated_contract(dataset)
    return [
        RawMessage(curated_topic(dataset), 0, offset, codec.encode(contract, batch))
        for offset, batch in enumerate(batches)
    ]


def _fact_sink(dataset: Dataset, consent: ConsentRegistry | None = None) -> TableSink:
    def to_frame(batches: list[dict]) -> pd.DataFrame:
        return fact_frame(dataset, batches, retention_by_css(consent, dataset) if consent else None)

    return TableSink(FACT_TABLES[dataset], curated_contract(dataset), to_frame, dataset=dataset.value)


def _count(wh, table: str) -> int:
    return int(wh.query(f"SELECT count() AS n FROM {wh.database}.{table} FINAL")[0]["n"])


def test_both_backends_run_the_same_migrations_and_answer_the_same_queries(
    warehouse, server_warehouse, stage_context, organizations
) -> None:
    assert warehouse.query(SCHEMA_SQL.format(db=warehouse.database)) == server_warehouse.query(
        SCHEMA_SQL.format(db=server_warehouse.database)
    )
    batches = curated_batches(stage_context, organizations, "laval")
    for wh in (warehouse, server_warehouse):
        for ds, table in FACT_TABLES.items():
            wh.insert_frame(table, fact_frame(ds, batches[ds]))
    answers = []
    for wh in (warehouse, server_warehouse):
        answers.append(wh.query(
            f"SELECT status, ifNull(absence_reason, '') AS reason, count() AS n, "
            f"uniqExact(student_pseudonym) AS students FROM {wh.database}.attendance_marks FINAL "
            f"GROUP BY status, reason ORDER BY status, reason"))  # fmt: skip
    assert answers[0] and [{k: str(v) for k, v in r.items()} for r in answers[0]] == [
        {k: str(v) for k, v in r.items()} for r in answers[1]
    ]


def test_a_redelivered_batch_is_written_once_on_the_server_backend(
    server_warehouse, codec, stage_context, organizations
) -> None:
    batches = curated_batches(stage_context, organizations, "phares")[Dataset.ATTENDANCE]
    messages = _messages(codec, Dataset.ATTENDANCE, batches)
    sink = _fact_sink(Dataset.ATTENDANCE)
    for _ in range(2):
        written, letters = asyncio.run(write_batch(server_warehouse, sink, messages, codec, 1.0))
        assert len(written) == len(messages) and letters == []
    marks = sum(len(b["marks"]) for b in batches)
    assert _count(server_warehouse, "attendance_marks") == marks > 0


def test_a_message_the_warehouse_refuses_is_dead_lettered_and_the_rest_written(
    warehouse, codec, stage_context, organizations
) -> None:
    # The engine itself refuses the poison message: a CHECK constraint on the period.
    warehouse.command(
        f"ALTER TABLE {warehouse.database}.attendance_marks ADD CONSTRAINT p CHECK period <= 12"
    )
    batches = curated_batches(stage_context, organizations, "laval")[Dataset.ATTENDANCE]
    poison = {**batches[1], "marks": [{**m, "period": 99} for m in batches[1]["marks"]]}
    messages = _messages(codec, Dataset.ATTENDANCE, [batches[0], poison, *batches[2:]])
    messages.append(RawMessage(curated_topic(Dataset.ATTENDANCE), 0, 999, b"\x00\x00\x00\x00\x01garbage"))

    written, letters = asyncio.run(
        write_batch(warehouse, _fact_sink(Dataset.ATTENDANCE), messages, codec, 1.0)
    )

    assert len(written) == len(messages) - 2
    by_offset = {d["source_offset"]: d for d in letters}
    assert set(by_offset) == {1, 999}
    assert by_offset[1]["stage"] == "sink" and by_offset[1]["reason_code"] == "warehouse_rejected"
    assert by_offset[1]["record_count"] == len(poison["marks"]) and by_offset[1]["css"] == "laval"
    assert by_offset[1]["payload"] == messages[1].value  # the original, to replay once fixed
    assert by_offset[999]["reason_code"] == "undecodable"
    good = sum(len(b["marks"]) for i, b in enumerate(batches) if i != 1)
    assert _count(warehouse, "attendance_marks") == good


def test_an_insert_waits_for_the_warehouse_to_come_back_and_loses_nothing(
    tmp_path: Path, codec, stage_context, organizations
) -> None:
    server = WarehouseProcess(tmp_path / "wh").start()
    try:
        wh = ClickHouseWarehouse(server.url, "outage")
        migrate_up(wh)
        batches = curated_batches(stage_context, organizations, "laval")[Dataset.ATTENDANCE]
        messages = _messages(codec, Dataset.ATTENDANCE, batches)
        server.kill()
        with pytest.raises(WarehouseUnavailable):
            wh.insert_frame("attendance_marks", fact_frame(Dataset.ATTENDANCE, batches))
        result: dict = {}

        def sink() -> None:
            result["out"] = asyncio.run(write_batch(wh, _fact_sink(Dataset.ATTENDANCE), messages, codec, 0.5))

        writer = threading.Thread(target=sink)
        writer.start()
        time.sleep(3)
        assert writer.is_alive(), "the sink must keep retrying while the warehouse is away"
        server.start()  # same data directory, same port
        writer.join(60)
        assert not writer.is_alive()
        written, letters = result["out"]
        assert len(written) == len(messages) and letters == []
        assert _count(wh, "attendance_marks") == sum(len(b["marks"]) for b in batches)
        wh.close()
    finally:
        server.stop()


def test_every_fact_table_has_a_ttl_that_follows_the_consent_retention(
    warehouse, stage_context, organizations
) -> None:
    for table in FACT_TABLES.values():
        ddl = warehouse.query(f"SHOW CREATE TABLE {warehouse.database}.{table}")[0]["statement"]
        assert "TTL" in ddl and "retention_days" in ddl, table

    consent = ConsentRegistry.load(Path(__file__).parent.parent / "streams/mappings/consent.csv")
    laval = consent.consents[("laval", Dataset.ATTENDANCE)]
    short = ConsentRegistry({**consent.consents, ("laval", Dataset.ATTENDANCE): type(laval)(
        "laval", Dataset.ATTENDANCE, laval.purpose, laval.valid_from, None, 30)})  # fmt: skip
    old_day = date.today() - timedelta(days=60)
    old = curated_batches(stage_context, organizations, "laval", 1, on=old_day)[Dataset.ATTENDANCE]
    recent = curated_batches(stage_context, organizations, "laval", 1, seed=12)[Dataset.ATTENDANCE]
    frame = fact_frame(Dataset.ATTENDANCE, old + recent, retention_by_css(short, Dataset.ATTENDANCE))
    assert set(frame["retention_days"]) == {30}
    assert (
        frame["sheet_date"].min()
        < pd.Timestamp(date.today() - timedelta(days=30))
        < frame["sheet_date"].max()
    )
    warehouse.insert_frame("attendance_marks", frame)
    warehouse.command(f"OPTIMIZE TABLE {warehouse.database}.attendance_marks FINAL")
    rows = warehouse.query(f"SELECT DISTINCT sheet_date AS d FROM {warehouse.database}.attendance_marks")
    kept = [date.fromisoformat(r["d"]) for r in rows]
    assert kept and all(d >= date.today() - timedelta(days=30) for d in kept)  # the old marks expired


def test_summaries_count_a_redelivered_batch_once(warehouse, stage_context, organizations) -> None:
    batches = curated_batches(stage_context, organizations, "laval", 3)
    for _ in range(2):  # the same events delivered twice, as after a crash
        for ds, table in FACT_TABLES.items():
            warehouse.insert_frame(table, fact_frame(ds, batches[ds]))
    summary = {r["dataset"]: (int(r["events"]), int(r["unmapped"])) for r in warehouse.query(
        f"SELECT dataset, uniqExactMerge(events) AS events, uniqExactMerge(unmapped) AS unmapped "
        f"FROM {warehouse.database}.events_per_minute WHERE css = 'laval' GROUP BY dataset")}  # fmt: skip
    for ds in Dataset:
        records = [r for b in batches[ds] for r in b[CURATED_RECORDS_FIELD[ds]]]
        assert summary[ds.value][0] == len({r["event_id"] for r in records}) > 0
    unmapped = [m for b in batches[Dataset.ATTENDANCE] for m in b["marks"] if not m["reason_mapped"]]
    assert summary["attendance"][1] == len({m["event_id"] for m in unmapped})


def test_a_css_view_shows_only_that_css_rows(warehouse, stage_context, organizations) -> None:
    for css in ("laval", "phares"):
        batches = curated_batches(stage_context, organizations, css)
        warehouse.insert_frame(
            "attendance_marks", fact_frame(Dataset.ATTENDANCE, batches[Dataset.ATTENDANCE])
        )
    db = warehouse.database
    for css in ("laval", "phares"):
        rows = warehouse.query(f"SELECT DISTINCT css FROM {db}.css_attendance_marks(css = '{css}')")
        assert rows == [{"css": css}]
    assert warehouse.query(f"SELECT count() AS n FROM {db}.css_attendance_marks(css = 'iles')") == [{"n": 0}]


def test_the_roles_and_row_policies_parse_on_the_engine(warehouse, organizations) -> None:
    """chDB has no access control (CREATE ROLE fails), so the server DDL is checked against
    the engine's own parser, and its shape against the organization list."""
    statements = access_statements("vigie", list(organizations))
    for statement in statements:
        escaped = statement.replace("\\", "\\\\").replace("'", "\\'")
        assert warehouse.query(f"SELECT formatQuery('{escaped}') AS q")[0]["q"]
    policies = [s for s in statements if s.startswith("CREATE ROW POLICY")]
    assert len(policies) == len(organizations) + 2  # + the writer's and the ministry's
    laval = next(s for s in policies if css_role("laval") in s)
    assert "USING css = 'laval'" in laval and "vigie.attendance_marks" in laval
    assert len({css_role(c) for c in organizations}) == len(organizations)
    with pytest.raises(ValueError, match="cannot name a role"):
        access_statements("vigie", ["laval'; DROP TABLE x; --"])


def test_server_warehouse_url_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="http://host:8123"):
        ClickHouseWarehouse("clickhouse.example:9000")
    started = datetime.now(UTC)
    with pytest.raises(WarehouseUnavailable, match="unreachable"):
        ClickHouseWarehouse("http://user:s3cret@127.0.0.1:1")
    assert datetime.now(UTC) - started < timedelta(seconds=30)


@pytest.mark.parametrize("compress", ["lz4", "gzip", "false"])
def test_a_large_insert_streamed_in_many_blocks_arrives_whole(warehouse_process, compress: str) -> None:
    wh = ClickHouseWarehouse(f"{warehouse_process.url}?compress={compress}", f"big_{compress}")
    wh.command(
        f"CREATE TABLE IF NOT EXISTS {wh.database}.n (k UInt64, s String) ENGINE = MergeTree ORDER BY k"
    )
    rows = 300_000  # clickhouse-connect sends this as several compressed blocks
    wh.insert_frame("n", pd.DataFrame({"k": range(rows), "s": [f"row {i}" for i in range(rows)]}))
    assert wh.query(f"SELECT count() AS n, sum(k) AS s FROM {wh.database}.n") == [
        {"n": rows, "s": rows * (rows - 1) // 2}
    ]
    wh.close()


def test_vigie_migrate_against_a_server_url(warehouse_process, tmp_path: Path) -> None:
    from tests.embedded import vigie

    url = warehouse_process.url
    refused = vigie("migrate", "--url", url, data_dir=tmp_path, check=False)
    # The stand-in (chDB) has no access control: the migrations land, the roles cannot.
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "not the roles and row policies" in refused.stderr and "--no-access" in refused.stderr
    done = vigie("migrate", "--url", url, "--no-access", data_dir=tmp_path)
    assert "0 migration(s) applied" in done.stdout
    tables = {r["name"] for r in ClickHouseWarehouse(url, "vigie").query(
        "SELECT name FROM system.tables WHERE database = 'vigie'")}  # fmt: skip
    assert set(FACT_TABLES.values()) | {"events_per_minute", "consents"} <= tables
    unreachable = vigie("migrate", "--url", "http://127.0.0.1:1", data_dir=tmp_path, check=False)
    assert unreachable.returncode == 1 and "cannot reach the warehouse" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_status_and_report_read_a_server_warehouse(warehouse_process, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "VIGIE_WAREHOUSE_URL": warehouse_process.url,
        "VIGIE_WAREHOUSE_DATABASE": "srv_status",
    }
    run = [sys.executable, "-m", "vigie.cli"]
    unmigrated = subprocess.run([*run, "status", "--data-dir", str(tmp_path)], capture_output=True, text=True,
                                timeout=120, env=env)  # fmt: skip
    assert unmigrated.returncode == 1 and "vigie migrate" in unmigrated.stderr
    assert "Traceback" not in unmigrated.stderr
    subprocess.run([*run, "migrate", "--no-access", "--data-dir", str(tmp_path)], env=env, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    status = subprocess.run([*run, "status", "--json", "--data-dir", str(tmp_path)], capture_output=True,
                            text=True, timeout=120, env=env, check=True)  # fmt: skip
    assert len(json.loads(status.stdout)) == 72
    report = subprocess.run([*run, "report", "--out", str(tmp_path / "r.html"), "--data-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, env=env, check=True)  # fmt: skip
    from dashboards.panels import DASHBOARDS

    sql_panels = sum(1 for d in DASHBOARDS for p in d.panels if not p.promql)
    assert "serveur ClickHouse" in report.stdout and f"{sql_panels} panneaux" in report.stdout  # empty store
    assert "Vigie — assiduité" in (tmp_path / "r.html").read_text()
