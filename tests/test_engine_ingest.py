"""The engine decodes curated batches itself (FORMAT AvroConfluent + ARRAY JOIN): the same
rows as the Python route, refusals still isolated into dead letters, and the Python route
takes over when the engine cannot reach the schema registry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest

from schemas.contracts import CURATED_RECORDS_FIELD, Dataset, curated_contract, curated_topic
from sinks.batch import EngineSink, TableSink, write_batch, write_curated
from sinks.engine_ingest import EngineRoute, batch_record_count
from sinks.migrate import migrate_up
from sinks.rows import FACT_TABLES, FALLBACK_RETENTION_DAYS, fact_frame, retention_by_css
from sinks.warehouse import ClickHouseWarehouse
from streams.consent import ConsentRegistry
from streams.curate import RawMessage
from tests.curated import curated_batches
from tests.embedded import WarehouseProcess


def _messages(codec, dataset: Dataset, batches: list[dict]) -> list[RawMessage]:
    contract = curated_contract(dataset)
    return [
        RawMessage(curated_topic(dataset), 0, offset, codec.encode(contract, batch))
        for offset, batch in enumerate(batches)
    ]


def _sinks(dataset: Dataset, consent: ConsentRegistry, registry_url: str) -> tuple[TableSink, EngineSink]:
    def to_frame(batches: list[dict]) -> pd.DataFrame:
        return fact_frame(dataset, batches, retention_by_css(consent, dataset))

    def retention() -> dict[str, int]:
        return {c.css: c.retention_days for (_css, d), c in consent.consents.items() if d is dataset}

    sink = TableSink(FACT_TABLES[dataset], curated_contract(dataset), to_frame, dataset=dataset.value)
    route = EngineRoute.for_contract(curated_contract(dataset))
    return sink, EngineSink(route, retention, registry_url, FALLBACK_RETENTION_DAYS)


def _rows(wh, table: str) -> list[dict]:
    # Every column but the insertion time, in a stable order.
    columns = [r["name"] for r in wh.query(
        f"SELECT name FROM system.columns WHERE database = '{wh.database}' AND table = '{table}' "
        "AND name != 'ingested_at' ORDER BY position"
    )]  # fmt: skip
    return wh.query(f"SELECT {', '.join(columns)} FROM {wh.database}.{table} ORDER BY record_key")


@pytest.mark.parametrize("dataset", list(Dataset))
def test_the_engine_stores_exactly_the_rows_the_python_route_stores(
    warehouse, codec, registry, stage_context, organizations, consent, dataset: Dataset
) -> None:
    batches = [
        b for css in ("laval", "phares") for b in curated_batches(stage_context, organizations, css)[dataset]
    ]
    messages = _messages(codec, dataset, batches)
    records = sum(len(b[CURATED_RECORDS_FIELD[dataset]]) for b in batches)
    assert records > 0
    sink, engine = _sinks(dataset, consent, registry.url)
    python = warehouse.for_database(f"p_{uuid.uuid4().hex[:10]}")
    migrate_up(python)

    _, letters = asyncio.run(write_curated(warehouse, sink, engine, messages, codec, 1.0))
    asyncio.run(write_batch(python, sink, messages, codec, 1.0))

    assert letters == [] and engine.failures == 0  # the engine took the batch itself
    table = FACT_TABLES[dataset]
    engine_rows, python_rows = _rows(warehouse, table), _rows(python, table)
    assert len(engine_rows) == records
    assert engine_rows == python_rows  # same values in all columns: times, dates, retention, NULLs


def test_a_batch_counts_its_records_without_decoding_them(codec, stage_context, organizations) -> None:
    batches = curated_batches(stage_context, organizations, "laval")[Dataset.ATTENDANCE]
    for message, batch in zip(_messages(codec, Dataset.ATTENDANCE, batches), batches, strict=True):
        assert batch_record_count(message.value) == len(batch["marks"])
    with pytest.raises(ValueError):
        batch_record_count(b"\x00\x00\x00\x00\x01\xff")


def test_a_refused_message_is_still_isolated_and_the_rest_written_once(
    warehouse, codec, registry, stage_context, organizations, consent
) -> None:
    # The engine refuses the whole batch (a CHECK constraint); Python isolates the poison.
    warehouse.command(
        f"ALTER TABLE {warehouse.database}.attendance_marks ADD CONSTRAINT p CHECK period <= 12"
    )
    batches = curated_batches(stage_context, organizations, "laval")[Dataset.ATTENDANCE]
    poison = {**batches[1], "marks": [{**m, "period": 99} for m in batches[1]["marks"]]}
    messages = _messages(codec, Dataset.ATTENDANCE, [batches[0], poison, *batches[2:]])
    sink, engine = _sinks(Dataset.ATTENDANCE, consent, registry.url)

    for _ in range(2):  # redelivered: still once
        _, letters = asyncio.run(write_curated(warehouse, sink, engine, messages, codec, 1.0))
        assert [(d["source_offset"], d["reason_code"]) for d in letters] == [(1, "warehouse_rejected")]
        assert letters[0]["payload"] == messages[1].value
    good = sum(len(b["marks"]) for i, b in enumerate(batches) if i != 1)
    n = warehouse.query(f"SELECT count() AS n FROM {warehouse.database}.attendance_marks FINAL")[0]["n"]
    assert int(n) == good
    assert engine.enabled  # bad data is not the engine's failure


def test_an_engine_that_cannot_reach_the_registry_hands_over_to_python(
    warehouse, codec, stage_context, organizations, consent
) -> None:
    batches = curated_batches(stage_context, organizations, "laval")[Dataset.ATTENDANCE]
    messages = _messages(codec, Dataset.ATTENDANCE, batches)
    sink, engine = _sinks(Dataset.ATTENDANCE, consent, "http://127.0.0.1:9/")  # nothing listens

    for _ in range(engine.max_failures):
        _, letters = asyncio.run(write_curated(warehouse, sink, engine, messages, codec, 1.0))
        assert letters == []
    assert not engine.enabled  # Python alone from now on
    n = warehouse.query(f"SELECT count() AS n FROM {warehouse.database}.attendance_marks FINAL")[0]["n"]
    assert int(n) == sum(len(b["marks"]) for b in batches)


def test_hostile_css_codes_in_the_consent_cannot_break_out_of_the_engine_query(
    warehouse, codec, registry, stage_context, organizations
) -> None:
    # The retention expression quotes every CSS code: a quote in a code stays a string.
    batches = curated_batches(stage_context, organizations, "laval")[Dataset.ATTENDANCE]
    messages = _messages(codec, Dataset.ATTENDANCE, batches)
    sink = TableSink(
        FACT_TABLES[Dataset.ATTENDANCE],
        curated_contract(Dataset.ATTENDANCE),
        lambda b: fact_frame(Dataset.ATTENDANCE, b),
    )
    route = EngineRoute.for_contract(curated_contract(Dataset.ATTENDANCE))
    hostile = {"x'); DROP TABLE attendance_marks; --": 1, "laval": 42}
    engine = EngineSink(route, lambda: hostile, registry.url, FALLBACK_RETENTION_DAYS)

    _, letters = asyncio.run(write_curated(warehouse, sink, engine, messages, codec, 1.0))

    assert letters == [] and engine.failures == 0
    days = warehouse.query(f"SELECT DISTINCT retention_days AS d FROM {warehouse.database}.attendance_marks")
    assert days == [{"d": 42}]


@pytest.fixture(scope="module")
def warehouse_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarehouseProcess]:
    server = WarehouseProcess(tmp_path_factory.mktemp("warehouse-server")).start()
    yield server
    server.stop()


def test_the_server_backend_stores_every_record_once_by_whichever_route_it_allows(
    warehouse_process, codec, registry, stage_context, organizations, consent
) -> None:
    wh = ClickHouseWarehouse(warehouse_process.url, f"s_{uuid.uuid4().hex[:10]}")
    try:
        migrate_up(wh)
        batches = curated_batches(stage_context, organizations, "laval")[Dataset.ATTENDANCE]
        messages = _messages(codec, Dataset.ATTENDANCE, batches)
        sink, engine = _sinks(Dataset.ATTENDANCE, consent, registry.url)
        for _ in range(2):
            _, letters = asyncio.run(write_curated(wh, sink, engine, messages, codec, 1.0))
            assert letters == []
        n = wh.query(f"SELECT count() AS n FROM {wh.database}.attendance_marks FINAL")[0]["n"]
        assert int(n) == sum(len(b["marks"]) for b in batches)
    finally:
        wh.close()


def test_the_server_statement_parses_on_the_engine(warehouse, consent) -> None:
    # No ClickHouse server runs here: its statement (input() over the request body, the
    # registry as a query setting) is at least checked by the engine's own parser.
    from sinks.engine_ingest import quote
    from sinks.warehouse import avro_insert_sql

    route = EngineRoute.for_contract(curated_contract(Dataset.GRADES))
    columns, select = route.columns_and_select({"laval": 365}, FALLBACK_RETENTION_DAYS)
    source = f"input({quote(route.structure)})"
    sql = (
        avro_insert_sql("vigie", "grade_results", columns, select, source, route.array)
        + " FORMAT AvroConfluent"
    )
    parsed = warehouse.query(f"SELECT formatQuery({quote(sql)}) AS q")[0]["q"]
    assert "input(" in parsed and "ARRAY JOIN" in parsed and parsed.rstrip().endswith("FORMAT AvroConfluent")
