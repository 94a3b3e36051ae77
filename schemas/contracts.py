"""The Avro contracts shipped in ``schemas/avro/`` and the topics that carry them."""

from __future__ import annotations

import json
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Contract:
    """One versioned Avro schema: its file, full record name and parsed form."""

    file_name: str
    full_name: str
    raw: dict[str, Any]
    parsed: Any

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
    return Contract(file_name, f"{raw['namespace']}.{raw['name']}", raw, parsed)


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


# Topics. Raw topics are per CSS and dataset so that a Kafka ACL on the prefix
# ``raw.<css>.`` isolates each CSS's connector.
RAW_PREFIX = "raw"
HEARTBEAT_TOPIC = "connector.heartbeats"
DEAD_LETTER_TOPIC = "deadletter"


def raw_topic(css: str, dataset: Dataset) -> str:
    return f"{RAW_PREFIX}.{css}.{dataset.value}"


def curated_topic(dataset: Dataset) -> str:
    return f"curated.{dataset.value}"


def parse_raw_topic(topic: str) -> tuple[str, Dataset]:
    """Return (css, dataset) of a raw topic name; ValueError if it is not one."""
    parts = topic.split(".")
    if len(parts) != 3 or parts[0] != RAW_PREFIX:
        raise ValueError(f"not a raw topic: {topic!r}")
    return parts[1], Dataset(parts[2])


def all_topics(organizations: list[str]) -> list[str]:
    """Every topic the pipeline uses: raw per CSS and dataset, curated, dead letters, heartbeats."""
    raw = [raw_topic(css, ds) for css in organizations for ds in Dataset]
    return [*raw, *(curated_topic(ds) for ds in Dataset), DEAD_LETTER_TOPIC, HEARTBEAT_TOPIC]
