"""Attacker tests of the stream stage (issue 13, items 1-7): a curious analyst with the
warehouse, a careless CSS, a hostile CSS. Each one failed before the fix it names."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import struct
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import events
from connectors.simulator import FIRST_NAMES, LAST_NAMES, SimulatedCss
from schemas.contracts import (
    CURATED_RECORDS_FIELD,
    DEAD_LETTER_CONTRACT,
    HEARTBEAT_CONTRACT,
    RAW_RECORDS_FIELD,
    Dataset,
    connector_dead_letter_topic,
    heartbeat_topic,
    load_contract,
    raw_contract,
    raw_topic,
    without_logical_types,
)
from schemas.schools import default_schools
from schemas.wire import as_plain
from sinks.rows import UNKNOWN_RAW_TOPIC, dead_letter_frame, fact_frame
from streams.curate import RawMessage, curate_messages
from streams.harmonize import Unmapped
from streams.process import StageContext
from streams.pseudonymize import Pseudonymizer
from streams.stewardship import StewardshipLog, mask
from tests.stage import run_stage

NOW = datetime.now(UTC)
TODAY = NOW.date()
KEY_ONE = b"first-key-0123456789abcdef"
KEY_TWO = b"second-key-0123456789abcdef"


def _with_key(ctx: StageContext, key: bytes, key_id: str) -> StageContext:
    return StageContext(
        ctx.organizations, ctx.consent, Pseudonymizer(key, key_id), ctx.harmonizer, ctx.schools
    )


def _network(organizations: Any, seed: int = 4) -> list[tuple[str, Dataset, dict[str, Any]]]:
    out = []
    for css in ("laval", "montreal", "capitale"):
        sim = SimulatedCss(organizations[css], seed=seed)
        out += [(css, ds, batch) for ds, batch in sim.tick(0, 1.0, TODAY)]
    return out


def _ids(records: list[dict[str, Any]]) -> set[str]:
    keys = ("event_id", "record_key", "group_code", "student_pseudonym", "staff_pseudonym")
    return {r[k] for r in records for k in keys if r.get(k)}


# -- 1. keyed ids ------------------------------------------------------------------------------
def test_two_keys_share_no_id_value(stage_context: StageContext, organizations: Any) -> None:
    """The same sources run twice with two keys: not one id in common (before: event_id and
    record_key were the connector's UUIDv5, identical whatever the key)."""
    one, two = _with_key(stage_context, KEY_ONE, "k1"), _with_key(stage_context, KEY_TWO, "k2")
    ids_one: set[str] = set()
    ids_two: set[str] = set()
    for css, ds, batch in _network(organizations):
        ids_one |= _ids(run_stage(css, ds, batch, one).records)
        ids_two |= _ids(run_stage(css, ds, batch, two).records)
    assert len(ids_one) > 1000
    assert not ids_one & ids_two


def test_a_brute_force_over_small_local_ids_without_the_key_finds_nothing(
    stage_context: StageContext, organizations: Any
) -> None:
    """The curious analyst knows how connectors name rows (public UUIDv5 namespace) and that
    local student numbers are small: every candidate id is computed, none is stored."""
    sim = SimulatedCss(organizations["laval"], seed=9)
    sim.groups = 4
    sheets = [sim.attendance_sheet(TODAY, NOW) for _ in range(8)]
    stored: set[str] = set()
    for sheet in sheets:
        stored |= _ids(run_stage("laval", Dataset.ATTENDANCE, sheet, stage_context).records)
    assert stored
    candidates: set[str] = set()
    for sheet in sheets:
        for group in range(sim.groups):
            for seat in range(30):
                local = f"lav{group:04d}{seat:02d}"
                key = f"{group}/{sheet['sheet_date']}/{sheet['period']}/{local}"
                for k in (key, local):
                    raw_key = events.record_key("laval", sim.source_system, "attendance", k)
                    raw_event = events.event_id("laval", sim.source_system, "attendance", k, "1")
                    for value in (raw_key, raw_event, local):
                        candidates |= {value, value.replace("-", ""), hashlib.sha256(value.encode()).hexdigest(),
                                       hashlib.sha256(value.encode()).hexdigest()[:32]}  # fmt: skip
    # The real raw ids are among the candidates: the brute force is not a straw man.
    raw = {m["record_key"] for s in sheets for m in s["marks"]}
    assert raw <= candidates
    assert not stored & candidates


def test_keyed_ids_still_replace_redeliveries_and_corrections(
    stage_context: StageContext, organizations: Any
) -> None:
    sheet = SimulatedCss(organizations["laval"], seed=2).attendance_sheet(TODAY, NOW)
    first = run_stage("laval", Dataset.ATTENDANCE, sheet, stage_context).records
    again = run_stage("laval", Dataset.ATTENDANCE, sheet, stage_context).records
    assert [r["event_id"] for r in first] == [r["event_id"] for r in again]  # redelivery: same id
    corrected = {**sheet, "marks": [{**m, "event_id": m["event_id"] + "-v2"} for m in sheet["marks"]]}
    fixed = run_stage("laval", Dataset.ATTENDANCE, corrected, stage_context).records
    assert [r["record_key"] for r in fixed] == [r["record_key"] for r in first]  # same row
    assert not {r["event_id"] for r in fixed} & {r["event_id"] for r in first}  # a new version
    assert {r["key_id"] for r in fixed} == {"ktest"}  # the key id stands beside the ids


def test_dead_letters_carry_keyed_event_ids(
    stage_context: StageContext, codec: Any, organizations: Any
) -> None:
    sheet = SimulatedCss(organizations["laval"], seed=2).attendance_sheet(TODAY, NOW)
    sheet["marks"][0]["status_code"] = "?"
    msg = RawMessage(
        raw_topic("laval", Dataset.ATTENDANCE), 0, 1, codec.encode(raw_contract(Dataset.ATTENDANCE), sheet)
    )
    [letter] = [codec.decode(b, load_contract(DEAD_LETTER_CONTRACT)) for b in
                curate_messages([msg], stage_context, codec, "m").dead_letters]  # fmt: skip
    raw_id = sheet["marks"][0]["event_id"]
    assert letter["event_id"] == stage_context.pseudonymizer.event_id("laval", raw_id) != raw_id
    assert raw_id not in letter["dead_letter_id"]
    # The original record (raw ids included) stays in the payload, on the dead-letter topic.
    original = codec.decode(letter["payload"], raw_contract(Dataset.ATTENDANCE))
    assert original["marks"][0]["event_id"] == raw_id


# -- 2. no free string crosses the stage -------------------------------------------------------
def test_a_group_named_after_a_teacher_is_keyed(stage_context: StageContext, organizations: Any) -> None:
    sheet = SimulatedCss(organizations["laval"], seed=2).attendance_sheet(TODAY, NOW)
    sheet["group_code"] = "Groupe de Mme Tremblay"
    records = run_stage("laval", Dataset.ATTENDANCE, sheet, stage_context).records
    assert records and all("Tremblay" not in str(r) for r in records)
    assert len({r["group_code"] for r in records}) == 1  # still one group


@pytest.mark.parametrize("school", ["École de Mme Tremblay", "999999", ""])
def test_a_school_outside_the_reference_is_refused_and_shown_to_stewards(
    stage_context: StageContext, organizations: Any, school: str
) -> None:
    evaluation = SimulatedCss(organizations["laval"], seed=2).evaluation(TODAY, NOW)
    evaluation["school_code"] = school
    out = run_stage("laval", Dataset.GRADES, evaluation, stage_context)
    assert not out.records
    [refusal] = out.rejections
    assert (refusal.reason_code, refusal.record_count) == ("unknown_school", len(evaluation["results"]))
    assert refusal.reason.startswith("school_code: ") and (not school or school not in refusal.reason)
    if school:
        assert Unmapped("laval", "grades", "school_code", school) in out.unmapped


def test_another_css_school_is_refused(stage_context: StageContext, organizations: Any) -> None:
    sheet = SimulatedCss(organizations["laval"], seed=2).attendance_sheet(TODAY, NOW)
    sheet["school_code"] = next(iter(default_schools()["montreal"]))
    assert sheet["school_code"] not in default_schools()["laval"]
    [refusal] = run_stage("laval", Dataset.ATTENDANCE, sheet, stage_context).rejections
    assert refusal.reason_code == "unknown_school"


def test_staff_school_outside_the_reference_refuses_that_change(
    stage_context: StageContext, organizations: Any
) -> None:
    changes = SimulatedCss(organizations["laval"], seed=2).staff_changes(TODAY, NOW)
    changes["changes"][0]["school_code"] = "bureau de Jean Tremblay"
    out = run_stage("laval", Dataset.STAFF, changes, stage_context)
    assert len(out.records) == len(changes["changes"]) - 1
    [refusal] = out.rejections
    assert refusal.reason_code == "unknown_school" and "Tremblay" not in refusal.reason


@pytest.mark.parametrize("level", ["Groupe de Mme Tremblay", "sec9", "prim 4"])
def test_levels_come_from_a_closed_vocabulary(
    stage_context: StageContext, organizations: Any, level: str
) -> None:
    evaluation = SimulatedCss(organizations["laval"], seed=2).evaluation(TODAY, NOW)
    evaluation["level"] = level
    out = run_stage("laval", Dataset.GRADES, evaluation, stage_context)
    assert not out.records
    assert {r.reason for r in out.rejections} == {"level: not in the closed vocabulary of levels"}
    ok = run_stage("laval", Dataset.GRADES, {**evaluation, "level": " Sec3 "}, stage_context)
    assert {r["level"] for r in ok.records} == {"sec3"}


def test_every_curated_string_is_a_code_a_reference_or_keyed(
    stage_context: StageContext, organizations: Any
) -> None:
    """Each string field of the curated contracts, for a whole simulated network minute: its
    values come from a closed set, the references, or are keyed (32 hex)."""
    schools = {code for of_css in default_schools().values() for code in of_css}
    closed = {
        "css": set(organizations), "school_code": schools, "key_id": {"ktest"},
        "level": {"mat4", "mat5", *(f"prim{n}" for n in range(1, 7)), *(f"sec{n}" for n in range(1, 6))},
        "age_band": {"0-4", "5-8", "9-12", "13-15", "16-17", "18+", "0-24", "25-34", "35-44", "45-54", "55+"},
        "sex": {"F", "M", "X"}, "language_group": {"francophone", "anglophone", "allophone"},
        "immigration": {"1re", "2e", "3e+"}, "result_band": {"0-60", "61-74", "75-100"},
        "change_type": {"hire", "departure", "leave_start", "leave_end", "position_open", "position_filled"},
    }  # fmt: skip
    mapped = {  # values from the mapping files (the harmonizer's closed vocabularies) or 'inconnu'
        "subject_code": set(stage_context.harmonizer._subjects.values()),
        "competency_code": set(stage_context.harmonizer._competencies.values()),
        "job_class": set(stage_context.harmonizer._jobs.values()),
        "leave_type": {*stage_context.harmonizer._leaves.values(), "autre"},
    }
    keyed = {"event_id", "record_key", "group_code", "student_pseudonym", "staff_pseudonym"}
    seen: set[str] = set()
    for css, ds, batch in _network(organizations, seed=12):
        for record in run_stage(css, ds, batch, stage_context).records:
            for name, value in record.items():
                if not isinstance(value, str):
                    continue
                seen.add(name)
                if name in keyed:
                    assert len(value) == 32 and int(value, 16) >= 0, name
                elif name in closed:
                    assert value in closed[name], (name, value)
                elif name in mapped:
                    assert value in mapped[name] | {"inconnu"}, (name, value)
                else:
                    assert name in {"status", "absence_reason"}, f"unchecked string field {name}"
    assert {"school_code", "group_code", "level", "event_id", "record_key"} <= seen


# -- 3. reasons name the field and the rule, never the value ----------------------------------
HOSTILE = st.one_of(
    st.sampled_from(["QUIZ12345678", "514-555-0199", "jean.tremblay@example.com", "H2X 1Y4", "Tremblay"]),
    st.builds(lambda f, n: f"{f}{n}", st.sampled_from(FIRST_NAMES + LAST_NAMES), st.integers(0, 99)),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZÉÈÀÇ0123456789@.+- ", min_size=4, max_size=24).filter(
        lambda v: any(c.isupper() or c.isdigit() for c in v[:4])
    ),
)
STRING_FIELDS = {
    Dataset.ATTENDANCE: (["school_code", "group_code"], ["op", "status_code", "absence_code", "absence_text"]),
    Dataset.GRADES: (["school_code", "group_code", "level", "subject_code", "competency_code", "scale"],
                     ["op", "result", "sex", "language_group", "immigration"]),
    Dataset.STAFF: ([], ["op", "job_code", "change_type", "leave_type", "school_code"]),
}  # fmt: skip


