"""Avro contracts and the Confluent wire format, through the registry stand-in over HTTP."""

from __future__ import annotations

import io
import json
import struct
from datetime import UTC, date, datetime

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas.contracts import (
    AVRO_DIR,
    CURATED_RECORDS_FIELD,
    Dataset,
    curated_contract,
    epoch_days,
    epoch_millis,
    from_epoch_days,
    load_contract,
    parse_raw_topic,
    raw_contract,
    raw_topic,
    without_logical_types,
)
from schemas.wire import AvroCodec, WireFormatError, as_logical, as_plain

IDENTIFIERS = {"code_permanent", "first_name", "last_name", "birth_date", "postal_code",
               "email", "phone", "employee_number", "student_local_id", "absence_text"}  # fmt: skip


def _field_names(schema: dict) -> set[str]:
    names = set()
    for f in schema.get("fields", []):
        names.add(f["name"])
        t = f["type"]
        if isinstance(t, dict) and t.get("type") == "array" and isinstance(t["items"], dict):
            names |= _field_names(t["items"])
    return names


def test_every_contract_parses_and_documents_its_fields() -> None:
    files = sorted(AVRO_DIR.glob("*.avsc"))
    assert len(files) == 8
    for path in files:
        raw = json.loads(path.read_text())
        fastavro.parse_schema(raw)
        assert raw.get("doc"), path.name
        assert ".v1." in path.name


@pytest.mark.parametrize("dataset", list(Dataset))
def test_curated_contracts_have_no_identifier_field(dataset: Dataset) -> None:
    assert not _field_names(curated_contract(dataset).raw) & IDENTIFIERS
    # ...while the raw contract does carry them (the stream stage must remove them).
    assert _field_names(raw_contract(dataset).raw) & IDENTIFIERS


def test_every_record_of_a_batch_keeps_its_own_event_id() -> None:
    for dataset in Dataset:
        for contract, field in ((raw_contract(dataset), "marks"), (curated_contract(dataset), "x")):
            items = next(f for f in contract.raw["fields"] if f["name"] == CURATED_RECORDS_FIELD[dataset])
            assert "event_id" in {f["name"] for f in items["type"]["items"]["fields"]}, (contract, field)


def test_raw_topic_names_round_trip() -> None:
    assert parse_raw_topic(raw_topic("montreal", Dataset.GRADES)) == ("montreal", Dataset.GRADES)
    with pytest.raises(ValueError):
        parse_raw_topic("curated.attendance")


def _heartbeat() -> dict:
    now = datetime(2026, 11, 20, 13, 0, tzinfo=UTC)
    return {"css": "laval", "connector_id": "c1", "sent_at": now, "outbox_depth": 3,
            "last_send_at": None, "source_lag_s": 1.5, "connector_version": "0.1.0"}  # fmt: skip


def test_codec_writes_confluent_framing_with_registry_id(codec: AvroCodec, registry) -> None:
    contract = load_contract("connector_heartbeat.v1.avsc")
    data = codec.encode(contract, _heartbeat())
    magic, schema_id = struct.unpack(">bI", data[:5])
    client = SchemaRegistryClient({"url": registry.url})
    assert magic == 0
    assert json.loads(client.get_schema(schema_id).schema_str)["name"] == "ConnectorHeartbeat"
    assert codec.decode(data, contract)["outbox_depth"] == 3


def test_codec_bytes_identical_to_confluent_avro_serializer(codec: AvroCodec, registry) -> None:
    contract = load_contract("connector_heartbeat.v1.avsc")
    client = SchemaRegistryClient({"url": registry.url})
    serializer = AvroSerializer(client, contract.schema_str, conf={
        "auto.register.schemas": True,
        "subject.name.strategy": lambda _ctx, record_name: record_name,
    })  # fmt: skip
    theirs = serializer(_heartbeat(), SerializationContext("connector.heartbeats", MessageField.VALUE))
    assert codec.encode(contract, _heartbeat()) == theirs


@pytest.mark.parametrize("garbage", [None, b"", b"\x00\x00", b"\x07\x00\x00\x00\x01abc",
                                     b"\x00\x00\x00\x99\x99zz", b"not avro at all"])  # fmt: skip
def test_decode_rejects_garbage_with_a_reason(codec: AvroCodec, garbage: bytes | None) -> None:
    with pytest.raises(WireFormatError) as info:
        codec.decode(garbage, raw_contract(Dataset.ATTENDANCE))
    assert str(info.value)


def test_decode_rejects_a_batch_of_the_wrong_contract(codec: AvroCodec) -> None:
    data = codec.encode(load_contract("connector_heartbeat.v1.avsc"), _heartbeat())
    with pytest.raises(WireFormatError, match=r"unreadable as qc\.vigie\.raw\.AttendanceSheet"):
        codec.decode(data, raw_contract(Dataset.ATTENDANCE))


