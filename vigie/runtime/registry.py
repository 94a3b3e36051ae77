"""A Confluent-compatible schema registry stand-in for the embedded runtime.

No registry ships on PyPI, so the embedded runtime serves the endpoints Vigie and
confluent-kafka's ``SchemaRegistryClient`` use, and answers them the way Confluent's
registry (and Karapace) do, so the suite catches what production would refuse:

- an invalid schema is refused with 422 / ``42201``;
- a schema incompatible with the subject's compatibility level is refused with 409;
  the check is Apache Avro's reader/writer compatibility checker, the one Karapace uses
  (BACKWARD: the new schema reads data written with the latest version; FORWARD: the
  latest reads data written with the new one; FULL: both; ``*_TRANSITIVE``: against
  every live version; NONE: no check);
- ``POST /compatibility/subjects/{s}/versions/{v}``, ``GET/PUT/DELETE /config[/{s}]``,
  ``DELETE /subjects/{s}[/versions/{v}]`` (soft, then ``?permanent=true``);
- every error is a JSON body ``{"error_code": …, "message": …}``, never HTML.

Production points ``VIGIE_REGISTRY_URL`` at a real registry and the client path is the
same. State persists in a JSON file so ids stay stable across restarts.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import avro.errors
import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
LEVELS = (
    "NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE",
)  # fmt: skip
DEFAULT_LEVEL = "BACKWARD"


class RegistryError(Exception):
    """An error answer: HTTP status, Confluent error code, message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _canonical(schema: str) -> str:
    try:
        return json.dumps(json.loads(schema), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return schema


def parse_avro(schema: str) -> avro.schema.Schema:
    """Parse an Avro schema strictly, or raise RegistryError 422/42201 (as Confluent does)."""
    try:
        return avro.schema.parse(schema)
    except (avro.errors.AvroException, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RegistryError(422, 42201, f"Invalid schema: {exc}") from None


def incompatibilities(new: str, existing: list[str], level: str) -> list[str]:
    """Why ``new`` breaks ``level`` against the subject's live versions (oldest first);
    empty when compatible. Non-transitive levels check the latest version only."""
    if level == "NONE" or not existing:
        return []
    against = existing if level.endswith("_TRANSITIVE") else existing[-1:]
    new_schema = parse_avro(new)
    checker = ReaderWriterCompatibilityChecker()
    problems: list[str] = []
    for old in against:
        old_schema = parse_avro(old)
        pairs = []
        if level.startswith(("BACKWARD", "FULL")):
            pairs.append(("BACKWARD", new_schema, old_schema))  # new reads old data
        if level.startswith(("FORWARD", "FULL")):
            pairs.append(("FORWARD", old_schema, new_schema))  # old reads new data
        for direction, reader, writer in pairs:
            result = checker.get_compatibility(reader, writer)
            if result.compatibility is not SchemaCompatibilityType.compatible:
                where = ", ".join(sorted(result.locations))
                problems.extend(f"{direction} {msg} at {where}" for msg in sorted(result.messages))
    return problems


@dataclass
class Version:
    """One version of a subject."""

    version: int
    schema_id: int
    deleted: bool = False


class RegistryState:
    """Schemas by id, subject versions and compatibility levels, persisted to ``path``."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self.lock = threading.RLock()
        self.schemas: dict[int, dict[str, Any]] = {}
        self.subjects: dict[str, list[Version]] = {}
        self.level = DEFAULT_LEVEL
        self.subject_levels: dict[str, str] = {}
        if path is not None and path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            self.schemas = {int(k): v for k, v in data["schemas"].items()}
            for subject, versions in data["subjects"].items():
                # Files written before versions were objects hold a list of schema ids.
                self.subjects[subject] = [
                    Version(i + 1, v) if isinstance(v, int) else Version(**v) for i, v in enumerate(versions)
                ]
            self.level = data.get("level", DEFAULT_LEVEL)
            self.subject_levels = data.get("subject_levels", {})

    def save(self) -> None:
        if self._path is None:
            return
        data = {
            "schemas": self.schemas,
            "subjects": {s: [v.__dict__ for v in vs] for s, vs in self.subjects.items()},
            "level": self.level,
            "subject_levels": self.subject_levels,
        }
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self._path)

    def live(self, subject: str) -> list[Version]:
        return [v for v in self.subjects.get(subject, []) if not v.deleted]

    def live_or_404(self, subject: str) -> list[Version]:
        versions = self.live(subject)
        if not versions:
            raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
        return versions

    def version(self, subject: str, ref: str) -> Version:
        versions = self.live_or_404(subject)
        if ref in ("latest", "-1"):
            return versions[-1]
        if not ref.isdigit() or int(ref) < 1:
            raise RegistryError(422, 42202, "The specified version is not a valid version id.")
        for v in versions:
            if v.version == int(ref):
                return v
        raise RegistryError(404, 40402, f"Version {ref} not found.")

    def level_of(self, subject: str) -> str:
        return self.subject_levels.get(subject, self.level)

    def _find(self, schema: str, schema_type: str) -> int | None:
        canonical = _canonical(schema)
        for sid, entry in self.schemas.items():
            if entry["canonical"] == canonical and entry["schemaType"] == schema_type:
                return sid
        return None

    def lookup(self, subject: str, schema: str, schema_type: str) -> Version:
        versions = self.live_or_404(subject)
        sid = self._find(schema, schema_type)
        for v in versions:
            if v.schema_id == sid:
                return v
        raise RegistryError(404, 40403, "Schema not found")

    def register(self, subject: str, schema: str, schema_type: str) -> Version:
        """The subject's version of ``schema``: the existing one, or a new one if valid and
        compatible with the subject's level; the same schema gets the same id across subjects."""
        if schema_type != "AVRO":
            raise RegistryError(422, 42201, f"Invalid schema: schema type {schema_type} is not supported")
        parse_avro(schema)
        sid = self._find(schema, schema_type)
        live = self.live(subject)
        for v in live:
            if v.schema_id == sid:
                return v
        problems = incompatibilities(schema, [self.schemas[v.schema_id]["schema"] for v in live],
                                     self.level_of(subject))  # fmt: skip
        if problems:
            raise RegistryError(
                409, 409,
                f"Schema being registered is incompatible with an earlier schema for subject "
                f"\"{subject}\" ({self.level_of(subject)}): {'; '.join(problems)}",
            )  # fmt: skip
        if sid is None:
            sid = max(self.schemas, default=0) + 1
            self.schemas[sid] = {"schema": schema, "schemaType": schema_type, "canonical": _canonical(schema)}
        every = self.subjects.setdefault(subject, [])
        version = Version(max((v.version for v in every), default=0) + 1, sid)
        every.append(version)
        self.save()
        return version

    def delete_subject(self, subject: str, permanent: bool) -> list[int]:
        every = self.subjects.get(subject, [])
        if not every:
            raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
        if permanent:
            if any(not v.deleted for v in every):
                raise RegistryError(404, 40405, f"Subject '{subject}' was not deleted first before "
                                                "being permanently deleted")  # fmt: skip
            del self.subjects[subject]
            self.subject_levels.pop(subject, None)
            self.save()
            return [v.version for v in every]
        live = self.live(subject)
        if not live:
            raise RegistryError(404, 40404, f"Subject '{subject}' was soft deleted.")
        for v in live:
            v.deleted = True
        self.save()
        return [v.version for v in live]

    def delete_version(self, subject: str, ref: str, permanent: bool) -> int:
        every = self.subjects.get(subject, [])
        if not every:
            raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
        if permanent:
            target = next((v for v in every if ref.isdigit() and v.version == int(ref)), None)
            if target is None:
                raise RegistryError(404, 40402, f"Version {ref} not found.")
            if not target.deleted:
                raise RegistryError(404, 40407, f"Subject '{subject}' Version {ref} was not deleted "
                                                "first before being permanently deleted")  # fmt: skip
            every.remove(target)
        else:
            target = self.version(subject, ref)
            target.deleted = True
        self.save()
        return target.version


def _handler(state: RegistryState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return  # requests are not worth a log line each

        def _send(self, status: int, body: Any) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _entry(self, sid: int, subject: str | None = None, version: int | None = None) -> dict[str, Any]:
            entry = state.schemas[sid]
            body: dict[str, Any] = {"id": sid, "schema": entry["schema"]}
            if entry["schemaType"] != "AVRO":
                body["schemaType"] = entry["schemaType"]
            if subject is not None:
                body.update(subject=subject, version=version)
            return body

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                raise RegistryError(400, 400, "Unrecognized request body: not JSON") from None
            if not isinstance(body, dict):
                raise RegistryError(422, 422, "Unprocessable Entity: expected a JSON object")
            return body

        def _schema(self) -> tuple[str, str]:
            body = self._body()
            schema = body.get("schema")
            if not isinstance(schema, str):
                raise RegistryError(422, 42201, "Invalid schema: 'schema' must be a string")
            if body.get("references"):
                raise RegistryError(422, 42201, "Invalid schema: references are not supported here")
            return schema, str(body.get("schemaType", "AVRO"))

        def _dispatch(self, method: str) -> None:
            url = urlparse(self.path)
            path = unquote(url.path).rstrip("/") or "/"
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                with state.lock:
                    status, body = self._route(method, path, query)
            except RegistryError as err:
                status, body = err.status, {"error_code": err.code, "message": err.message}
            self._send(status, body)

        def _route(self, method: str, path: str, query: dict[str, str]) -> tuple[int, Any]:
            permanent = query.get("permanent", "false").lower() == "true"
            if path == "/subjects" and method == "GET":
                return 200, sorted(s for s in state.subjects if state.live(s))
            if m := re.fullmatch(r"/schemas/ids/(\d+)", path):
                if method != "GET":
                    raise RegistryError(405, 405, f"HTTP {method} not allowed on {path}")
                sid = int(m[1])
                if sid not in state.schemas:
                    raise RegistryError(404, 40403, "Schema not found")
                return 200, self._entry(sid)
            if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):
                if method == "GET":
                    return 200, [v.version for v in state.live_or_404(m[1])]
                if method == "POST":
                    v = state.register(m[1], *self._schema())
                    return 200, self._entry(v.schema_id, m[1], v.version)
            if m := re.fullmatch(r"/subjects/([^/]+)/versions/([^/]+)", path):
                if method == "GET":
                    v = state.version(m[1], m[2])
                    return 200, self._entry(v.schema_id, m[1], v.version)
                if method == "DELETE":
                    return 200, state.delete_version(m[1], m[2], permanent)
            if m := re.fullmatch(r"/subjects/([^/]+)", path):
                if method == "POST":
                    schema, schema_type = self._schema()
                    if schema_type == "AVRO":
                        parse_avro(schema)
                    v = state.lookup(m[1], schema, schema_type)
                    return 200, self._entry(v.schema_id, m[1], v.version)
                if method == "DELETE":
                    return 200, state.delete_subject(m[1], permanent)
            compat = re.fullmatch(r"/compatibility/subjects/([^/]+)/versions(?:/([^/]+))?", path)
            if compat and method == "POST":
                m = compat
                schema, _ = self._schema()
                parse_avro(schema)
                level = state.level_of(m[1])
                if m[2] is None:
                    live = state.live(m[1])
                    existing = [state.schemas[v.schema_id]["schema"] for v in live]
                else:
                    existing = [state.schemas[state.version(m[1], m[2]).schema_id]["schema"]]
                    level = level.removesuffix("_TRANSITIVE")
                problems = incompatibilities(schema, existing, level)
                body: dict[str, Any] = {"is_compatible": not problems}
                if query.get("verbose", "false").lower() == "true":
                    body["messages"] = problems
                return 200, body
            if m := re.fullmatch(r"/config(?:/([^/]+))?", path):
                return self._config(method, m[1], query)
            if method in ("GET", "POST", "PUT", "DELETE"):
                raise RegistryError(404 if method == "GET" else 405, 404 if method == "GET" else 405,
                                    f"HTTP {method} {path} is not an endpoint of this registry")  # fmt: skip
            raise RegistryError(405, 405, f"HTTP {method} not allowed")

        def _config(self, method: str, subject: str | None, query: dict[str, str]) -> tuple[int, Any]:
            if method == "GET":
                if subject is None:
                    return 200, {"compatibilityLevel": state.level}
                if subject in state.subject_levels:
                    return 200, {"compatibilityLevel": state.subject_levels[subject]}
                if query.get("defaultToGlobal", "false").lower() == "true":
                    return 200, {"compatibilityLevel": state.level}
                raise RegistryError(404, 40408, f"Subject '{subject}' does not have subject-level "
                                                "compatibility configured")  # fmt: skip
            if method == "PUT":
                level = str(self._body().get("compatibility", "")).upper()
                if level not in LEVELS:
                    raise RegistryError(422, 42203, "Invalid compatibility level. Valid values are "
                                                    + ", ".join(LEVELS))  # fmt: skip
                if subject is None:
                    state.level = level
                else:
                    state.subject_levels[subject] = level
                state.save()
                return 200, {"compatibility": level}
            if method == "DELETE":
                if subject is None:
                    previous, state.level = state.level, DEFAULT_LEVEL
                else:
                    if subject not in state.subject_levels:
                        raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
                    previous = state.subject_levels.pop(subject)
                state.save()
                return 200, {"compatibilityLevel": previous}
            raise RegistryError(405, 405, f"HTTP {method} not allowed on /config")

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

        def do_PATCH(self) -> None:
            self._dispatch("PATCH")

    return Handler


class RegistryServer:
    """The stand-in registry on a background thread."""

    def __init__(self, host: str, port: int, state_file: Path | None) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler(RegistryState(state_file)))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="registry", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RegistryServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
