"""What a connector says about itself — heartbeats and the rows it refused — checked against
the CSS of the topic it came on, before it counts anywhere.

A connector writes only under its CSS's raw prefix (``raw.<css>.heartbeat``,
``raw.<css>.deadletter``; one ACL prefix per CSS on a real cluster), so a heartbeat or a
dead letter counts only for that CSS: one claiming another CSS is refused (dead-lettered,
not stored), and no string the connector chose becomes a Prometheus label or a warehouse
value unchecked.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, Protocol

from schemas.contracts import Dataset
from schemas.organizations import Organization
from streams.pseudonymize import Pseudonymizer
from streams.rejection import Reason, Rejection, Stage, reason
from streams.validate import EARLIEST_EVENT_TIME, FUTURE_TOLERANCE

# PEP 440-shaped versions ("0.1.0", "1.2.3rc1", "0.1.0.dev3+g1a2b3c"): anything else is free text.
_VERSION = re.compile(r"\d+(\.\d+){0,3}((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[0-9a-z.]{1,40})?")
UNKNOWN_VERSION = "inconnue"
# What a connector may say it refused; anything else is recorded as "other".
CONNECTOR_REASONS = frozenset(
    {"malformed_row", "missing_column", "unreadable_file", "file_too_large", "rejected_row", "other"}
)
MAX_RECORD_COUNT = 10_000_000


class StatusContext(Protocol):
    """What the checks need from the stage context."""

    @property
    def organizations(self) -> dict[str, Organization]: ...

    @property
    def pseudonymizer(self) -> Pseudonymizer: ...


def _refuse(code: Reason, field: str, rule: str, stage: Stage = Stage.CSS_CHECK) -> Rejection:
    return Rejection(stage, code, reason(field, rule), 0)


def _time_ok(value: datetime | None, now: datetime) -> bool:
    return value is None or EARLIEST_EVENT_TIME <= value <= now + FUTURE_TOLERANCE


def _same_css(topic_css: str, claimed: Any, ctx: StatusContext, what: str) -> Rejection | None:
    if topic_css not in ctx.organizations:
        return _refuse(Reason.UNKNOWN_CSS, "topic", "names no organization of the reference")
    if claimed != topic_css:
        return _refuse(Reason.CSS_MISMATCH, "css", f"differs from the organization of its {what} topic")
    return None


def check_heartbeat(
    topic_css: str, beat: dict[str, Any], ctx: StatusContext, now: datetime
) -> dict[str, Any] | Rejection:
    """The heartbeat as it may be stored and shown, or why it is refused."""
    refused = _same_css(topic_css, beat.get("css"), ctx, "heartbeat")
    if refused is not None:
        return refused
    for name in ("sent_at", "last_send_at", "last_rejection_at"):
        if not _time_ok(beat.get(name), now):
            return _refuse(
                Reason.IMPLAUSIBLE_DATE, name, "before the year two thousand or more than a day ahead",
                Stage.VALIDATE,
            )  # fmt: skip
    if beat["outbox_depth"] < 0:
        return _refuse(Reason.OUT_OF_RANGE, "outbox_depth", "negative", Stage.VALIDATE)
    lag = beat.get("source_lag_s")
    if lag is not None and (not math.isfinite(lag) or lag < 0):
        return _refuse(Reason.OUT_OF_RANGE, "source_lag_s", "negative or not a number", Stage.VALIDATE)
    for name in ("rejected_rows", "rejected_files"):
        if beat.get(name, 0) < 0:
            return _refuse(Reason.OUT_OF_RANGE, name, "negative", Stage.VALIDATE)
    version = beat["connector_version"]
    return {
        **beat,
        # The connector's description of its last refusal is its own free text (line, column,
        # rule — or whatever a careless or hostile connector puts there): it stays at the CSS.
        # The counts and the time say enough centrally: "fichier refusé (n lignes)".
        "last_rejection": None,
        # An instance name is free text ("portable de Mme Tremblay"): keyed, still distinct.
        "connector_id": ctx.pseudonymizer.keyed(topic_css, "connector", beat["connector_id"]),
        "connector_version": version if _VERSION.fullmatch(version) else UNKNOWN_VERSION,
    }


def check_connector_dead_letter(
    topic_css: str, letter: dict[str, Any], ctx: StatusContext, now: datetime,
    topic: str, partition: int, offset: int,
) -> dict[str, Any] | Rejection:  # fmt: skip
    """A connector's dead letter as the network records it, or why it is refused. Its reason
    is ours (the connector's text may quote a value); its ids are keyed."""
    refused = _same_css(topic_css, letter.get("css"), ctx, "dead-letter")
    if refused is not None:
        return refused
    if not _time_ok(letter["failed_at"], now):
        return _refuse(
            Reason.IMPLAUSIBLE_DATE, "failed_at", "before the year two thousand or more than a day ahead",
            Stage.VALIDATE,
        )  # fmt: skip
    if not 0 <= letter["record_count"] <= MAX_RECORD_COUNT:
        return _refuse(Reason.OUT_OF_RANGE, "record_count", "negative or implausibly large", Stage.VALIDATE)
    dataset = letter.get("dataset")
    if dataset is not None and dataset not in {ds.value for ds in Dataset}:
        return _refuse(Reason.UNKNOWN_VALUE, "dataset", "names no dataset of the contracts", Stage.VALIDATE)
    code = letter["reason_code"] if letter["reason_code"] in CONNECTOR_REASONS else "other"
    p = ctx.pseudonymizer
    return {
        **letter,
        "dead_letter_id": p.keyed(topic_css, "deadletter", f"{letter['dead_letter_id']}\x1f{offset}")[:32],
        "failed_at": letter["failed_at"].astimezone(UTC),
        "stage": "connector",
        "reason_code": code,
        "reason": reason("connector", "refused a source row or file"),
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "event_id": p.event_id(topic_css, letter["event_id"]) if letter.get("event_id") else None,
    }
