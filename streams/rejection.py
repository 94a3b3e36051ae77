"""What a refusal is: the stage that refused, a reason code, and a reason without identifiers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Stage(StrEnum):
    """The stream stages, in the order they run."""

    DECODE = "decode"
    VALIDATE = "validate"
    CSS_CHECK = "css_check"
    CONSENT = "consent"
    DEIDENTIFY = "deidentify"
    HARMONIZE = "harmonize"
    SINK = "sink"


class Reason(StrEnum):
    """Machine-readable reason codes (dashboards and alerts group by them)."""

    UNKNOWN_TOPIC = "unknown_topic"
    UNDECODABLE = "undecodable"
    MISSING_VALUE = "missing_value"
    IMPLAUSIBLE_DATE = "implausible_date"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN_VALUE = "unknown_value"
    UNKNOWN_CSS = "unknown_css"
    UNKNOWN_DATASET = "unknown_dataset"
    UNKNOWN_SCHOOL = "unknown_school"
    CSS_MISMATCH = "css_mismatch"
    NO_CONSENT = "no_consent"
    UNKNOWN_STATUS = "unknown_status"
    INVALID_GRADE = "invalid_grade"
    WAREHOUSE_REJECTED = "warehouse_rejected"
    UNSIGNED = "unsigned"


def reason(field: str, rule: str) -> str:
    """A refusal's human-readable reason: the field and the rule it broke, never the value
    (reasons reach the warehouse, which CSS and ministry roles read; the value stays in the
    dead letter's payload, on the dead-letter topic inside the identified zone)."""
    return f"{field}: {rule}"


@dataclass(frozen=True)
class Rejection:
    """One refusal. ``record`` is the original raw record when the refusal is about one
    record (it goes to the dead-letter topic, never further); ``keep_payload`` is False
    where nothing of the data may be kept (no consent)."""

    stage: Stage
    reason_code: Reason
    reason: str
    record_count: int = 1
    event_id: str | None = None
    record: dict[str, Any] | None = None
    keep_payload: bool = True


class RecordRefused(ValueError):
    """Raised by a per-record stage; becomes a Rejection of that record."""

    def __init__(self, stage: Stage, reason_code: Reason, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason_code = reason_code
        self.reason = reason
