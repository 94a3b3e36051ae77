"""Keyed, stable pseudonyms (HMAC-SHA256) and the generalization of birth dates."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path

from schemas.contracts import from_epoch_days

# Pseudonyms remembered (about 0.3 kB each). A network's marks interleave its ~1M students, so a
# student's next mark comes after ~1M others: the 262,144 this once held hit 1-8 % of lookups at
# 300k marks in `vigie bench`, for ~80 MB per stage process (issue 18). A small cache keeps the
# repeats that do come close together (one CSS's sheets of a period) at a bounded cost.
CACHE_SIZE = 16_384
_SHA256_BLOCK = 64  # bytes: HMAC pads or hashes the key to this


class PseudonymKeyError(ValueError):
    """The pseudonymization key is missing or unusable."""


@dataclass(frozen=True)
class Pseudonymizer:
    """HMAC-SHA256 of a stable local identifier under a secret key.

    The key never appears in ``repr`` or logs; ``key_id`` is stored beside each
    pseudonym so keys can rotate.
    """

    key: bytes = field(repr=False)
    key_id: str

    def __post_init__(self) -> None:
        if len(self.key) < 16:
            raise PseudonymKeyError("pseudonymization key must be at least 16 bytes")
        # A student appears on every period's sheet, every day: remember recent pseudonyms
        # (memory only, bounded) rather than recompute the HMAC each time.
        object.__setattr__(self, "_cached", lru_cache(maxsize=CACHE_SIZE)(self._compute))
        # HMAC's two keyed SHA-256 states (RFC 2104), computed once: copying them costs half
        # of what hmac.digest() does when it rebuilds them from the key on every call, and the
        # stage keys three ids per record (issue 18). Same bytes as hmac.digest (tested).
        block = self.key if len(self.key) <= _SHA256_BLOCK else hashlib.sha256(self.key).digest()
        block = block.ljust(_SHA256_BLOCK, b"\0")
        object.__setattr__(self, "_inner", hashlib.sha256(bytes(b ^ 0x36 for b in block)))
        object.__setattr__(self, "_outer", hashlib.sha256(bytes(b ^ 0x5C for b in block)))

    def _compute(self, css: str, kind: str, local_id: str) -> str:
        inner = self._inner.copy()  # type: ignore[attr-defined]
        inner.update(f"{kind}\x1f{css}\x1f{local_id}".encode())
        outer = self._outer.copy()  # type: ignore[attr-defined]
        outer.update(inner.digest())
        return outer.hexdigest()[:32]

    def pseudonym(self, css: str, kind: str, local_id: str) -> str:
        """Pseudonym of a person of ``kind`` (student, staff) known as ``local_id`` in ``css``."""
        return self._cached(css, kind, local_id)  # type: ignore[attr-defined]

    def keyed(self, css: str, kind: str, value: str) -> str:
        """Keyed id of anything else that could lead back to a person (``kind`` separates the
        uses: record, event, group). Not cached: event ids are seen about once each."""
        return self._compute(css, kind, value)

    def record_key(self, css: str, raw_record_key: str) -> str:
        """The source row's id after the stage: deterministic, so a correction still replaces
        its row, and useless without the key (the connector's id is a public UUIDv5 of the
        source key, which holds the local student number)."""
        return self._compute(css, "record", raw_record_key)

    def event_id(self, css: str, raw_event_id: str) -> str:
        """The event's id after the stage (a redelivery keeps its id, so it is deduplicated)."""
        return self._compute(css, "event", raw_event_id)


def derive_key_id(key: bytes) -> str:
    """A short public fingerprint of a key (SHA-256 of the key, not reversible)."""
    return "k" + hashlib.sha256(b"vigie-key-id\x00" + key).hexdigest()[:8]


def load_pseudonymizer(
    key: str | None, key_file: Path | None, key_id: str, fallback_file: Path | None
) -> Pseudonymizer:
    """Build the pseudonymizer from an explicit key, a key file, or (embedded runtime
    only) a random key generated once into ``fallback_file`` with mode 0600."""
    raw: bytes
    if key:
        raw = key.encode()
    elif key_file is not None:
        try:
            raw = key_file.read_bytes().strip()
        except OSError as exc:
            raise PseudonymKeyError(f"cannot read pseudonymization key file {key_file}: {exc}") from exc
    elif fallback_file is not None:
        if not fallback_file.exists():
            fallback_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(fallback_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        raw = fallback_file.read_bytes().strip()
    else:
        raise PseudonymKeyError("no pseudonymization key: set VIGIE_PSEUDONYM_KEY or _KEY_FILE")
    return Pseudonymizer(raw, key_id or derive_key_id(raw))


STUDENT_AGE_BANDS = ((5, "0-4"), (9, "5-8"), (13, "9-12"), (16, "13-15"), (18, "16-17"))
STAFF_AGE_BANDS = ((25, "0-24"), (35, "25-34"), (45, "35-44"), (55, "45-54"))


def age_on(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def age_band(birth: date | None, on: date, bands: tuple[tuple[int, str], ...], top: str) -> str | None:
    """Generalize a birth date to an age band at date ``on`` (None stays None)."""
    if birth is None:
        return None
    age = age_on(birth, on)
    for upper, label in bands:
        if age < upper:
            return label
    return top


@lru_cache(maxsize=65_536)
def age_band_days(birth: int | None, on: int, bands: tuple[tuple[int, str], ...], top: str) -> str | None:
    """``age_band`` of plain dates (days since 1970-01-01, as the stage reads them). Cached: a
    network's students share a few thousand birth dates, and a batch has one date."""
    if birth is None:
        return None
    return age_band(from_epoch_days(birth), from_epoch_days(on), bands, top)
