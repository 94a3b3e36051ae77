"""A take() batch of raw messages through the stream stage, without a broker."""

from __future__ import annotations

from datetime import UTC, date, datetime

from connectors.simulator import SimulatedCss
from schemas.contracts import (
    DEAD_LETTER_CONTRACT,
    Dataset,
    curated_contract,
    load_contract,
    raw_contract,
)
from streams.curate import RawMessage, curate_messages

TODAY = date.today()


def test_good_and_broken_messages_split_into_curated_and_dead_letters(
    stage_context, codec, organizations
) -> None:
    css = SimulatedCss(organizations["laval"], seed=2)
    batches = css.tick(0, 1.0)
    messages = [RawMessage(f"raw.laval.{ds.value}", 0, i, codec.encode(raw_contract(ds), b))
                for i, (ds, b) in enumerate(batches)]  # fmt: skip
    messages.append(RawMessage("raw.laval.attendance", 0, 99, b"\xde\xad\xbe\xef garbage"))
    out = curate_messages(messages, stage_context, codec, "mtest")

    sent = sum(len(b[{"attendance": "marks", "grades": "results", "staff": "changes"}[ds.value]])
               for ds, b in batches)  # fmt: skip
    assert out.curated_records == sent
    assert {ds for ds, _ in out.curated} == {Dataset.ATTENDANCE, Dataset.GRADES, Dataset.STAFF}
    att = codec.decode(dict(out.curated)[Dataset.ATTENDANCE], curated_contract(Dataset.ATTENDANCE))
    assert att["mapping_version"] == "mtest"

    [letter_bytes] = out.dead_letters
    letter = codec.decode(letter_bytes, load_contract(DEAD_LETTER_CONTRACT))
    assert (letter["stage"], letter["reason_code"]) == ("decode", "undecodable")
    assert (letter["source_topic"], letter["source_offset"], letter["css"]) == (
        "raw.laval.attendance",
        99,
        "laval",
    )
    assert letter["payload"].startswith(b"\xde\xad")
    assert letter["reason"]


def test_dead_letter_ids_are_stable_across_redelivery(stage_context, codec) -> None:
    msg = RawMessage("raw.laval.grades", 0, 5, b"nope")
    one = codec.decode(curate_messages([msg], stage_context, codec, "m").dead_letters[0],
                       load_contract(DEAD_LETTER_CONTRACT))  # fmt: skip
    two = codec.decode(curate_messages([msg], stage_context, codec, "m").dead_letters[0],
                       load_contract(DEAD_LETTER_CONTRACT))  # fmt: skip
    assert one["dead_letter_id"] == two["dead_letter_id"]


def test_no_consent_dead_letter_drops_the_payload(stage_context, codec, organizations) -> None:
    batch = SimulatedCss(organizations["kativik"], seed=2).staff_changes(TODAY, datetime.now(UTC))
    msg = RawMessage("raw.kativik.staff", 0, 1, codec.encode(raw_contract(Dataset.STAFF), batch))
    out = curate_messages([msg], stage_context, codec, "m")
    assert not out.curated
    letter = codec.decode(out.dead_letters[0], load_contract(DEAD_LETTER_CONTRACT))
    assert letter["reason_code"] == "no_consent"
    assert letter["payload"] is None
    assert letter["record_count"] == len(batch["changes"])


def test_a_large_batch_leaves_in_curated_messages_of_bounded_size(
    stage_context, codec, organizations
) -> None:
    css = SimulatedCss(organizations["laval"], seed=3)
    now = datetime.now(UTC)
    messages = [RawMessage("raw.laval.attendance", 0, i, codec.encode(raw_contract(Dataset.ATTENDANCE),
                                                                     css.attendance_sheet(TODAY, now)))
                for i in range(500)]  # fmt: skip
    out = curate_messages(messages, stage_context, codec, "m", max_records=2_000)
    sizes = [len(codec.decode(v, curated_contract(ds))["marks"]) for ds, v in out.curated]
    assert sum(sizes) == out.curated_records > 10_000
    assert max(sizes) == 2_000 and len(sizes) == -(-out.curated_records // 2_000)
    assert max(len(v) for _, v in out.curated) < 1_000_000  # under Kafka's default message limit


def test_the_absences_a_replay_asks_for_are_those_the_curated_batches_carry(
    stage_context, codec, organizations
) -> None:
    # Re-harmonization counts what changed from the stage's own list, not from a second decode:
    # that list must be exactly what the curated batches say (and empty unless asked for).
    sim = SimulatedCss(organizations["montreal"], seed=4)
    now = datetime.now(UTC)
    messages = [
        RawMessage("raw.montreal.attendance", 0, i,
                   codec.encode(raw_contract(Dataset.ATTENDANCE), sim.attendance_sheet(TODAY, now)))
        for i in range(30)
    ]  # fmt: skip
    out = curate_messages(messages, stage_context, codec, "m", max_records=200, absences=True)
    carried = [
        (r["record_key"], r["absence_reason"])
        for ds, value in out.curated
        for r in codec.decode(value, curated_contract(ds))["marks"]
        if r["absence_reason"] is not None
    ]
    assert len(out.curated) > 1 and len(carried) > 20
    assert out.absences == carried
    assert curate_messages(messages, stage_context, codec, "m").absences == []
