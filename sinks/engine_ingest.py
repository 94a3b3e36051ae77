"""Curated batches decoded by the warehouse engine itself (``FORMAT AvroConfluent``).

Decoding curated Avro in Python and building a DataFrame cost the sink ~12 µs per record;
ClickHouse's own Avro reader does the same in ~2.5 µs (issue 18). A message on a curated
topic is one Confluent-framed batch (mapping version, processing time, an array of records),
so the engine reads the messages into a staging shape — the batch's fields as ClickHouse
types, derived from the Avro contract — and ``ARRAY JOIN`` turns each record into a row of
the fact table, with the columns ``sinks.rows.fact_frame`` adds (row version, deletion flag,
retention from the consent). The engine asks the schema registry for the writer's schema by
the id in each message's header (``format_avro_schema_registry_url``).

The Python route (``sinks.batch.write_batch``) stays: it isolates a message the engine
refuses, and takes over if the engine cannot decode at all (a registry it cannot reach).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.contracts import Contract

# The three top-level fields every curated batch has, in this order (checked per contract).
_BATCH_FIELDS = ("mapping_version", "processed_at")


class NotEngineReadable(ValueError):
    """The contract uses an Avro type this module does not map to ClickHouse."""


def _clickhouse_type(avro: Any, named: dict[str, str]) -> str:
    """The ClickHouse type the engine's Avro reader fills from ``avro``."""
    if isinstance(avro, list):
        others = [t for t in avro if t != "null"]
        if len(others) != 1:
            raise NotEngineReadable("only [null, T] unions are mapped")
        inner = _clickhouse_type(others[0], named)
        return inner if len(others) == len(avro) else f"Nullable({inner})"
    if isinstance(avro, str):
        simple = {"string": "String", "boolean": "Bool", "int": "Int32", "long": "Int64",
                  "double": "Float64", "float": "Float32"}  # fmt: skip
        if avro in simple:
            return simple[avro]
        if avro in named:
            return named[avro]
        raise NotEngineReadable(f"Avro type {avro} is not mapped")
    kind = avro.get("type")
    logical = avro.get("logicalType")
    if kind == "int" and logical == "date":
        return "Date"
    if kind == "long" and logical == "timestamp-millis":
        return "DateTime64(3, 'UTC')"
    if kind == "enum":
        named[avro["name"]] = "String"  # the symbol, as the Python route stores it
        return "String"
    if kind == "array":
        return f"Array({_clickhouse_type(avro['items'], named)})"
    if kind == "record":
        fields = ", ".join(f"{f['name']} {_clickhouse_type(f['type'], named)}" for f in avro["fields"])
        named[avro["name"]] = f"Tuple({fields})"
        return f"Tuple({fields})"
    if isinstance(kind, str | list | dict) and logical is None:
        return _clickhouse_type(kind, named)
    raise NotEngineReadable(f"Avro type {kind}/{logical} is not mapped")


@dataclass(frozen=True)
class EngineRoute:
    """How the engine turns one curated topic's messages into rows of its fact table."""

    structure: str  # the staging shape, as an input()/file() structure
    array: str  # the records' field, ARRAY JOINed as ``r``
    record_fields: tuple[str, ...]

    @classmethod
    def for_contract(cls, contract: Contract) -> EngineRoute:
        """The route of a curated batch contract; NotEngineReadable if it cannot be mapped."""
        schema = json.loads(contract.schema_str)
        fields = schema["fields"]
        names = tuple(f["name"] for f in fields)
        if names[:2] != _BATCH_FIELDS or len(names) != 3 or fields[2]["type"].get("type") != "array":
            raise NotEngineReadable(f"{contract.full_name} is not a curated batch")
        named: dict[str, str] = {}
        structure = ", ".join(f"{f['name']} {_clickhouse_type(f['type'], named)}" for f in fields)
        items = fields[2]["type"]["items"]
        return cls(structure, names[2], tuple(f["name"] for f in items["fields"]))

    def columns_and_select(
        self, retention_days: Mapping[str, int], fallback_days: int
    ) -> tuple[list[str], str]:
        """The fact table's columns and the expressions that fill them, as ``fact_frame`` does:
        the record's fields (``deleted`` becomes ``is_deleted``), the batch's stamp, the row
        version (the connector's detection time, ms, never below 0) and the retention the
        CSS's consent sets (``retention_days``, else ``fallback_days``)."""
        columns: list[str] = []
        select: list[str] = []
        for name in self.record_fields:
            if name == "deleted":
                columns.append("is_deleted")
                select.append("toUInt8(r.deleted)")
            else:
                columns.append(name)
                select.append(f"r.{name}")
        columns += ["mapping_version", "processed_at", "row_version", "retention_days"]
        version = "toUInt64(greatest(toUnixTimestamp64Milli(r.detected_at), 0))"
        select += ["mapping_version", "processed_at", version]
        if retention_days:
            codes = ", ".join(quote(c) for c in retention_days)
            days = ", ".join(str(int(d)) for d in retention_days.values())
            select.append(f"toUInt16(transform(r.css, [{codes}], [{days}], {int(fallback_days)}))")
        else:
            select.append(f"toUInt16({int(fallback_days)})")
        return columns, ", ".join(select)


def quote(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def batch_record_count(value: bytes) -> int:
    """Records in one Confluent-framed curated batch, read from the Avro array's block counts
    without decoding the records (the sink's row counter; raises ValueError if malformed)."""
    pos = 5  # magic byte and schema id
    length, pos = _zigzag(value, pos)  # mapping_version
    pos += length
    _, pos = _zigzag(value, pos)  # processed_at
    count, pos = _zigzag(value, pos)
    if count < 0 or length < 0:  # a block with its byte size: our writer never makes one
        raise ValueError("unexpected Avro block layout")
    return count


def _zigzag(data: bytes, pos: int) -> tuple[int, int]:
    shift = 0
    acc = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated Avro varint")
        byte = data[pos]
        pos += 1
        acc |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (acc >> 1) ^ -(acc & 1), pos
        shift += 7


RetentionSource = Callable[[], Mapping[str, int]]