def test_registry_stand_in_gives_one_id_per_schema_and_persists(registry, tmp_path) -> None:
    from vigie.runtime.registry import RegistryServer

    client = SchemaRegistryClient({"url": registry.url})
    schema = Schema(load_contract("dead_letter.v1.avsc").schema_str, "AVRO")
    first = client.register_schema("a-subject", schema)
    assert SchemaRegistryClient({"url": registry.url}).register_schema("other", schema) == first
    assert client.lookup_schema("a-subject", schema).schema_id == first
    assert client.get_latest_version("a-subject").schema_id == first
    assert "a-subject" in client.get_subjects()

    # Ids survive a restart of the stand-in (the warehouse outlives the broker).
    state = tmp_path / "reg.json"
    one = RegistryServer("127.0.0.1", 0, state).start()
    sid = SchemaRegistryClient({"url": one.url}).register_schema("s", schema)
    one.stop()
    two = RegistryServer("127.0.0.1", 0, state).start()
    try:
        fetched = SchemaRegistryClient({"url": two.url}).get_schema(sid)
        assert json.loads(fetched.schema_str)["name"] == "DeadLetter"
    finally:
        two.stop()


def _staff_change(now: datetime) -> dict:
    return {"event_id": "e", "record_key": "r", "op": "upsert",
            "employee_number": "E1", "first_name": None, "last_name": None,
            "birth_date": date(1980, 2, 29), "email": None, "phone": None, "job_code": "ENS",
            "change_type": "hire", "leave_type": None, "school_code": None, "legally_qualified": True,
            "effective_date": date(2026, 11, 20), "occurred_at": now, "detected_at": now}  # fmt: skip


def test_date_and_timestamp_logical_types_round_trip(codec: AvroCodec) -> None:
    contract = raw_contract(Dataset.STAFF)
    now = datetime(2026, 11, 20, 13, 0, 1, 123000, tzinfo=UTC)
    change = _staff_change(now)
    batch = {"css": "laval", "source_system": "x", "changes": [change]}
    out = codec.decode(codec.encode(contract, batch), contract)["changes"][0]
    assert out["birth_date"] == date(1980, 2, 29)
    assert out["occurred_at"] == now
    assert isinstance(io, object)


def test_the_stage_reads_times_as_plain_numbers_from_the_same_bytes(codec: AvroCodec) -> None:
    """The stream stage's plain view: epoch milliseconds and days since 1970-01-01, same wire
    bytes both ways, so a sink reading the stage's output gets the datetimes the connector sent."""
    contract = raw_contract(Dataset.STAFF)
    now = datetime(2026, 11, 20, 13, 0, 1, 123000, tzinfo=UTC)
    change = _staff_change(now)
    data = codec.encode(contract, {"css": "laval", "source_system": "x", "changes": [change]})
    plain = codec.decode(data, contract, plain=True)
    got = plain["changes"][0]
    assert got["occurred_at"] == epoch_millis(now) == 1_795_179_601_123
    assert got["birth_date"] == epoch_days(date(1980, 2, 29)) == 3_711
    assert from_epoch_days(got["effective_date"]) == date(2026, 11, 20)
    assert codec.encode(contract, plain, plain=True) == data
    assert as_logical(contract, plain)["changes"][0] == change
    assert as_plain(contract, as_logical(contract, plain)) == plain


def test_the_plain_view_drops_every_logical_type_and_stays_a_schema() -> None:
    """A writer schema may carry any logical type (fastavro converts with the writer's): the
    plain view keeps the underlying Avro type of each, a fixed stays a fixed, and a field that
    names a logical type beside its type (Avro ignores it there) stays a field."""
    schema = {"type": "record", "name": "W", "fields": [
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "h", "type": ["null", {"type": "int", "logicalType": "time-millis"}]},
        {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "d", "type": {"type": "fixed", "name": "D", "size": 4, "logicalType": "decimal",
                               "precision": 6, "scale": 2}},
        {"name": "f", "type": "long", "logicalType": "date"},
    ]}  # fmt: skip
    plain = without_logical_types(schema)
    assert "logicalType" not in json.dumps(plain)
    assert [f["name"] for f in plain["fields"]] == ["t", "h", "u", "d", "f"]
    assert plain["fields"][3]["type"]["type"] == "fixed"
    record = {"t": 2**40, "h": 5, "u": "not-a-uuid", "d": b"\0\0\0\1", "f": 3}
    parsed = fastavro.parse_schema(plain)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parsed, record)
    assert fastavro.schemaless_reader(io.BytesIO(body.getvalue()), parsed, None) == record
