"""The stream stage's own consumer on the real broker: signed outputs, offsets committed only
for what the broker acknowledged, nothing read twice after a clean stop, a raw topic created
later found by the pattern subscription."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.simulator import SimulatedCss
from schemas.contracts import (
    CURATED_RECORDS_FIELD,
    DEAD_LETTER_CONTRACT,
    DEAD_LETTER_TOPIC,
    HEARTBEAT_TOPIC,
    Dataset,
    curated_contract,
    curated_topic,
    load_contract,
    raw_contract,
    raw_topic,
)
from streams.curate import StageOutput
from streams.signing import Signer
from streams.stage_loop import StageLoop, StageLoopConfig
from tests.conftest import TEST_KEY
from tests.embedded import reader_from_start
from vigie.runtime.broker import TansuBroker, ensure_topics
from vigie.runtime.stage_pool import Stage, StagePool
from vigie.settings import Settings

pytestmark = pytest.mark.integration
OUTPUT_TOPICS = [*(curated_topic(ds) for ds in Dataset), DEAD_LETTER_TOPIC, HEARTBEAT_TOPIC]


def _wait(predicate, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def _read_all(bootstrap: str, topic: str, expected: int) -> list:
    consumer = reader_from_start(bootstrap, topic)
    got: list = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < expected and time.monotonic() < deadline:
            got += [m for m in consumer.consume(100, timeout=0.5) if m.error() is None]
        # Anything beyond what is expected would be a duplicate: read a little longer.
        got += [m for m in consumer.consume(100, timeout=1.0) if m.error() is None]
    finally:
        consumer.close()
    return got


class _Running:
    def __init__(self, loop: StageLoop) -> None:
        self.loop = loop
        self.thread = threading.Thread(target=loop.run, daemon=True)

    def __enter__(self) -> StageLoop:
        self.thread.start()
        return self.loop

    def __exit__(self, *_exc: object) -> None:
        self.loop.stop()
        self.thread.join(60)
        assert not self.thread.is_alive()


def test_the_stage_loop_sends_signed_batches_and_commits_what_the_broker_acknowledged(
    tmp_path: Path, registry, organizations
) -> None:
    broker = TansuBroker(0, tmp_path / "tansu.log").start()
    try:
        laval, phares = raw_topic("laval", Dataset.ATTENDANCE), raw_topic("phares", Dataset.ATTENDANCE)
        ensure_topics(broker.bootstrap, [laval, phares, *OUTPUT_TOPICS], 1)
        settings = Settings(registry_url=registry.url, pseudonym_key=TEST_KEY.decode())
        stage = Stage.from_settings(settings)
        pool = StagePool(settings, 0, stage)
        signer = Signer(stage.ctx.pseudonymizer.key)
        contract = raw_contract(Dataset.ATTENDANCE)
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        last: dict[str, int] = {}

        def delivered(err, msg) -> None:
            assert err is None
            last[msg.topic()] = max(last.get(msg.topic(), -1), msg.offset())

        for css, topic in (("laval", laval), ("phares", phares)):
            sim = SimulatedCss(organizations[css], seed=3)
            for _ in range(12):
                sheet = sim.attendance_sheet(date(2026, 11, 20), datetime.now(UTC))
                producer.produce(topic, codec_encode(stage, contract, sheet), on_delivery=delivered)
        producer.produce(laval, b"\x00\x00\x00\x00\x01 not avro", on_delivery=delivered)  # a careless CSS
        assert producer.flush(30) == 0

        outputs: list[StageOutput] = []
        config = StageLoopConfig({"bootstrap.servers": broker.bootstrap}, group="stage-test", batch_max=5,
                                 max_in_flight=2, discovery_s=1.0)  # fmt: skip
        with _Running(StageLoop(config, pool.submit, outputs.append, signer)):
            # Committed offsets reach the end of each raw partition: every batch was acknowledged.
            committed = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "stage-test"})

            def all_committed() -> bool:
                parts = committed.committed([TopicPartition(laval, 0), TopicPartition(phares, 0)], timeout=5)
                return all(p.offset == last[p.topic] + 1 for p in parts)

            _wait(all_committed)
            committed.close()

            # A raw topic created while running (a typo'd CSS code) is found and dead-lettered.
            typo = raw_topic("lavall", Dataset.ATTENDANCE)
            ensure_topics(broker.bootstrap, [typo], 1)
            sheet = SimulatedCss(organizations["laval"], seed=3).attendance_sheet(
                date(2026, 11, 20), datetime.now(UTC)
            )
            producer.produce(typo, codec_encode(stage, contract, {**sheet, "css": "lavall"}))
            producer.flush(30)
            _wait(lambda: any(o.refusals.get(("css_check", "unknown_css")) for o in outputs))

        curated_records = sum(o.curated_records for o in outputs)
        assert curated_records > 0
        curated = _read_all(broker.bootstrap, curated_topic(Dataset.ATTENDANCE), 1)
        field = CURATED_RECORDS_FIELD[Dataset.ATTENDANCE]
        stored = 0
        for m in curated:
            assert signer.verify(m.topic(), m.value(), m.headers())  # signed, so the sinks keep it
            stored += len(stage.codec.decode(m.value(), curated_contract(Dataset.ATTENDANCE))[field])
        assert stored == curated_records  # each curated record sent exactly once
        letters = [stage.codec.decode(m.value(), load_contract(DEAD_LETTER_CONTRACT))
                   for m in _read_all(broker.bootstrap, DEAD_LETTER_TOPIC, 2)]  # fmt: skip
        assert sorted(d["reason_code"] for d in letters) == ["undecodable", "unknown_css"]

        # A clean stop committed everything: the same group starts where it stopped.
        again: list[StageOutput] = []
        with _Running(StageLoop(config, pool.submit, again.append, signer)) as loop:
            _wait(loop.assigned.is_set)
            time.sleep(3)
        assert again == []
    finally:
        broker.stop()


def codec_encode(stage: Stage, contract, record: dict) -> bytes:
    return stage.codec.encode(contract, record)
