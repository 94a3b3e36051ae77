"""One take() batch of raw messages → curated batch messages and dead letters.

Works on plain ``RawMessage`` values (topic, partition, offset, bytes), so it is
tested without a broker; the Faust agent only feeds it and sends what it returns.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas import metrics
from schemas.contracts import (
    CURATED_RECORDS_FIELD,
    DEAD_LETTER_CONTRACT,
    RAW_RECORDS_FIELD,
    Dataset,
    curated_contract,
    load_contract,
    parse_raw_topic,
    raw_contract,
)
from schemas.wire import AvroCodec, WireFormatError
from streams.harmonize import Unmapped
from streams.process import StageContext, process_batch
from streams.rejection import Reason, Rejection, Stage


@dataclass(frozen=True)
class RawMessage:
    """A message as it came off a raw topic."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


@dataclass
class StageOutput:
    """Encoded messages to send (curated batches per dataset, and dead letters),
    the unmapped codes and texts seen, with counts, for the data stewards, and what the
    metrics need. Plain data (picklable): the stage may run in another process."""

    curated: list[tuple[Dataset, bytes]] = field(default_factory=list)
    dead_letters: list[bytes] = field(default_factory=list)
    curated_records: int = 0
    unmapped: Counter[Unmapped] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)  # by dataset
    records: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # dataset, css, outcome
    refusals: Counter[tuple[str, str]] = field(default_factory=Counter)  # stage, reason code
    last_event_at: dict[tuple[str, str], float] = field(default_factory=dict)  # css, dataset


def record_metrics(out: StageOutput) -> None:
    """Add one stage output's counts to the process's Prometheus metrics."""
    for dataset, n in out.messages.items():
        metrics.STREAM_MESSAGES.labels(dataset).inc(n)
    for (dataset, css, outcome), n in out.records.items():
        metrics.STREAM_RECORDS.labels(dataset, css, outcome).inc(n)
    for (stage, reason), n in out.refusals.items():
        metrics.DEAD_LETTERS.labels(stage, reason).inc(n)
    for (css, dataset), at in out.last_event_at.items():
        metrics.CSS_LAST_EVENT.labels(css, dataset).set(at)


def _dead_letter_id(msg: RawMessage, suffix: str) -> str:
    key = f"{msg.topic}\x1f{msg.partition}\x1f{msg.offset}\x1f{suffix}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def dead_letter(
    msg: RawMessage,
    rejection: Rejection,
    now: datetime,
    css: str | None,
    dataset: Dataset | None,
    payload: bytes | None = None,
) -> dict[str, Any]:
    """The dead-letter record for one refusal. The payload is the original message, or for a
    refusal about one record that record alone (same raw contract); none where nothing may
    be kept."""
    return {
        "dead_letter_id": _dead_letter_id(msg, rejection.event_id or rejection.reason_code),
        "failed_at": now,
        "stage": rejection.stage,
        "reason_code": rejection.reason_code,
        "reason": rejection.reason,
        "source_topic": msg.topic,
        "source_partition": msg.partition,
        "source_offset": msg.offset,
        "css": css,
        "dataset": dataset.value if dataset else None,
        "event_id": rejection.event_id,
        "record_count": rejection.record_count,
        "payload": (payload or msg.value) if rejection.keep_payload else None,
    }


# Records per curated message: a batch of 200 attendance sheets is ~770 KB encoded, close to
# Kafka's default 1 MB message limit, so outputs are cut well below it whatever the input.
CURATED_MAX_RECORDS = 2_000


def curate_messages(
    messages: list[RawMessage],
    ctx: StageContext,
    codec: AvroCodec,
    mapping_version: str,
    max_records: int = CURATED_MAX_RECORDS,
) -> StageOutput:
    """Run the stream stage over a batch of raw messages; curated records leave in messages
    of at most ``max_records`` each."""
    now = datetime.now(UTC)
    curated: dict[Dataset, list[dict[str, Any]]] = defaultdict(list)
    letters: list[dict[str, Any]] = []
    out = StageOutput()
    for msg in messages:
        try:
            css, dataset = parse_raw_topic(msg.topic)
        except ValueError:
            rejection = Rejection(Stage.DECODE, Reason.UNKNOWN_TOPIC, "not a raw topic", 0)
            letters.append(dead_letter(msg, rejection, now, None, None))
            continue
        out.messages[dataset.value] += 1
        try:
            batch = codec.decode(msg.value, raw_contract(dataset))
        except WireFormatError as exc:
            rejection = Rejection(Stage.DECODE, Reason.UNDECODABLE, str(exc), 0)
            letters.append(dead_letter(msg, rejection, now, css, dataset))
            continue
        outcome = process_batch(css, dataset, batch, ctx)
        curated[dataset].extend(outcome.records)
        out.records[(dataset.value, css, "curated")] += len(outcome.records)
        if outcome.records:
            out.last_event_at[(css, dataset.value)] = now.timestamp()
        out.unmapped.update(outcome.unmapped)
        for rejection in outcome.rejections:
            payload = None
            if rejection.record is not None:
                single = {**batch, RAW_RECORDS_FIELD[dataset]: [rejection.record]}
                payload = codec.encode(raw_contract(dataset), single)
            letters.append(dead_letter(msg, rejection, now, css, dataset, payload))
            out.records[(dataset.value, css, rejection.reason_code)] += rejection.record_count
    for dataset, records in curated.items():
        for start in range(0, len(records), max_records):
            chunk = records[start : start + max_records]
            records_field = CURATED_RECORDS_FIELD[dataset]
            batch = {"mapping_version": mapping_version, "processed_at": now, records_field: chunk}
            out.curated.append((dataset, codec.encode(curated_contract(dataset), batch)))
        out.curated_records += len(records)
    dl_contract = load_contract(DEAD_LETTER_CONTRACT)
    for letter in letters:
        out.refusals[(letter["stage"], letter["reason_code"])] += 1
        out.dead_letters.append(codec.encode(dl_contract, letter))
    return out
