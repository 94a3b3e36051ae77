"""Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro body.

Encoding uses fastavro's schemaless writer (byte-identical to confluent-kafka's
AvroSerializer, and faster); schema ids come from a Confluent-compatible registry
through confluent-kafka's own client, so the production code path is the same
against Confluent, Karapace or the embedded stand-in.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import struct
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import fastavro
import httpx

with warnings.catch_warnings():
    # The registry client imports authlib, which warns about its own httpx integration
    # at import time: noise for a user, nothing Vigie can act on. authlib installs an
    # "always" filter for its warnings when imported, so ours must be added after it.
    with contextlib.suppress(ImportError):
        import authlib.deprecate  # noqa: F401
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas.contracts import Contract, without_logical_types

MAGIC = 0
_HEADER = struct.Struct(">bI")
log = logging.getLogger(__name__)
_T = TypeVar("_T")


_DEFINITE_STATUSES = (400, 404, 409, 422)


def registry_unavailable(exc: BaseException) -> bool:
    """True when a registry call failed because the registry is down, overloaded or refuses our
    credentials (wait and retry: the data is fine), False when the registry itself gave a definite
    answer about the schema (unknown id, incompatible, invalid: never retried)."""
    if isinstance(exc, SchemaRegistryError):
        # A registry's own answer carries its error code; a bare 404 from a proxy or a wrong URL
        # (code -1) is not a verdict on the data. 401/403 is configuration: wait for the fix.
        answered = exc.error_code != SchemaRegistryError.UNKNOWN
        return not (answered and exc.http_status_code in _DEFINITE_STATUSES)
    # Connection refused, reset, timed out, DNS: the registry did not answer.
    return isinstance(exc, httpx.TransportError | OSError | TimeoutError)


class WireFormatError(ValueError):
    """The bytes are not a Confluent-framed Avro message we can read."""


def encode_body(contract: Contract, record: dict[str, Any], plain: bool = False) -> bytes:
    """The Avro body alone: needs no registry (a connector's outbox stores these). With
    ``plain``, timestamps are given as epoch milliseconds and dates as days (same bytes)."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, contract.plain if plain else contract.parsed, record)
    return buf.getvalue()


def as_plain(contract: Contract, record: dict[str, Any]) -> dict[str, Any]:
    """A record of ``contract`` with its timestamps and dates as plain numbers, as the stream
    stage reads it (through Avro: exactly what decoding with ``plain`` gives)."""
    body = io.BytesIO(encode_body(contract, record))
    plain = fastavro.schemaless_reader(body, contract.plain, None)
    assert isinstance(plain, dict)
    return plain


def as_logical(contract: Contract, record: dict[str, Any]) -> dict[str, Any]:
    """The reverse of ``as_plain``: plain numbers back to datetimes and dates."""
    body = io.BytesIO(encode_body(contract, record, plain=True))
    logical = fastavro.schemaless_reader(body, contract.parsed, None)
    assert isinstance(logical, dict)
    return logical


class AvroCodec:
    """Encode and decode Confluent-framed Avro with ids from a schema registry."""

    def __init__(self, registry: SchemaRegistryClient, retry_max_backoff_s: float = 10.0) -> None:
        self._registry = registry
        self._retry_max_backoff_s = retry_max_backoff_s
        self._ids: dict[str, int] = {}
        self._writers: dict[int, Any] = {}
        self._plain_writers: dict[int, Any] = {}
        self._writer_json: dict[int, Any] = {}
        self._same: dict[tuple[int, str], bool] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(
        cls, url: str, config: dict[str, str] | None = None, retry_max_backoff_s: float = 10.0
    ) -> AvroCodec:
        """A codec on the registry at ``url``; ``config`` passes client settings through."""
        return cls(SchemaRegistryClient({"url": url, **(config or {})}), retry_max_backoff_s)

    def _with_retry(self, what: str, call: Callable[[], _T]) -> _T:
        """``call()``, retried with capped exponential backoff while the registry is unavailable:
        data that is decodable must wait for the registry, never be dead-lettered for its absence.
        Definite answers (unknown id, incompatible or invalid schema) raise at once."""
        delay = 0.1
        while True:
            try:
                return call()
            except Exception as exc:
                if not registry_unavailable(exc):
                    raise
                log.warning("schema registry unavailable (%s: %s); retrying in %.1f s",
                            what, type(exc).__name__, delay)  # fmt: skip
                time.sleep(delay)
                delay = min(delay * 2, self._retry_max_backoff_s)

    def schema_id(self, contract: Contract) -> int:
        """Register the contract (idempotent) and return its id."""
        with self._lock:
            if contract.subject not in self._ids:
                sid = self._with_retry("register", lambda: self._registry.register_schema(
                    contract.subject, Schema(contract.schema_str, "AVRO")
                ))  # fmt: skip
                self._ids[contract.subject] = sid
                # The id's schema is known now: decoding our own output never asks the registry.
                self._writer_json.setdefault(sid, json.loads(contract.schema_str))
                self._writers.setdefault(sid, contract.parsed)
            return self._ids[contract.subject]

    def encode(self, contract: Contract, record: dict[str, Any], plain: bool = False) -> bytes:
        """Framed message: header with the registry's schema id, then the Avro body (``plain``:
        see ``encode_body``)."""
        return self.frame(contract, encode_body(contract, record, plain))

    def frame(self, contract: Contract, body: bytes) -> bytes:
        """Prefix an Avro body (see ``encode_body``) with the Confluent header."""
        return _HEADER.pack(MAGIC, self.schema_id(contract)) + body

    def _writer_schema(self, schema_id: int) -> Any:
        writer = self._writers.get(schema_id)
        if writer is None:
            schema = self._with_retry("get schema", lambda: self._registry.get_schema(schema_id))
            self._writer_json[schema_id] = json.loads(schema.schema_str or "null")
            writer = fastavro.parse_schema(self._writer_json[schema_id])
            self._writers[schema_id] = writer
        return writer

    def _plain_writer_schema(self, schema_id: int) -> Any:
        writer = self._plain_writers.get(schema_id)
        if writer is None:
            self._writer_schema(schema_id)
            writer = fastavro.parse_schema(without_logical_types(self._writer_json[schema_id]))
            self._plain_writers[schema_id] = writer
        return writer

    def _resolution(self, schema_id: int, reader: Contract, plain: bool) -> Any:
        """The reader schema to resolve against, or None when the writer's is the same
        (schema resolution costs a fifth of decoding time for nothing then)."""
        key = (schema_id, reader.full_name)
        same = self._same.get(key)
        if same is None:
            same = self._same[key] = self._writer_json[schema_id] == json.loads(reader.schema_str)
        if same:
            return None
        return reader.plain if plain else reader.parsed

    def decode(self, data: bytes | None, reader: Contract, plain: bool = False) -> dict[str, Any]:
        """Decode a framed message into a record of the reader contract; with ``plain``,
        timestamps stay epoch milliseconds and dates days since 1970-01-01.

        Raises WireFormatError for anything that is not readable as that contract,
        so the caller can dead-letter it instead of crashing.
        """
        if data is None or len(data) < _HEADER.size:
            raise WireFormatError("message too short for the Confluent wire format")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise WireFormatError("magic byte is not that of the Confluent wire format")
        try:
            # Waits while the registry is unavailable.
            writer = self._plain_writer_schema(schema_id) if plain else self._writer_schema(schema_id)
        except Exception as exc:
            raise WireFormatError("schema id unknown to the registry") from exc
        try:
            reader_schema = self._resolution(schema_id, reader, plain)
            record = fastavro.schemaless_reader(io.BytesIO(data[_HEADER.size :]), writer, reader_schema)
        except Exception as exc:
            # Names the contract, never a byte of the body (the reason reaches the warehouse).
            raise WireFormatError(f"Avro body unreadable as {reader.full_name}") from exc
        if not isinstance(record, dict):
            raise WireFormatError("Avro body is not a record")
        return record