def _substrings(value: str, size: int = 4) -> set[str]:
    """The value's substrings of ``size`` that could single it out: those holding a capital, a
    digit or an '@' (a lowercase fragment such as "ence" of "Florence" is also a word of the
    rules, "reference"). Every hostile value has one, so quoting any 4+ characters of its
    beginning, as the old reasons did ("unknown op 'QUIZ1234'"), is caught."""
    pieces = {value[i : i + size] for i in range(len(value) - size + 1)}
    return {p for p in pieces if any(c.isupper() or c.isdigit() or c == "@" for c in p)}


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dataset=st.sampled_from(list(Dataset)), value=HOSTILE, pick=st.integers(0, 20))
def test_no_reason_quotes_a_value(
    stage_context: StageContext, codec: Any, organizations: Any, dataset: Dataset, value: str, pick: int
) -> None:
    sim = SimulatedCss(organizations["laval"], seed=3)
    batch = {Dataset.ATTENDANCE: sim.attendance_sheet, Dataset.GRADES: sim.evaluation,
             Dataset.STAFF: sim.staff_changes}[dataset](TODAY, NOW)  # fmt: skip
    header, record = STRING_FIELDS[dataset]
    fields = [("batch", f) for f in header] + [("record", f) for f in record]
    where, name = fields[pick % len(fields)]
    if where == "batch":
        batch[name] = value
    else:
        batch[RAW_RECORDS_FIELD[dataset]][0][name] = value
    msg = RawMessage(raw_topic("laval", dataset), 0, 7, codec.encode(raw_contract(dataset), batch))
    out = curate_messages([msg], stage_context, codec, "m")
    reasons = [codec.decode(b, load_contract(DEAD_LETTER_CONTRACT))["reason"] for b in out.dead_letters]
    for reason in reasons:
        assert not {s for s in _substrings(value) if s in reason}, (name, reason)


