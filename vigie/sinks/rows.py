"""Curated batches → warehouse rows (DataFrames), knowing nothing of Kafka."""

from __future__ import annotations

from typing import Any

import pandas as pd

from vigie.schemas.contracts import CURATED_RECORDS_FIELD, Dataset

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
    "connector_version",
)  # fmt: skip


def fact_frame(dataset: Dataset, batches: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per curated record, stamped with its batch's mapping version and time."""
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
    frame["row_version"] = frame["detected_at"].dt.as_unit("ms").astype("int64")
    frame["is_deleted"] = frame.pop("deleted").astype("uint8")
    return frame


def dead_letter_frame(letters: list[dict[str, Any]]) -> pd.DataFrame:
    """Dead letters without their payload: the warehouse never holds original bytes."""
    return pd.DataFrame([{c: d[c] for c in DEAD_LETTER_COLUMNS} for d in letters])


def heartbeat_frame(beats: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{c: b[c] for c in HEARTBEAT_COLUMNS} for b in beats])
