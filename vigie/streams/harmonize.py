"""Harmonization: each CSS's local codes and scales → the network's vocabulary.

Mapping tables are data files under ``streams/mappings/`` kept in the repository;
their content hash is the mapping version stamped on every curated batch, so a
re-harmonized event (same ``event_id``, newer batch) replaces its warehouse row.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from vigie.streams.absence import AbsenceClassifier

BANDS = ("0-60", "61-74", "75-100")
PASS_MARK = 60.0
PASS_WORDS = {"S", "P", "PASS", "REUSSI", "RÉUSSI", "R+"}
FAIL_WORDS = {"R", "F", "FAIL", "ECHEC", "ÉCHEC", "E-"}


class HarmonizationError(ValueError):
    """A value that cannot be harmonized: the record is invalid, not unmapped."""


@dataclass(frozen=True)
class GradeResult:
    """A result on the network's scale."""

    percent: float | None
    band: str | None
    passed: bool


def band_of(percent: float) -> str:
    """Result band of a percent: '0-60', '61-74' or '75-100'."""
    rounded = round(percent)
    if rounded <= 60:
        return BANDS[0]
    if rounded <= 74:
        return BANDS[1]
    return BANDS[2]


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


class Harmonizer:
    """All per-CSS mapping tables, loaded once from ``mappings_dir``."""

    def __init__(self, mappings_dir: Path) -> None:
        self.absence = AbsenceClassifier.from_dir(mappings_dir)
        self._status = {
            r["local_code"].upper(): r["status"] for r in _read(mappings_dir / "attendance_status.csv")
        }
        self._letters = {
            r["letter"].upper(): float(r["percent"]) for r in _read(mappings_dir / "grade_letters.csv")
        }
        self._jobs = {
            (r["css"], r["local_code"].upper()): r["job_class"]
            for r in _read(mappings_dir / "job_classes.csv")
        }
        self._leaves = {
            r["local_code"].upper(): r["leave_type"] for r in _read(mappings_dir / "leave_types.csv")
        }
        digest = hashlib.sha256()
        for path in sorted(mappings_dir.rglob("*.csv")):
            if path.name == "consent.csv":
                continue
            digest.update(path.relative_to(mappings_dir).as_posix().encode())
            digest.update(path.read_bytes())
        self.version = "m" + digest.hexdigest()[:10]

    def status(self, code: str) -> str:
        """Canonical attendance status; an unknown status code is invalid."""
        status = self._status.get(code.strip().upper())
        if status is None:
            raise HarmonizationError(f"unknown attendance status code {code.strip()[:8]!r}")
        return status

    def grade(self, scale: str, result: str) -> GradeResult:
        """Convert a result written on a local scale to percent, band and pass."""
        value = result.strip().upper()
        if scale == "percent":
            try:
                percent = float(value.replace(",", ".").rstrip("%"))
            except ValueError:
                raise HarmonizationError(f"result {value[:8]!r} is not a percent") from None
            if not 0 <= percent <= 100:
                raise HarmonizationError(f"percent {percent} outside 0-100")
        elif scale == "letter":
            if value not in self._letters:
                raise HarmonizationError(f"unknown letter grade {value[:4]!r}")
            percent = self._letters[value]
        elif scale == "pass_fail":
            if value in PASS_WORDS:
                return GradeResult(None, None, True)
            if value in FAIL_WORDS:
                return GradeResult(None, None, False)
            raise HarmonizationError(f"unknown pass/fail result {value[:8]!r}")
        else:
            raise HarmonizationError(f"unknown grading scale {scale[:16]!r}")
        return GradeResult(percent, band_of(percent), percent >= PASS_MARK)

    def job_class(self, css: str, code: str) -> str:
        key = code.strip().upper()
        return self._jobs.get((css, key)) or self._jobs.get(("*", key)) or "inconnu"

    def leave_type(self, code: str | None) -> str | None:
        if code is None:
            return None
        return self._leaves.get(code.strip().upper(), "autre")
