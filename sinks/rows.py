"""Curated batches → warehouse rows (DataFrames), knowing nothing of Kafka."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import datetime
from typing import Any

import pandas as pd

from schemas.contracts import (
    CONNECTOR_DEAD_LETTER_KIND,
    CURATED_RECORDS_FIELD,
    HEARTBEAT_KIND,
    RAW_PREFIX,
    Dataset,
    split_raw_topic,
)
from schemas.organizations import Organization
from streams.consent import ConsentRegistry

# Where no consent is on file when a row is written (withdrawn since the stream stage let
# it through), the row is kept no longer than this.
FALLBACK_RETENTION_DAYS = 365

FACT_TABLES: dict[Dataset, str] = {
    Dataset.ATTENDANCE: "attendance_marks",
    Dataset.GRADES: "grade_results",
    Dataset.STAFF: "staff_changes",
}
DATE_COLUMNS: dict[Dataset, tuple[str, ...]] = {
    Dataset.ATTENDANCE: ("sheet_date",),
    Dataset.GRADES: ("evaluation_date",),
    Dataset.STAFF: ("effective_date",),
}
DEAD_LETTER_COLUMNS = (
    "dead_letter_id", "failed_at", "stage", "reason_code", "reason", "source_topic",
    "source_partition", "source_offset", "css", "dataset", "event_id", "record_count",
)  # fmt: skip
HEARTBEAT_COLUMNS = (
    "css", "connector_id", "sent_at", "outbox_depth", "last_send_at", "source_lag_s",
    "connector_version", "rejected_rows", "rejected_files", "last_rejection", "last_rejection_at",
)  # fmt: skip
# Fields a heartbeat from an older connector may lack (added to the contract with defaults).
_HEARTBEAT_DEFAULTS: dict[str, Any] = {
    "rejected_rows": 0, "rejected_files": 0, "last_rejection": None, "last_rejection_at": None,
}  # fmt: skip


def retention_by_css(consent: ConsentRegistry, dataset: Dataset) -> Callable[[str], int]:
    """The retention (days) each CSS's consent to ``dataset`` sets, for the TTL."""

    def retention(css: str) -> int:
        found = consent.consents.get((css, dataset))
        return found.retention_days if found is not None else FALLBACK_RETENTION_DAYS

    return retention


def fact_frame(
    dataset: Dataset, batches: list[dict[str, Any]], retention_days: Callable[[str], int] | None = None
) -> pd.DataFrame:
    """One row per curated record, stamped with its batch's mapping version and time, and
    with the retention its CSS's consent sets (``retention_days``; fallback otherwise)."""
    rows: list[dict[str, Any]] = []
    field = CURATED_RECORDS_FIELD[dataset]
    for batch in batches:
        stamp = {"mapping_version": batch["mapping_version"], "processed_at": batch["processed_at"]}
        rows.extend({**record, **stamp} for record in batch[field])
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for column in DATE_COLUMNS[dataset]:
        frame[column] = pd.to_datetime(frame[column])
    # The connector's detection time orders the versions of a source row: a late
    # redelivery of an old version never replaces a newer one.
    # The stage refuses times outside [2000, now + 1 day]; never let one wrap UInt64 anyway.
    frame["row_version"] = frame["detected_at"].dt.as_unit("ms").astype("int64").clip(lower=0)
    frame["is_deleted"] = frame.pop("deleted").astype("uint8")
    retention = retention_days or (lambda _css: FALLBACK_RETENTION_DAYS)
    days = {css: retention(css) for css in frame["css"].unique()}
    frame["retention_days"] = frame["css"].map(days).astype("uint16")
    return frame


def organizations_frame(organizations: Iterable[Organization], loaded_at: datetime) -> pd.DataFrame:
    """The reference list of organizations as rows."""
    return pd.DataFrame([{**asdict(o), "loaded_at": loaded_at} for o in organizations])


def consent_frame(consent: ConsentRegistry, loaded_at: datetime) -> pd.DataFrame:
    """The consent registry as one snapshot of rows (no personal data: CSS-level terms)."""
    return pd.DataFrame(
        [
            {"loaded_at": loaded_at, "css": c.css, "dataset": c.dataset.value, "purpose": c.purpose,
             "valid_from": pd.Timestamp(c.valid_from),
             "valid_to": pd.Timestamp(c.valid_to) if c.valid_to else None,
             "retention_days": c.retention_days}
            for c in consent.consents.values()
        ]
    )  # fmt: skip


UNKNOWN_RAW_TOPIC = f"{RAW_PREFIX}.(inconnu)"
_RAW_KINDS = frozenset({*(ds.value for ds in Dataset), HEARTBEAT_KIND, CONNECTOR_DEAD_LETTER_KIND})


def stored_topic(topic: str, css: str | None) -> str:
    """The source topic as the warehouse keeps it: a raw topic's name is chosen by whoever
    created it ("raw.jean-tremblay.x"), so it is kept only when it is a known organization's
    (the stage sets ``css`` only for organizations of the reference) of a known kind."""
    parts = split_raw_topic(topic)
    if parts is None:
        return UNKNOWN_RAW_TOPIC if topic.startswith(f"{RAW_PREFIX}.") else topic
    if css is None or parts[0] != css or parts[1] not in _RAW_KINDS:
        return UNKNOWN_RAW_TOPIC
    return topic


def dead_letter_frame(letters: list[dict[str, Any]], retention_days: int | None = None) -> pd.DataFrame:
    """Dead letters without their payload: the warehouse never holds original bytes, nor a
    topic name nobody vetted. ``retention_days`` sets their TTL (migration 0005's default,
    90 days, when None)."""
    rows = [{c: d[c] for c in DEAD_LETTER_COLUMNS} for d in letters]
    for row in rows:
        row["source_topic"] = stored_topic(row["source_topic"], row["css"])
        if retention_days is not None:
            row["retention_days"] = retention_days
    return pd.DataFrame(rows)


def heartbeat_frame(beats: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{c: b.get(c, _HEARTBEAT_DEFAULTS.get(c)) for c in HEARTBEAT_COLUMNS} for b in beats])
