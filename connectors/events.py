"""Deterministic ids.

``record_key`` names a source row across its versions; ``event_id`` names one version
of it: the same source row version always gives the same id, so a re-sent event is
recognised (and replaced, not doubled) downstream, while a correction replaces the
previous version of its row.
"""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("6f1c1f4e-2b9a-4d0e-9a55-7669676965ca")


def record_key(css: str, source_system: str, dataset: str, source_key: str) -> str:
    """UUIDv5 of the source row's identity."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join((css, source_system, dataset, source_key))))


def event_id(css: str, source_system: str, dataset: str, source_key: str, row_version: str) -> str:
    """UUIDv5 of the source row version's identity."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join((css, source_system, dataset, source_key, row_version))))