@pytest.mark.parametrize("days", [2**31 - 1, -(2**31), -719_163, 2_932_897])
@pytest.mark.parametrize("dataset", [Dataset.ATTENDANCE, Dataset.GRADES, Dataset.STAFF])
def test_a_day_no_calendar_has_is_refused_not_a_crash(
    stage_context: StageContext, codec: Any, organizations: Any, dataset: Dataset, days: int
) -> None:
    """The stage reads dates as plain ints: a hostile connector can write any int where a date
    goes, including days before year 1 or after 9999 that no ``date`` holds. Every record is
    refused as implausible (and, its consent date being none, not kept), the batch never
    crashes the stage."""
    sim = SimulatedCss(organizations["laval"], seed=4)
    batch = {Dataset.ATTENDANCE: lambda: sim.attendance_sheet(TODAY, NOW),
             Dataset.GRADES: lambda: sim.evaluation(TODAY, NOW),
             Dataset.STAFF: lambda: sim.staff_changes(TODAY, NOW)}[dataset]()  # fmt: skip
    plain = as_plain(raw_contract(dataset), batch)
    field = RAW_RECORDS_FIELD[dataset]
    if dataset is Dataset.STAFF:
        plain[field][0]["effective_date"] = days
        plain[field][0]["birth_date"] = days
    else:
        plain["sheet_date" if dataset is Dataset.ATTENDANCE else "evaluation_date"] = days
        plain[field][0]["birth_date"] = days
    msg = RawMessage(raw_topic("laval", dataset), 0, 3, codec.encode(raw_contract(dataset), plain, plain=True))
    out = curate_messages([msg], stage_context, codec, "m")
    letters = [codec.decode(b, load_contract(DEAD_LETTER_CONTRACT)) for b in out.dead_letters]
    if dataset is Dataset.STAFF:
        assert out.curated_records == len(plain[field]) - 1
        assert len(letters) == 1
    else:
        assert out.curated_records == 0
        assert len(letters) == len(plain[field])
        assert all(letter["payload"] is None for letter in letters)  # no consent date: nothing kept
    assert {(letter["stage"], letter["reason_code"]) for letter in letters} == {("validate", "implausible_date")}


