"""The Avro contracts shipped in ``schemas/avro/`` and the topics that carry them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

AVRO_DIR = Path(__file__).parent / "avro"


class Dataset(StrEnum):
    """The three datasets a CSS consents to separately."""

    ATTENDANCE = "attendance"
    GRADES = "grades"
    STAFF = "staff"


EPOCH = date(1970, 1, 1)
# Avro's primitive types: a logical type on one of these is read as the primitive alone.
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def without_logical_types(schema: Any) -> Any:
    """The schema with timestamps as epoch milliseconds and dates as days since 1970-01-01:
    same bytes on the wire, but read and written without building a datetime or a date.
    Every logical type goes, not only the two the contracts use: fastavro converts with the
    writer's annotations, and a writer schema may annotate a field of the contract otherwise
    (Avro's compatibility check ignores logical types), which would hand the stage a datetime
    or a time where it compares ints."""
    if isinstance(schema, dict):
        if "logicalType" in schema:
            kind = schema.get("type")
            if isinstance(kind, str) and kind in _PRIMITIVES and "name" not in schema:
                return kind
            # A fixed, or a field naming a logical type beside its type: keep it, unannotated.
            schema = {key: value for key, value in schema.items() if key != "logicalType"}
        return {key: without_logical_types(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [without_logical_types(item) for item in schema]
    return schema


def epoch_millis(at: datetime) -> int:
    """A datetime as the plain value of a timestamp-millis field (naive means UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)


def epoch_days(on: date) -> int:
    """A date as the plain value of a date field."""
    return on.toordinal() - _EPOCH_ORDINAL


def from_epoch_days(days: int) -> date:
    """The date of a date field's plain value."""
    return date.fromordinal(days + _EPOCH_ORDINAL)


_EPOCH_ORDINAL = EPOCH.toordinal()


@dataclass(frozen=True)
class Contract:
    """One versioned Avro schema: its file, full record name and parsed form; ``plain`` is the
    parsed form without logical types (the stream stage's view: issue 18 measured a fifth of
    its decoding time in building datetimes it only compares and copies)."""

    file_name: str
    full_name: str
    raw: dict[str, Any]
    parsed: Any
    plain: Any

    @property
    def subject(self) -> str:
        """Registry subject (record-name strategy: one subject per record type)."""
        return self.full_name

    @property
    def schema_str(self) -> str:
        return json.dumps(self.raw, separators=(",", ":"), ensure_ascii=False)


@cache
def load_contract(file_name: str) -> Contract:
    """Load and parse ``schemas/avro/<file_name>``."""
    raw = json.loads((AVRO_DIR / file_name).read_text(encoding="utf-8"))
    parsed = fastavro.parse_schema(raw)
    plain = fastavro.parse_schema(without_logical_types(raw))
    return Contract(file_name, f"{raw['namespace']}.{raw['name']}", raw, parsed, plain)


RAW_CONTRACTS: dict[Dataset, str] = {
    Dataset.ATTENDANCE: "raw_attendance_sheet.v1.avsc",
    Dataset.GRADES: "raw_evaluation_results.v1.avsc",
    Dataset.STAFF: "raw_staff_change_set.v1.avsc",
}
CURATED_CONTRACTS: dict[Dataset, str] = {
    Dataset.ATTENDANCE: "curated_attendance_batch.v1.avsc",
    Dataset.GRADES: "curated_grade_batch.v1.avsc",
    Dataset.STAFF: "curated_staff_batch.v1.avsc",
}
# The array field of each batch contract that holds its records.
RAW_RECORDS_FIELD: dict[Dataset, str] = {
    Dataset.ATTENDANCE: "marks",
    Dataset.GRADES: "results",
    Dataset.STAFF: "changes",
}
CURATED_RECORDS_FIELD = RAW_RECORDS_FIELD
HEARTBEAT_CONTRACT = "connector_heartbeat.v1.avsc"
DEAD_LETTER_CONTRACT = "dead_letter.v1.avsc"


def raw_contract(dataset: Dataset) -> Contract:
    return load_contract(RAW_CONTRACTS[dataset])


def curated_contract(dataset: Dataset) -> Contract:
    return load_contract(CURATED_CONTRACTS[dataset])


# Topics. Everything a CSS writes is under its raw prefix ``raw.<css>.`` (datasets, heartbeats,
# its connector's dead letters), so one Kafka ACL prefix per CSS isolates its connector; the
# stream stage subscribes to ``raw\..*`` and checks each message against the CSS of its topic.
RAW_PREFIX = "raw"
RAW_TOPIC_PATTERN = r"raw\..*"
HEARTBEAT_KIND = "heartbeat"
CONNECTOR_DEAD_LETTER_KIND = "deadletter"
# Written by the worker only (checked heartbeats; the stage's and sinks' dead letters).
HEARTBEAT_TOPIC = "connector.heartbeats"
DEAD_LETTER_TOPIC = "deadletter"


def raw_topic(css: str, dataset: Dataset) -> str:
    return f"{RAW_PREFIX}.{css}.{dataset.value}"


def heartbeat_topic(css: str) -> str:
    """Where a CSS's connector sends its heartbeats: a heartbeat counts only for that CSS."""
    return f"{RAW_PREFIX}.{css}.{HEARTBEAT_KIND}"


def connector_dead_letter_topic(css: str) -> str:
    """Where a CSS's connector sends the rows it refused: they count only for that CSS."""
    return f"{RAW_PREFIX}.{css}.{CONNECTOR_DEAD_LETTER_KIND}"


def curated_topic(dataset: Dataset) -> str:
    return f"curated.{dataset.value}"


def split_raw_topic(topic: str) -> tuple[str, str] | None:
    """(css, kind) of any topic under the raw prefix, known or not; None otherwise."""
    parts = topic.split(".")
    if len(parts) != 3 or parts[0] != RAW_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def parse_raw_topic(topic: str) -> tuple[str, Dataset]:
    """Return (css, dataset) of a raw dataset topic; ValueError if it is not one."""
    parts = split_raw_topic(topic)
    if parts is None or parts[1] not in {ds.value for ds in Dataset}:
        raise ValueError("not a raw dataset topic")
    return parts[0], Dataset(parts[1])


def all_topics(organizations: list[str]) -> list[str]:
    """Every topic the pipeline creates: raw per CSS and dataset, heartbeats per CSS, curated,
    dead letters, checked heartbeats."""
    raw = [raw_topic(css, ds) for css in organizations for ds in Dataset]
    beats = [heartbeat_topic(css) for css in organizations]
    return [*raw, *beats, *(curated_topic(ds) for ds in Dataset), DEAD_LETTER_TOPIC, HEARTBEAT_TOPIC]
