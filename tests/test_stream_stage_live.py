"""The stream stage inside the running worker: refusals end where they belong, consent
changes take effect without a restart, and unmapped values reach the stewards' report."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from connectors.publisher import ConnectorPublisher, flush, make_producer
from connectors.simulator import SimulatedCss
from schemas.contracts import DEAD_LETTER_TOPIC, Dataset, load_contract
from schemas.wire import AvroCodec
from streams.pseudonymize import Pseudonymizer
from tests.embedded import (
    TEST_ENV,
    dump_warehouse,
    reader_from_start,
    vigie,
    vigie_up,
    wait_for,
    worker_status,
)
from vigie.settings import Settings

pytestmark = pytest.mark.integration


def _row(statuses: list[dict], code: str) -> dict:
    return next(s for s in statuses if s["code"] == code)


def _read_dead_letters(broker: str, codec: AvroCodec, expected: int) -> list[dict]:
    consumer = reader_from_start(broker, DEAD_LETTER_TOPIC)
    letters: list[dict] = []
    try:
        for _ in range(60):
            for msg in consumer.consume(100, timeout=1.0):
                if msg.error() is None:
                    letters.append(codec.decode(msg.value(), load_contract("dead_letter.v1.avsc")))
            if len(letters) >= expected:
                break
    finally:
        consumer.close()
    return letters


def test_refusals_consent_reload_and_stewardship(tmp_path: Path, organizations) -> None:
    data_dir = tmp_path / "vigie"
    consent_file = tmp_path / "consent.csv"
    shutil.copy(Settings().consent_file, consent_file)
    env = {"VIGIE_CONSENT_FILE": str(consent_file), "VIGIE_CONSENT_RELOAD_S": "0.5"}
    today, now = date.today(), datetime.now(UTC)
    laval = SimulatedCss(organizations["laval"], seed=5)
    sorel = SimulatedCss(organizations["sorel-tracy"], seed=5)
    montreal = SimulatedCss(organizations["montreal"], seed=5)

    with vigie_up(data_dir, env=env) as (proc, info):
        codec = AvroCodec.from_url(info.registry_url)
        producer = make_producer(info.broker)
        pub = {
            c: ConnectorPublisher(c, "test", codec, producer) for c in ("laval", "montreal", "sorel-tracy")
        }

        # A connector cannot publish for another CSS: a laval sheet on montreal's topic.
        spoofed = laval.attendance_sheet(today, now)
        pub["montreal"].publish(Dataset.ATTENDANCE, spoofed)
        # A schema-valid sheet with one record breaking a rule.
        sheet = laval.attendance_sheet(today, now)
        sheet["marks"][0]["status_code"] = "?"
        pub["laval"].publish(Dataset.ATTENDANCE, sheet)
        # An unconsented dataset.
        first_staff = sorel.staff_changes(today, now)
        pub["sorel-tracy"].publish(Dataset.STAFF, first_staff)
        # Montréal sheets until one carries its locally extended code "13X" (unmapped).
        mtl_marks = 0
        for _ in range(40):
            mtl_sheet = montreal.attendance_sheet(today, now)
            pub["montreal"].publish(Dataset.ATTENDANCE, mtl_sheet)
            mtl_marks += len(mtl_sheet["marks"])
            if any(m["absence_code"] == "13X" for m in mtl_sheet["marks"]):
                break
        assert flush(producer, 30) == 0

        def settled() -> list[dict] | None:
            statuses = worker_status(data_dir)
            counts = (
                _row(statuses, "laval")["datasets"]["attendance"]["events"],
                _row(statuses, "sorel-tracy")["datasets"]["staff"]["withheld_no_consent"],
                _row(statuses, "montreal")["datasets"]["attendance"]["events"],
            )
            expected = (len(sheet["marks"]) - 1, len(first_staff["changes"]), mtl_marks)
            return statuses if counts == expected else None

        statuses = wait_for(settled, 90, "the first batches")
        assert _row(statuses, "sorel-tracy")["datasets"]["staff"]["consented"] is False

        # Sorel-Tracy consents to the workforce dataset: no restart.
        consent_file.write_text(
            consent_file.read_text() + "sorel-tracy,staff,planification,2024-07-01,,1095\n", encoding="utf-8"
        )
        wait_for(lambda: _row(worker_status(data_dir), "sorel-tracy")["datasets"]["staff"]["consented"],
                 30, "the consent reload", every_s=0.5)  # fmt: skip
        second_staff = sorel.staff_changes(today, now)
        pub["sorel-tracy"].publish(Dataset.STAFF, second_staff)
        assert flush(producer, 30) == 0
        wait_for(lambda: _row(worker_status(data_dir), "sorel-tracy")["datasets"]["staff"]["events"]
                 == len(second_staff["changes"]), 60, "the consented staff changes")  # fmt: skip

        report = json.loads(
            vigie("mappings", "report", "--json", "--css", "montreal", data_dir=data_dir).stdout
        )
        assert ("absence_code", "13X") in {(r["field"], r["value"]) for r in report}
        letters = _read_dead_letters(info.broker, codec, 3)
        by_reason = {(d["reason_code"], d["css"]): d for d in letters}
        bad = by_reason[("unknown_status", "laval")]
        # The dead letter carries the original record alone, readable with the raw contract.
        original = codec.decode(bad["payload"], load_contract("raw_attendance_sheet.v1.avsc"))
        assert [m["event_id"] for m in original["marks"]] == [sheet["marks"][0]["event_id"]]
        assert proc.poll() is None, "the worker keeps running"

    mismatch = by_reason[("css_mismatch", "montreal")]
    assert mismatch["stage"] == "css_check" and mismatch["record_count"] == len(spoofed["marks"])
    # Ids after the stage are keyed (the warehouse keeps dead letters without their payload).
    keyed = Pseudonymizer(TEST_ENV["VIGIE_PSEUDONYM_KEY"].encode(), "k").event_id
    assert bad["event_id"] == keyed("laval", sheet["marks"][0]["event_id"])
    withheld = by_reason[("no_consent", "sorel-tracy")]
    assert withheld["payload"] is None

    tables = dump_warehouse(data_dir)
    stored = {r["event_id"] for r in tables["attendance_marks"]}
    assert not stored & {keyed(c, m["event_id"]) for m in spoofed["marks"] for c in ("laval", "montreal")}
    assert keyed("laval", sheet["marks"][0]["event_id"]) not in stored
    assert len(stored) == len(sheet["marks"]) - 1 + mtl_marks
    assert {r["event_id"] for r in tables["staff_changes"]} == {
        keyed("sorel-tracy", c["event_id"]) for c in second_staff["changes"]
    }
    raw_ids = {m["event_id"] for m in sheet["marks"]} | {c["event_id"] for c in second_staff["changes"]}
    assert not raw_ids & (stored | {d["event_id"] for d in tables["dead_letters"]})
    assert "13X" not in json.dumps(tables)  # unmapped codes are for stewards, not the warehouse