def _widened(schema: Any, field: str) -> Any:
    """``schema`` with the int in field ``field``'s type written as a long: same encoding, so
    the bytes read back as that field's int, whatever their size."""
    if isinstance(schema, dict):
        if schema.get("name") == field:
            return {**schema, "type": ["null", "long"]}
        return {key: _widened(value, field) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_widened(item, field) for item in schema]
    return schema


@pytest.mark.parametrize("birth", [2**31, -(2**31) - 1, 2**62])
@pytest.mark.parametrize("dataset", [Dataset.ATTENDANCE, Dataset.GRADES, Dataset.STAFF])
def test_an_int_wider_than_avro_int_is_refused_not_a_crash(
    stage_context: StageContext, codec: Any, organizations: Any, dataset: Dataset, birth: int
) -> None:
    """fastavro reads an Avro int without checking its range: a hostile connector can write a
    birth date of 2**31 days or more, which validation refuses, and the refused record's dead
    letter re-encodes it in the raw contract, where its union (null or int) refuses such an
    int (before: ValueError out of the stage, on every restart; before the plain view the
    date conversion made the message undecodable). The letter keeps the original message."""
    sim = SimulatedCss(organizations["laval"], seed=4)
    batch = {Dataset.ATTENDANCE: lambda: sim.attendance_sheet(TODAY, NOW),
             Dataset.GRADES: lambda: sim.evaluation(TODAY, NOW),
             Dataset.STAFF: lambda: sim.staff_changes(TODAY, NOW)}[dataset]()  # fmt: skip
    contract = raw_contract(dataset)
    plain = as_plain(contract, batch)
    field = RAW_RECORDS_FIELD[dataset]
    plain[field][0]["birth_date"] = birth
    body = io.BytesIO()
    wide = fastavro.parse_schema(_widened(without_logical_types(contract.raw), "birth_date"))
    fastavro.schemaless_writer(body, wide, plain)
    msg = RawMessage(raw_topic("laval", dataset), 0, 6, codec.frame(contract, body.getvalue()))
    out = curate_messages([msg], stage_context, codec, "m")
    letters = [codec.decode(b, load_contract(DEAD_LETTER_CONTRACT)) for b in out.dead_letters]
    raw_id = plain[field][0]["event_id"]
    [letter] = [x for x in letters if x["event_id"] == stage_context.pseudonymizer.event_id("laval", raw_id)]
    assert (letter["stage"], letter["reason_code"]) == ("validate", "implausible_date")
    assert letter["payload"] == msg.value
    assert out.curated_records == len(plain[field]) - len(letters)


