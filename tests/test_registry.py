"""The registry stand-in answers like Confluent's on what Vigie relies on, our contracts'
evolution passes the check a real registry makes, and a registry outage delays data
instead of dead-lettering it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import fastavro
import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from connectors.simulator import SimulatedCss
from schemas.contracts import AVRO_DIR, Contract, Dataset, load_contract, raw_contract
from schemas.wire import AvroCodec
from streams.curate import RawMessage, curate_messages
from tests.embedded import HTTP
from vigie.runtime.broker import free_port
from vigie.runtime.registry import RegistryServer

HISTORY = Path(__file__).parent / "data" / "contract_history"
CT = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


@pytest.fixture
def reg(tmp_path: Path):
    server = RegistryServer("127.0.0.1", 0, tmp_path / "registry.json").start()
    yield server
    server.stop()


def _post(url: str, body: Any) -> httpx.Response:
    return HTTP.post(url, content=json.dumps(body), headers=CT)


def _changed_type(schema_str: str, field: str, new_type: Any) -> str:
    raw = json.loads(schema_str)
    for f in raw["fields"]:
        if f["name"] == field:
            f["type"] = new_type
    return json.dumps(raw)


def _schema_of(contract_file: str) -> str:
    return load_contract(contract_file).schema_str


def test_invalid_schema_is_refused_with_422(reg: RegistryServer) -> None:
    for bad in ('{"type":"nonsense"}', "not json", '{"type":"record","name":"R"}'):
        answer = _post(f"{reg.url}/subjects/s/versions", {"schema": bad})
        assert answer.status_code == 422
        assert answer.json()["error_code"] == 42201
    with pytest.raises(SchemaRegistryError) as info:
        SchemaRegistryClient({"url": reg.url}).register_schema("s", Schema('{"type":"nonsense"}', "AVRO"))
    assert info.value.http_status_code == 422
    assert HTTP.get(f"{reg.url}/subjects").json() == []


def test_incompatible_change_to_a_contract_is_refused_with_409(reg: RegistryServer) -> None:
    """A careless contract edit (css: string → int) is what a real registry refuses."""
    v1 = raw_contract(Dataset.ATTENDANCE).schema_str
    subject = raw_contract(Dataset.ATTENDANCE).subject
    client = SchemaRegistryClient({"url": reg.url})
    client.register_schema(subject, Schema(v1, "AVRO"))
    assert HTTP.get(f"{reg.url}/config").json() == {"compatibilityLevel": "BACKWARD"}
    broken = _changed_type(v1, "css", "int")
    with pytest.raises(SchemaRegistryError) as info:
        client.register_schema(subject, Schema(broken, "AVRO"))
    assert info.value.http_status_code == 409
    assert HTTP.get(f"{reg.url}/subjects/{subject}/versions").json() == [1]

    # The compatibility endpoint says the same before anyone tries.
    check = _post(f"{reg.url}/compatibility/subjects/{subject}/versions/latest?verbose=true",
                  {"schema": broken})  # fmt: skip
    assert check.status_code == 200
    assert check.json()["is_compatible"] is False
    assert any("/fields/" in m for m in check.json()["messages"])
    assert _post(f"{reg.url}/compatibility/subjects/{subject}/versions/latest", {"schema": v1}).json() == {
        "is_compatible": True
    }

    # Adding a field without a default breaks BACKWARD (new readers cannot fill it) …
    raw = json.loads(v1)
    raw["fields"].append({"name": "extra", "type": "string"})
    assert _post(f"{reg.url}/subjects/{subject}/versions", {"schema": json.dumps(raw)}).status_code == 409
    # … with a default it is a compatible version 2.
    raw["fields"][-1]["default"] = ""
    added = _post(f"{reg.url}/subjects/{subject}/versions", {"schema": json.dumps(raw)})
    assert added.status_code == 200
    assert HTTP.get(f"{reg.url}/subjects/{subject}/versions").json() == [1, 2]


def test_codec_cannot_register_an_incompatible_contract(reg: RegistryServer) -> None:
    """The producer path (AvroCodec) gets the refusal, not a silent version 2."""
    contract = load_contract("dead_letter.v1.avsc")
    AvroCodec.from_url(reg.url).schema_id(contract)
    raw = json.loads(_changed_type(contract.schema_str, "reason", "long"))

    broken = Contract(contract.file_name, contract.full_name, raw, fastavro.parse_schema(raw), None)
    with pytest.raises(SchemaRegistryError) as info:
        AvroCodec.from_url(reg.url).schema_id(broken)
    assert info.value.http_status_code == 409


def test_compatibility_levels_are_configurable_per_subject(reg: RegistryServer) -> None:
    v1 = _schema_of("connector_heartbeat.v1.avsc")
    _post(f"{reg.url}/subjects/hb/versions", {"schema": v1})
    assert HTTP.get(f"{reg.url}/config/hb").json()["error_code"] == 40408
    assert HTTP.get(f"{reg.url}/config/hb?defaultToGlobal=true").json() == {"compatibilityLevel": "BACKWARD"}
    bad_level = httpx.put(f"{reg.url}/config/hb", content=json.dumps({"compatibility": "LAX"}), headers=CT)
    assert (bad_level.status_code, bad_level.json()["error_code"]) == (422, 42203)
    put = httpx.put(f"{reg.url}/config/hb", content=json.dumps({"compatibility": "NONE"}), headers=CT)
    assert put.json() == {"compatibility": "NONE"}
    assert HTTP.get(f"{reg.url}/config/hb").json() == {"compatibilityLevel": "NONE"}
    # NONE lets the incompatible version in; the global level is untouched.
    fields = [f["name"] for f in json.loads(v1)["fields"]]
    changed = _changed_type(v1, fields[0], "long")
    assert _post(f"{reg.url}/subjects/hb/versions", {"schema": changed}).status_code == 200
    assert HTTP.get(f"{reg.url}/config").json() == {"compatibilityLevel": "BACKWARD"}
    assert httpx.delete(f"{reg.url}/config/hb").json() == {"compatibilityLevel": "NONE"}
    # FULL refuses a change that only BACKWARD allows (removing a field new readers ignore).
    httpx.put(f"{reg.url}/config", content=json.dumps({"compatibility": "FULL"}), headers=CT)
    raw = json.loads(changed)
    raw["fields"] = [f for f in raw["fields"] if "default" not in f][:-1] + [
        f for f in raw["fields"] if "default" in f
    ]
    answer = _post(f"{reg.url}/compatibility/subjects/hb/versions/latest", {"schema": json.dumps(raw)})
    assert answer.json() == {"is_compatible": False}


def test_subjects_delete_soft_then_permanent_with_json_errors(reg: RegistryServer) -> None:
    schema = _schema_of("dead_letter.v1.avsc")
    sid = _post(f"{reg.url}/subjects/dl/versions", {"schema": schema}).json()["id"]
    early = httpx.delete(f"{reg.url}/subjects/dl?permanent=true")
    assert (early.status_code, early.json()["error_code"]) == (404, 40405)
    assert httpx.delete(f"{reg.url}/subjects/dl").json() == [1]
    assert "dl" not in HTTP.get(f"{reg.url}/subjects").json()
    assert HTTP.get(f"{reg.url}/subjects/dl/versions").json()["error_code"] == 40401
    assert HTTP.get(f"{reg.url}/schemas/ids/{sid}").status_code == 200  # ids outlive subjects
    assert httpx.delete(f"{reg.url}/subjects/dl?permanent=true").json() == [1]
    again = _post(f"{reg.url}/subjects/dl/versions", {"schema": schema}).json()
    assert again["id"] == sid
    assert HTTP.get(f"{reg.url}/subjects/dl/versions").json() == [1]

    for method, path in [("GET", "/nowhere"), ("PATCH", "/subjects"), ("GET", "/subjects/dl/versions/9"),
                         ("GET", "/subjects/dl/versions/x"), ("GET", "/schemas/ids/999")]:  # fmt: skip
        answer = httpx.request(method, f"{reg.url}{path}")
        assert answer.status_code >= 400
        assert answer.headers["content-type"].startswith("application/vnd.schemaregistry")
        assert set(answer.json()) == {"error_code", "message"}


def _history() -> list[tuple[str, list[Path]]]:
    return [(d.name, sorted(d.glob("*.avsc"))) for d in sorted(HISTORY.iterdir())]


def test_every_contract_has_a_recorded_history() -> None:
    """A new contract gets its first snapshot here, so its later edits are checked."""
    assert {p.stem for p in AVRO_DIR.glob("*.avsc")} == {name for name, _ in _history()}


@pytest.mark.parametrize(("name", "versions"), _history(), ids=[n for n, _ in _history()])
def test_contract_evolution_is_compatible(reg: RegistryServer, name: str, versions: list[Path]) -> None:
    """Every contract registers on top of all its published versions, as a real registry would
    check it: raw contracts FULL_TRANSITIVE (72 connectors and the worker upgrade in any order),
    the others BACKWARD_TRANSITIVE (the worker reads what it wrote before). Editing a contract
    incompatibly fails here; a compatible edit adds its snapshot to tests/data/contract_history."""
    level = "FULL_TRANSITIVE" if name.startswith("raw_") else "BACKWARD_TRANSITIVE"
    httpx.put(f"{reg.url}/config/{name}", content=json.dumps({"compatibility": level}), headers=CT)
    for old in versions:
        assert _post(f"{reg.url}/subjects/{name}/versions", {"schema": old.read_text()}).status_code == 200
    current = (AVRO_DIR / f"{name}.avsc").read_text()
    answer = _post(f"{reg.url}/subjects/{name}/versions", {"schema": current})
    assert answer.status_code == 200, answer.json()["message"]


def _restart_later(port: int, state: Path, delay_s: float, started: list[RegistryServer]) -> threading.Thread:
    def run() -> None:
        time.sleep(delay_s)
        started.append(RegistryServer("127.0.0.1", port, state).start())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_registry_outage_delays_data_and_never_dead_letters_it(
    tmp_path, stage_context, organizations
) -> None:
    """Stop the registry, hand the stream stage a raw batch whose schema id it has never seen:
    it waits, the registry comes back, the batch is curated; nothing goes to dead letters."""
    port, state = free_port(), tmp_path / "registry.json"
    first = RegistryServer("127.0.0.1", port, state).start()
    url = f"http://127.0.0.1:{port}"
    sheets = SimulatedCss(organizations["laval"], seed=3).tick(0, 1.0)
    messages = [RawMessage(f"raw.laval.{ds.value}", 0, i, AvroCodec.from_url(url).encode(raw_contract(ds), b))
                for i, (ds, b) in enumerate(sheets)]  # fmt: skip
    first.stop()

    cold = AvroCodec.from_url(url, retry_max_backoff_s=0.5)  # a restarted worker: no ids cached
    started: list[RegistryServer] = []
    _restart_later(port, state, 1.5, started)
    try:
        out = curate_messages(messages, stage_context, cold, "mtest")
    finally:
        for server in started:
            server.stop()
    assert started, "the stage returned before the registry was back"
    assert out.dead_letters == []
    assert out.curated_records > 0


def test_unknown_schema_id_is_still_dead_lettered(reg: RegistryServer, stage_context) -> None:
    """A definite 'no such id' from a live registry is bad data, not an outage."""
    msg = RawMessage("raw.laval.attendance", 0, 1, b"\x00\x00\x00\x30\x39" + b"\x02abc")
    out = curate_messages([msg], stage_context, AvroCodec.from_url(reg.url), "mtest")
    assert len(out.dead_letters) == 1


@pytest.mark.parametrize(
    ("exc", "wait"),
    [
        (SchemaRegistryError(404, 40403, "Schema not found"), False),
        (SchemaRegistryError(409, 409, "incompatible"), False),
        (SchemaRegistryError(422, 42201, "Invalid schema"), False),
        (SchemaRegistryError(404, -1, "b''"), True),  # a proxy's 404, not the registry's verdict
        (SchemaRegistryError(401, 40101, "Unauthorized"), True),  # credentials: fix, then it flows
        (SchemaRegistryError(503, 50003, "Error while forwarding"), True),
        (httpx.ConnectError("refused"), True),
        (TimeoutError(), True),
        (ValueError("a bug"), False),  # never an endless retry on our own mistake
    ],
)
def test_what_counts_as_the_registry_being_unavailable(exc: Exception, wait: bool) -> None:
    from schemas.wire import registry_unavailable

    assert registry_unavailable(exc) is wait
