"""A Confluent-compatible schema registry stand-in for the embedded runtime.

No registry ships on PyPI, so the embedded runtime serves the few endpoints
confluent-kafka's ``SchemaRegistryClient`` uses: register, lookup, get by id,
list subjects and versions. Production points ``VIGIE_REGISTRY_URL`` at a real
registry (Confluent, Karapace, Apicurio ccompat) and the client path is the same.
Schemas persist in a JSON file so ids stay stable across restarts.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def _canonical(schema: str) -> str:
    try:
        return json.dumps(json.loads(schema), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return schema


class RegistryState:
    """Schemas by id and subject versions, persisted to ``path``."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self.schemas: dict[int, dict[str, Any]] = {}
        self.subjects: dict[str, list[int]] = {}
        if path is not None and path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            self.schemas = {int(k): v for k, v in data["schemas"].items()}
            self.subjects = data["subjects"]

    def _save(self) -> None:
        if self._path is not None:
            tmp = self._path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"schemas": self.schemas, "subjects": self.subjects}))
            tmp.replace(self._path)

    def _find(self, schema: str, schema_type: str) -> int | None:
        canonical = _canonical(schema)
        for sid, entry in self.schemas.items():
            if entry["canonical"] == canonical and entry["schemaType"] == schema_type:
                return sid
        return None

    def register(self, subject: str, schema: str, schema_type: str) -> tuple[int, int]:
        """Return (id, version); the same schema gets the same id across subjects."""
        with self._lock:
            sid = self._find(schema, schema_type)
            if sid is None:
                sid = max(self.schemas, default=0) + 1
                self.schemas[sid] = {
                    "schema": schema,
                    "schemaType": schema_type,
                    "canonical": _canonical(schema),
                }
            versions = self.subjects.setdefault(subject, [])
            if sid not in versions:
                versions.append(sid)
                self._save()
            return sid, versions.index(sid) + 1

    def lookup(self, subject: str, schema: str, schema_type: str) -> tuple[int, int] | None:
        with self._lock:
            sid = self._find(schema, schema_type)
            versions = self.subjects.get(subject, [])
            if sid is None or sid not in versions:
                return None
            return sid, versions.index(sid) + 1


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

        def _not_found(self, code: int, message: str) -> None:
            self._send(404, {"error_code": code, "message": message})

        def _entry(self, sid: int, subject: str | None = None, version: int | None = None) -> dict[str, Any]:
            entry = state.schemas[sid]
            body: dict[str, Any] = {"id": sid, "schema": entry["schema"]}
            if entry["schemaType"] != "AVRO":
                body["schemaType"] = entry["schemaType"]
            if subject is not None:
                body.update(subject=subject, version=version)
            return body

        def do_GET(self) -> None:
            path = unquote(urlparse(self.path).path).rstrip("/")
            if path == "/subjects":
                return self._send(200, sorted(state.subjects))
            if m := re.fullmatch(r"/schemas/ids/(\d+)", path):
                sid = int(m[1])
                if sid not in state.schemas:
                    return self._not_found(40403, "Schema not found")
                return self._send(200, self._entry(sid))
            if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):
                if m[1] not in state.subjects:
                    return self._not_found(40401, "Subject not found")
                return self._send(200, list(range(1, len(state.subjects[m[1]]) + 1)))
            if m := re.fullmatch(r"/subjects/([^/]+)/versions/(latest|\d+)", path):
                versions = state.subjects.get(m[1])
                if not versions:
                    return self._not_found(40401, "Subject not found")
                v = len(versions) if m[2] == "latest" else int(m[2])
                if not 1 <= v <= len(versions):
                    return self._not_found(40402, "Version not found")
                return self._send(200, self._entry(versions[v - 1], m[1], v))
            if path == "/config":
                return self._send(200, {"compatibilityLevel": "BACKWARD"})
            return self._not_found(404, f"unsupported endpoint {path}")

        def do_POST(self) -> None:
            path = unquote(urlparse(self.path).path).rstrip("/")
            try:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                schema, schema_type = body["schema"], body.get("schemaType", "AVRO")
            except (ValueError, KeyError):
                return self._send(422, {"error_code": 42201, "message": "Invalid schema"})
            if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):
                sid, version = state.register(m[1], schema, schema_type)
                return self._send(200, self._entry(sid, m[1], version))
            if m := re.fullmatch(r"/subjects/([^/]+)", path):
                found = state.lookup(m[1], schema, schema_type)
                if found is None:
                    return self._not_found(40403, "Schema not found")
                return self._send(200, self._entry(found[0], m[1], found[1]))
            return self._not_found(404, f"unsupported endpoint {path}")

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