def _retyped(schema: dict[str, Any], path: tuple[str, ...], logical_type: str) -> dict[str, Any]:
    """``schema`` with the field at ``path`` (record fields, through arrays) annotated
    ``logical_type`` on its own Avro type."""
    schema = json.loads(json.dumps(schema))
    fields = schema["fields"]
    for name in path[:-1]:
        fields = next(f for f in fields if f["name"] == name)["type"]["items"]["fields"]
    field = next(f for f in fields if f["name"] == path[-1])

    def annotated(member: Any) -> Any:
        base = member["type"] if isinstance(member, dict) else member
        return member if base == "null" else {"type": base, "logicalType": logical_type}

    kind = field["type"]
    field["type"] = [annotated(m) for m in kind] if isinstance(kind, list) else annotated(kind)
    return schema


@pytest.mark.parametrize(
    ("path", "logical_type", "scale", "curated"),
    [
        (("marks", "occurred_at"), "timestamp-micros", 1000, False),  # micros read as ms: far ahead
        (("marks", "detected_at"), "local-timestamp-millis", 1, True),
        (("marks", "birth_date"), "time-millis", 1, True),
        (("period",), "time-millis", 1, True),
    ],
)  # fmt: skip
def test_a_writer_schema_with_other_logical_types_is_read_plain_not_a_crash(
    stage_context: StageContext, codec: Any, registry: Any, organizations: Any,
    path: tuple[str, ...], logical_type: str, scale: int, curated: bool,
) -> None:  # fmt: skip
    """The registry's compatibility check (Avro's) ignores logical types, and a message may name
    any registered schema id: a hostile connector can write a raw batch whose writer schema puts
    another logical type on a timestamp, a date or an int of the contract. The stage's plain
    view must read the plain number whatever the writer's annotation (before: fastavro built a
    datetime or a time from the writer's annotation, validation compared it with an int and the
    TypeError stopped the stage on that batch, again at every restart)."""
    contract = raw_contract(Dataset.ATTENDANCE)
    hostile = _retyped(contract.raw, path, logical_type)
    client = SchemaRegistryClient({"url": registry.url})
    sid = client.register_schema(f"hostile-{logical_type}-{path[-1]}", Schema(json.dumps(hostile), "AVRO"))
    plain = as_plain(contract, SimulatedCss(organizations["laval"], seed=4).attendance_sheet(TODAY, NOW))
    for mark in plain["marks"]:
        mark["occurred_at"] *= scale
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(hostile), plain)
    framed = struct.pack(">bI", 0, sid) + body.getvalue()
    msg = RawMessage(raw_topic("laval", Dataset.ATTENDANCE), 0, 5, framed)
    out = curate_messages([msg], stage_context, codec, "m")
    letters = [codec.decode(b, load_contract(DEAD_LETTER_CONTRACT)) for b in out.dead_letters]
    if curated:
        assert (out.curated_records, letters) == (len(plain["marks"]), [])
    else:
        assert out.curated_records == 0
        assert {(x["stage"], x["reason_code"]) for x in letters} == {("validate", "implausible_date")}


def test_undecodable_messages_do_not_echo_their_bytes(stage_context: StageContext, codec: Any) -> None:
    hostile = [b"\x00\x00\xbc\x61\x4e" + b"QUIZ12345678", b"\x07QUIZ12345678", b"QUI"]
    messages = [RawMessage("raw.laval.attendance", 0, i, v) for i, v in enumerate(hostile)]
    letters = [codec.decode(b, load_contract(DEAD_LETTER_CONTRACT))
               for b in curate_messages(messages, stage_context, codec, "m").dead_letters]  # fmt: skip
    assert len(letters) == 3
    for letter in letters:
        assert letter["reason"].startswith("message: ")
        assert not any(s in letter["reason"] for s in ("QUIZ", "1234", "12345678", str(0xBC614E)))


# -- 4. the stewards' log ----------------------------------------------------------------------
def test_stewards_log_is_private_masked_and_forgets(tmp_path: Path) -> None:
    path = tmp_path / "stewardship.sqlite"
    log = StewardshipLog(path, retention_days=30)
    old = datetime.now(UTC) - timedelta(days=40)
    log.record(Counter({Unmapped("laval", "attendance", "absence_text", "vieux motif"): 1}), now=old)
    texts = ["appeler maman au 514-555-0199", "écrire à jean.tremblay@example.com", "code QUIZ12345678",
             "habite H2X 1Y4", "voir agenda"]  # fmt: skip
    log.record(Counter({Unmapped("laval", "attendance", "absence_text", t): 1 for t in texts}))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for side in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if side.exists():
            assert stat.S_IMODE(os.stat(side).st_mode) == 0o600
    values = {e.value for e in log.report("laval")}
    assert values == {"appeler maman au [téléphone]", "écrire à [courriel]", "code [code permanent]",
                      "habite [code postal]", "voir agenda"}  # fmt: skip
    log.close()
    # Nothing in clear on disk either, and the 40-day-old entry is gone.
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for secret in (b"0199", b"tremblay@", b"12345678", b"H2X", b"vieux motif"):
        assert secret not in raw


