"""One take() batch of raw messages → curated batch messages and dead letters.

Works on plain ``RawMessage`` values (topic, partition, offset, bytes), so it is
tested without a broker; the Faust agent only feeds it and sends what it returns.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from schemas import metrics
from schemas.contracts import (
    CONNECTOR_DEAD_LETTER_KIND,
    CURATED_RECORDS_FIELD,
    DEAD_LETTER_CONTRACT,
    HEARTBEAT_CONTRACT,
    HEARTBEAT_KIND,
    RAW_RECORDS_FIELD,
    Dataset,
    curated_contract,
    epoch_millis,
    load_contract,
    raw_contract,
    split_raw_topic,
)
from schemas.wire import AvroCodec, WireFormatError, encode_body
from streams.harmonize import Unmapped
from streams.process import StageContext, process_batch
from streams.rejection import Reason, Rejection, Stage, reason
from streams.status import check_connector_dead_letter, check_heartbeat


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
    heartbeats: list[bytes] = field(default_factory=list)  # checked, for the heartbeat topic
    curated_records: int = 0
    unmapped: Counter[Unmapped] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)  # by dataset
    records: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # dataset, css, outcome
    refusals: Counter[tuple[str, str]] = field(default_factory=Counter)  # stage, reason code
    last_event_at: dict[tuple[str, str], float] = field(default_factory=dict)  # css, dataset
    # (record_key, motif d'absence) of the curated absences, when asked (re-harmonization):
    # reading them back from the encoded batches cost a second Avro decode per record.
    absences: list[tuple[str, str]] = field(default_factory=list)


def record_metrics(out: StageOutput) -> None:
    """Add one stage output's counts to the process's Prometheus metrics."""
    for dataset, n in out.messages.items():
        metrics.STREAM_MESSAGES.labels(dataset).inc(n)
    for (dataset, css, outcome), n in out.records.items():
        metrics.STREAM_RECORDS.labels(dataset, css, outcome).inc(n)
    for (stage, code), n in out.refusals.items():
        metrics.DEAD_LETTERS.labels(stage, code).inc(n)
    for (css, dataset), at in out.last_event_at.items():
        metrics.CSS_LAST_EVENT.labels(css, dataset).set(at)


def _dead_letter_id(msg: RawMessage, suffix: str) -> str:
    # The suffix is a keyed event id or a reason code: nothing here is computable from a
    # local student number without the key.
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
    be kept. ``event_id`` is the keyed one (the warehouse keeps this record, not the payload);
    ``css`` is None unless it names an organization of the reference."""
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


def _undecodable(exc: WireFormatError) -> Rejection:
    return Rejection(Stage.DECODE, Reason.UNDECODABLE, reason("message", str(exc)), 0)


def curate_messages(
    messages: list[RawMessage],
    ctx: StageContext,
    codec: AvroCodec,
    mapping_version: str,
    max_records: int = CURATED_MAX_RECORDS,
    absences: bool = False,
) -> StageOutput:
    """Run the stream stage over a batch of raw messages; curated records leave in messages
    of at most ``max_records`` each. Anything under the raw prefix is accounted for: a topic
    of an unknown organization or of an unknown kind becomes a dead letter, heartbeats and a
    connector's dead letters count only for the CSS of their topic. With ``absences``, the
    output also lists the curated absences' motifs (``StageOutput.absences``)."""
    now = datetime.now(UTC)
    now_ms = epoch_millis(now)
    curated: dict[Dataset, list[dict[str, Any]]] = defaultdict(list)
    letters: list[dict[str, Any]] = []
    out = StageOutput()
    p = ctx.pseudonymizer
    datasets = {ds.value: ds for ds in Dataset}
    for msg in messages:
        parts = split_raw_topic(msg.topic)
        if parts is None:
            rejection = Rejection(Stage.DECODE, Reason.UNKNOWN_TOPIC, reason("topic", "not a raw topic"), 0)
            letters.append(dead_letter(msg, rejection, now, None, None))
            continue
        css, kind = parts
        known = css if css in ctx.organizations else None
        if kind in (HEARTBEAT_KIND, CONNECTOR_DEAD_LETTER_KIND):
            contract = load_contract(HEARTBEAT_CONTRACT if kind == HEARTBEAT_KIND else DEAD_LETTER_CONTRACT)
            try:
                record = codec.decode(msg.value, contract)
            except WireFormatError as exc:
                letters.append(dead_letter(msg, _undecodable(exc), now, known, None))
                continue
            if kind == HEARTBEAT_KIND:
                checked = check_heartbeat(css, record, ctx, now)
                if isinstance(checked, Rejection):
                    letters.append(dead_letter(msg, checked, now, known, None))
                else:
                    out.heartbeats.append(codec.encode(contract, checked))
            else:
                verdict = check_connector_dead_letter(
                    css, record, ctx, now, msg.topic, msg.partition, msg.offset
                )
                if isinstance(verdict, Rejection):
                    letters.append(dead_letter(msg, verdict, now, known, None))
                else:
                    letters.append(verdict)
            continue
        dataset = datasets.get(kind)
        if dataset is None:
            rejection = Rejection(
                Stage.DECODE, Reason.UNKNOWN_DATASET, reason("topic", "names no dataset of the contracts"), 0
            )
            letters.append(dead_letter(msg, rejection, now, known, None))
            continue
        out.messages[dataset.value] += 1
        try:
            batch = codec.decode(msg.value, raw_contract(dataset), plain=True)
        except WireFormatError as exc:
            letters.append(dead_letter(msg, _undecodable(exc), now, known, dataset))
            continue
        outcome = process_batch(css, dataset, batch, ctx)
        curated[dataset].extend(outcome.records)
        label = known or "inconnu"  # a Prometheus label: never a string the sender chose
        out.records[(dataset.value, label, "curated")] += len(outcome.records)
        if outcome.records and known:  # a gauge label: only an organization of the reference
            out.last_event_at[(known, dataset.value)] = now.timestamp()
        out.unmapped.update(u for u in outcome.unmapped if known)
        for rejection in outcome.rejections:
            payload = None
            if rejection.record is not None:
                single = {**batch, RAW_RECORDS_FIELD[dataset]: [rejection.record]}
                try:
                    body = encode_body(raw_contract(dataset), single, plain=True)
                except (ValueError, OverflowError):
                    # fastavro reads an Avro int of any size, a union (null or int) writes none
                    # past 32 bits: such a record keeps the message as it came (the default).
                    pass
                else:
                    payload = codec.frame(raw_contract(dataset), body)
            if rejection.event_id:
                rejection = replace(rejection, event_id=p.event_id(css, rejection.event_id))
            letters.append(dead_letter(msg, rejection, now, known, dataset, payload))
            out.records[(dataset.value, label, rejection.reason_code)] += rejection.record_count
    if absences:
        out.absences = [
            (r["record_key"], r["absence_reason"])
            for r in curated.get(Dataset.ATTENDANCE, ())
            if r["absence_reason"] is not None
        ]
    for dataset, records in curated.items():
        for start in range(0, len(records), max_records):
            chunk = records[start : start + max_records]
            records_field = CURATED_RECORDS_FIELD[dataset]
            batch = {"mapping_version": mapping_version, "processed_at": now_ms, records_field: chunk}
            out.curated.append((dataset, codec.encode(curated_contract(dataset), batch, plain=True)))
        out.curated_records += len(records)
    dl_contract = load_contract(DEAD_LETTER_CONTRACT)
    for letter in letters:
        out.refusals[(letter["stage"], letter["reason_code"])] += 1
        out.dead_letters.append(codec.encode(dl_contract, letter))
    return out
