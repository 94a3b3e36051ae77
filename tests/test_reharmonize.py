"""Re-harmonization a posteriori on the real embedded stack (Tansu, registry, Faust, chDB):
a steward maps a motif the classifier did not know; `vigie reharmonize` replays the raw
topic and the warehouse rows change in place — same ids, nothing doubled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from connectors.publisher import ConnectorPublisher, flush, make_producer
from connectors.simulator import SimulatedCss
from schemas.contracts import Dataset
from schemas.organizations import Organization
from schemas.wire import AvroCodec
from streams.absence import AbsenceClassifier
from tests.corpus import copy_mappings
from tests.embedded import HTTP, TEST_ENV, dump_warehouse, vigie_up, wait_for
from vigie.settings import Settings

pytestmark = pytest.mark.integration

# A motif no corpus holds: the classifier leaves it `inconnu` until a steward maps it.
LOCAL_TEXT = "kermesse de Quiquinou"


def _vigie(*args: str, env: dict[str, str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigie.cli", *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, **TEST_ENV, **env, "VIGIE_DATA_DIR": str(data_dir)},
    )  # fmt: skip


def _sink_rows(web_url: str) -> float:
    text = HTTP.get(f"{web_url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith('vigie_sink_rows_total{table="attendance_marks"}'):
            return float(line.split()[-1])
    return 0.0


def test_a_stewards_mapping_reaches_history_without_doubling(
    tmp_path: Path, organizations: dict[str, Organization]
) -> None:
    mappings = copy_mappings(tmp_path / "mappings")
    env = {"VIGIE_MAPPINGS_DIR": str(mappings)}
    # Kept in the session's model cache, where `vigie up` below finds it instead of training it again.
    before = AbsenceClassifier.from_dir(mappings, model_cache=Settings().model_cache).classify(
        "laval", None, LOCAL_TEXT
    )
    # Not yet the steward's reason: the tests' small corpus (tests/corpus.py) may guess any other
    assert before.by != "steward" and before.category != "religieux_culturel"

    data_dir = tmp_path / "vigie"
    sim = SimulatedCss(organizations["laval"], seed=5)
    today, now = date.today(), datetime.now(UTC)
    sheets = [sim.attendance_sheet(today, now) for _ in range(12)]
    for sheet in sheets:
        for mark in sheet["marks"]:
            if mark["absence_code"] or mark["absence_text"]:
                mark["absence_code"], mark["absence_text"] = None, LOCAL_TEXT
    marks = sum(len(s["marks"]) for s in sheets)
    motifs = sum(m["absence_text"] == LOCAL_TEXT for s in sheets for m in s["marks"])
    assert motifs >= 5

    with vigie_up(data_dir, env=env) as (_proc, info):
        producer = make_producer(info.broker)
        publisher = ConnectorPublisher(
            "laval", sim.source_system, AvroCodec.from_url(info.registry_url), producer
        )
        for sheet in sheets:
            publisher.publish(Dataset.ATTENDANCE, sheet)
        assert flush(producer, 30) == 0
        wait_for(lambda: _sink_rows(info.web_url) >= marks, 120, "the first pass in the warehouse")

        mapped = _vigie("mappings", "set", "--css", "laval", "--text", LOCAL_TEXT,
                        "--category", "religieux_culturel", env=env, data_dir=data_dir)  # fmt: skip
        assert mapped.returncode == 0, mapped.stderr

        # Another CSS is not replayed: --css scopes the replay.
        replay = _vigie("reharmonize", "--since", today.isoformat(), "--css", "laval", "--json",
                        env=env, data_dir=data_dir)  # fmt: skip
        assert replay.returncode == 0, replay.stderr
        summary = json.loads(replay.stdout)
        assert summary["records"] == marks
        assert summary["changed"] == [{"from": before.category, "to": "religieux_culturel", "count": motifs}]
        assert summary["new"] == 0
        wait_for(lambda: _sink_rows(info.web_url) >= 2 * marks, 120, "the replayed rows in the warehouse")

        # The human summary says the same, in the stewards' words; the stage run in the command's
        # own process (--processes 1) gives the same as the default's one process per core.
        again = _vigie("reharmonize", "--since", today.isoformat(), "--css", "laval", "--processes", "1",
                       env=env, data_dir=data_dir)  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert "No motif d'absence changed" in again.stdout
        wait_for(lambda: _sink_rows(info.web_url) >= 3 * marks, 120, "the second replay in the warehouse")

    rows = dump_warehouse(data_dir)["attendance_marks"]
    assert len(rows) == marks  # replaced, not doubled
    sent_ids = {m["event_id"] for s in sheets for m in s["marks"]}
    assert len({r["event_id"] for r in rows}) == marks
    assert len(sent_ids) == marks
    reasons = [r["absence_reason"] for r in rows]
    assert reasons.count("religieux_culturel") == motifs
    assert len({r["mapping_version"] for r in rows}) == 1  # every row carries the new version
    assert rows[0]["mapping_version"] == summary["mapping_version"]


def test_reharmonize_without_a_broker_says_what_it_needs(tmp_path: Path) -> None:
    env = {"VIGIE_BROKER_URL": "", "VIGIE_REGISTRY_URL": ""}
    done = _vigie("reharmonize", "--since", "2026-01-05", env=env, data_dir=tmp_path)
    assert done.returncode == 1
    assert "no broker" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--since", "hier"], "not a date"), (["--since", "2999-01-01"], "future"),
     (["--since", "2026-01-05", "--css", "atlantide"], "unknown organization"),
     (["--since", "2026-01-05", "--dataset", "salaries"], "unknown dataset")],
)  # fmt: skip
def test_reharmonize_refuses_bad_arguments_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = _vigie("reharmonize", *args, env={}, data_dir=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_slow_stage_batch_is_not_mistaken_for_the_end_of_the_topics(tmp_path: Path) -> None:
    """The end of a replay is found by silence (Tansu's watermarks are wrong): the time spent
    processing a batch must not count as silence (found measuring a 300k-mark replay)."""
    import time

    from confluent_kafka import Producer

    from vigie.runtime.broker import TansuBroker, ensure_topics
    from vigie.runtime.reharmonize import CHUNK_MESSAGES, _assign_since, _consumer, _drain

    broker = TansuBroker(0, tmp_path / "tansu.log").start()
    try:
        topic = "raw.laval.attendance"
        ensure_topics(broker.bootstrap, [topic], 2)
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        total = 3 * CHUNK_MESSAGES
        for i in range(total):
            producer.produce(topic, value=f"sheet {i}".encode())
        assert producer.flush(30) == 0
        consumer = _consumer({"bootstrap.servers": broker.bootstrap})
        seen: list[int] = []

        def slow(messages: list) -> None:
            seen.extend(m.offset for m in messages)
            if len(seen) == len(messages):
                time.sleep(1.5)  # the first batch takes longer than the silence that ends a replay

        try:
            assert _assign_since(consumer, [topic, "raw.laval.nothing"], 0) == 2
            _drain(consumer, slow, idle_s=1.0)
        finally:
            consumer.close()
        assert len(seen) == total
    finally:
        broker.stop()