def test_mask_keeps_ordinary_text() -> None:
    assert mask("rdv dentiste 14h30") == "rdv dentiste 14h30"
    assert mask("tél (418) 555-1234") == "tél [téléphone]"


# -- 5. forged status --------------------------------------------------------------------------
def _beat(css: str, **change: Any) -> dict[str, Any]:
    return {"css": css, "connector_id": "poste de Jean Tremblay", "sent_at": NOW, "outbox_depth": 3,
            "last_send_at": NOW, "source_lag_s": 1.5, "connector_version": "0.1.0", **change}  # fmt: skip


def _letters(out: Any, codec: Any) -> list[dict[str, Any]]:
    return [codec.decode(b, load_contract(DEAD_LETTER_CONTRACT)) for b in out.dead_letters]


def test_a_heartbeat_counts_only_for_the_css_of_its_topic(stage_context: StageContext, codec: Any) -> None:
    hb = load_contract(HEARTBEAT_CONTRACT)
    messages = [
        RawMessage(heartbeat_topic("laval"), 0, 1, codec.encode(hb, _beat("laval"))),
        RawMessage(heartbeat_topic("laval"), 0, 2, codec.encode(hb, _beat("montreal"))),  # forged
        RawMessage(heartbeat_topic("atlantis"), 0, 3, codec.encode(hb, _beat("atlantis"))),  # unknown
        RawMessage(heartbeat_topic("laval"), 0, 4, codec.encode(hb, _beat("laval", sent_at=datetime(2100, 1, 1, tzinfo=UTC)))),
        RawMessage(heartbeat_topic("laval"), 0, 5, codec.encode(hb, _beat("laval", connector_version="Jean Tremblay"))),
    ]  # fmt: skip
    out = curate_messages(messages, stage_context, codec, "m")
    beats = [codec.decode(b, hb) for b in out.heartbeats]
    assert [b["css"] for b in beats] == ["laval", "laval"]
    assert all("Tremblay" not in str(b) for b in beats)
    assert beats[0]["connector_id"] == stage_context.pseudonymizer.keyed(
        "laval", "connector", "poste de Jean Tremblay"
    )
    assert beats[1]["connector_version"] == "inconnue"
    letters = {d["source_offset"]: d for d in _letters(out, codec)}
    assert (letters[2]["reason_code"], letters[2]["css"]) == ("css_mismatch", "laval")
    assert (letters[3]["reason_code"], letters[3]["css"]) == ("unknown_css", None)
    assert letters[4]["reason_code"] == "implausible_date"
    assert dead_letter_frame([letters[3]])["source_topic"][0] == UNKNOWN_RAW_TOPIC


def test_a_heartbeats_rejection_text_stays_at_the_css(stage_context: StageContext, codec: Any) -> None:
    """The connector describes its last refusal in free text for its technician; a careless or
    hostile connector can put a name there. Centrally only the counts and the time remain."""
    hb = load_contract(HEARTBEAT_CONTRACT)
    beat = _beat("laval", rejected_rows=3, rejected_files=1, last_rejection_at=NOW,
                 last_rejection="ligne 12 : Jean Tremblay, 514-555-0199")  # fmt: skip
    negative = _beat("laval", rejected_rows=-5)
    messages = [RawMessage(heartbeat_topic("laval"), 0, i, codec.encode(hb, b)) for i, b in enumerate([beat, negative])]
    out = curate_messages(messages, stage_context, codec, "m")
    (stored,) = [codec.decode(b, hb) for b in out.heartbeats]
    assert (stored["rejected_rows"], stored["rejected_files"]) == (3, 1) and stored["last_rejection_at"] is not None
    assert stored["last_rejection"] is None and "Tremblay" not in str(stored)
    assert [d["reason_code"] for d in _letters(out, codec)] == ["out_of_range"]

def test_a_connector_dead_letter_counts_only_for_its_css(stage_context: StageContext, codec: Any) -> None:
    dl = load_contract(DEAD_LETTER_CONTRACT)
    forged = {"dead_letter_id": "x", "failed_at": NOW, "stage": "connector", "reason_code": "rejected_row",
              "reason": "ligne de Jean Tremblay 514-555-0199", "source_topic": "raw.montreal.attendance",
              "source_partition": 0, "source_offset": 0, "css": "montreal", "dataset": "attendance",
              "event_id": "e-1", "record_count": 999_999, "payload": None}  # fmt: skip
    own = {**forged, "css": "laval", "record_count": 3, "reason_code": "Jean Tremblay"}
    messages = [RawMessage(connector_dead_letter_topic("laval"), 0, 1, codec.encode(dl, forged)),
                RawMessage(connector_dead_letter_topic("laval"), 0, 2, codec.encode(dl, own))]  # fmt: skip
    letters = {
        d["source_offset"]: d for d in _letters(curate_messages(messages, stage_context, codec, "m"), codec)
    }
    assert (letters[1]["reason_code"], letters[1]["css"], letters[1]["record_count"]) == (
        "css_mismatch",
        "laval",
        0,
    )
    kept = letters[2]
    assert (kept["css"], kept["record_count"], kept["stage"], kept["reason_code"]) == (
        "laval",
        3,
        "connector",
        "other",
    )
    assert "Tremblay" not in str({k: v for k, v in kept.items() if k != "payload"})
    assert kept["event_id"] == stage_context.pseudonymizer.event_id("laval", "e-1")


# -- 6. time sanity ----------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["detected_at", "occurred_at"])
@pytest.mark.parametrize("when", [datetime(1900, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC),
                                  timedelta(days=2), datetime(1999, 12, 31, 23, tzinfo=UTC)])  # fmt: skip
def test_event_times_outside_2000_to_tomorrow_are_refused(
    stage_context: StageContext, organizations: Any, field: str, when: datetime | timedelta
) -> None:
    if isinstance(when, timedelta):
        # Ahead of the stage's own clock, read now: the module's NOW may be from before midnight.
        when = datetime.now(UTC) + when
    sheet = SimulatedCss(organizations["laval"], seed=2).attendance_sheet(TODAY, NOW)
    sheet["marks"][0][field] = when
    out = run_stage("laval", Dataset.ATTENDANCE, sheet, stage_context)
    [refusal] = out.rejections
    assert (refusal.reason_code, refusal.reason.split(":")[0]) == ("implausible_date", field)
    assert str(when.year) not in refusal.reason
    frame = fact_frame(Dataset.ATTENDANCE, [{"mapping_version": "m", "processed_at": NOW,
                                             CURATED_RECORDS_FIELD[Dataset.ATTENDANCE]: out.records}])  # fmt: skip
    assert frame["row_version"].between(946_684_800_000, (NOW + timedelta(days=1)).timestamp() * 1000).all()


# -- 7. silent topics --------------------------------------------------------------------------
def test_unknown_organizations_and_datasets_are_dead_lettered(
    stage_context: StageContext, codec: Any, organizations: Any
) -> None:
    sheet = SimulatedCss(organizations["laval"], seed=2).attendance_sheet(TODAY, NOW)
    body = codec.encode(raw_contract(Dataset.ATTENDANCE), {**sheet, "css": "atlantis"})
    messages = [RawMessage("raw.atlantis.attendance", 0, 1, body),
                RawMessage("raw.laval.absences", 0, 2, body),
                RawMessage("raw.jean-tremblay.attendance", 0, 3, b"\x00garbage")]  # fmt: skip
    out = curate_messages(messages, stage_context, codec, "m")
    assert not out.curated
    letters = {d["source_offset"]: d for d in _letters(out, codec)}
    assert (letters[1]["reason_code"], letters[1]["css"], letters[1]["record_count"]) == (
        "unknown_css", None, len(sheet["marks"]))  # fmt: skip
    assert (letters[2]["reason_code"], letters[2]["css"], letters[2]["dataset"]) == (
        "unknown_dataset",
        "laval",
        None,
    )
    assert (letters[3]["css"], letters[3]["payload"]) == (None, b"\x00garbage")
    stored = dead_letter_frame(list(letters.values()))
    assert set(stored["source_topic"]) == {UNKNOWN_RAW_TOPIC}
    assert "atlantis" not in str(stored.to_dict()) and "tremblay" not in str(stored.to_dict())
    assert {label for (_ds, label, _o) in out.records} <= {"inconnu"}  # never a sender's string


def test_schools_reference_covers_every_organization(organizations: Any) -> None:
    schools = default_schools()
    assert set(schools) == set(organizations)
    sizes = {css: len(s) for css, s in schools.items()}
    assert min(sizes.values()) >= 3 and max(sizes.values()) <= 40
    assert sizes["montreal"] > sizes["iles"]  # scaled by students_approx
    assert all({s.kind for s in of_css.values()} == {"primaire", "secondaire"} for of_css in schools.values())


def test_simulated_school_codes_come_from_the_reference(organizations: Any) -> None:
    for css in ("montreal", "iles", "english-montreal"):
        sim = SimulatedCss(organizations[css], seed=1)
        codes = {sim.school_of(g) for g in range(sim.groups)}
        assert codes <= set(default_schools()[css]) and len(codes) > 1


# -- another way in: writing the worker's own topics ------------------------------------------
def test_only_the_worker_signs_its_topics() -> None:
    """On the embedded broker (no ACLs) anyone can write ``deadletter``: the sinks store only
    messages carrying the worker's MAC for that topic and value."""
    from streams.signing import MAC_HEADER, Signer

    worker = Signer(b"test-key-0123456789abcdef-not-a-secret")
    value = b"\x00\x00\x00\x00\x01 a dead letter"
    headers = worker.headers("deadletter", value)
    assert worker.verify("deadletter", value, headers)
    assert worker.verify("deadletter", value, list(headers.items()))  # as aiokafka gives them
    assert not worker.verify("deadletter", value, None)  # a CSS writing directly
    assert not worker.verify("deadletter", value + b"9", headers)  # tampered (999,999 records)
    assert not worker.verify("curated.attendance", value, headers)  # replayed on another topic
    assert not Signer(b"another-key-0123456789abcdef").verify("deadletter", value, headers)
    assert not worker.verify("deadletter", value, [(MAC_HEADER, headers[MAC_HEADER])] * 2)


def test_no_reason_is_built_from_a_value() -> None:
    """The grep of every reason string, as a test: in the stage, a reason is ``reason(field,
    rule)`` with literal text; the only interpolations are names of ours (a dataset, a kind of
    topic, a contract) and the wire-format errors, which are literal too."""
    import ast

    import schemas.wire
    import streams

    allowed = {"dataset.value", "what", "reader.full_name", "str(exc)"}
    # The reason's position in each way of building one.
    builders = {"reason": (0, 1), "_refuse": (1, 2), "RecordRefused": (2,), "Rejection": (2,),
                "WireFormatError": (0,)}  # fmt: skip
    checked = interpolated = 0
    for path in [*Path(streams.__file__).parent.glob("*.py"), Path(schemas.wire.__file__)]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = getattr(node.func, "id", None) if isinstance(node, ast.Call) else None
            if name not in builders:
                continue
            for index in builders[name]:
                if index >= len(node.args):
                    continue
                arg = node.args[index]
                where = f"{path.name}:{node.lineno}"
                checked += 1
                if isinstance(arg, ast.Constant | ast.Name | ast.Attribute):
                    continue  # a literal, a parameter holding one, or a precomputed reason
                if isinstance(arg, ast.Call):
                    assert ast.unparse(arg) in allowed or getattr(arg.func, "id", "") == "reason", where
                    continue
                assert isinstance(arg, ast.JoinedStr), f"{where}: {ast.unparse(arg)}"
                for part in arg.values:
                    if isinstance(part, ast.FormattedValue):
                        interpolated += 1
                        assert ast.unparse(part.value) in allowed, f"{where}: {ast.unparse(part.value)}"
    assert checked > 30 and interpolated >= 2  # the scan does see what it allows


def test_mappings_report_shows_only_masked_text(tmp_path: Path) -> None:
    """A stewards' log written in clear by an earlier version: ``vigie mappings report`` shows
    it masked, and the file is masked and made private on the way."""
    import json
    import sqlite3

    from tests.embedded import vigie

    data_dir = tmp_path / "vigie"
    data_dir.mkdir()
    path = data_dir / "stewardship.sqlite"
    StewardshipLog(path).close()
    with sqlite3.connect(path) as db:  # as the old version stored it: in clear
        now = datetime.now(UTC).isoformat(timespec="seconds")
        db.execute("INSERT INTO unmapped VALUES ('laval', 'attendance', 'absence_text', "
                   "'rappeler 514-555-0199 ou jean.tremblay@example.com', 2, ?, ?)", (now, now))  # fmt: skip
    path.chmod(0o644)
    for args in (("--json",), ()):
        out = vigie("mappings", "report", "--css", "laval", *args, data_dir=data_dir).stdout
        assert "0199" not in out and "tremblay@" not in out and "rappeler" in out
    [entry] = json.loads(vigie("mappings", "report", "--json", data_dir=data_dir).stdout)
    assert entry["value"] == "rappeler [téléphone] ou [courriel]" and entry["count"] == 2
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize(
    ("text", "message"),
    [("css_code,school_code,name,kind\nlaval,1,A,primaire\nlaval,1,B,primaire\n", "duplicate"),
     ("css_code,school_code,name,kind\nlaval,1,A,college\n", "kind"),
     ("css_code,school_code,name,kind\n", "no schools"),
     ("css,code\nlaval,1\n", "malformed")],
)  # fmt: skip
def test_a_malformed_schools_file_is_refused_with_its_line(tmp_path: Path, text: str, message: str) -> None:
    from schemas.schools import SchoolsError, load_schools

    path = tmp_path / "schools.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SchoolsError, match=message):
        load_schools(path)
    with pytest.raises(SchoolsError, match="cannot read"):
        load_schools(tmp_path / "missing.csv")
