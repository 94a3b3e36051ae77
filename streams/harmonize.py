"""Harmonization: each CSS's local codes and scales → the network's vocabulary.

Mapping tables are data files under ``streams/mappings/`` kept in the repository;
their content hash is the mapping version stamped on every curated batch, so a
re-harmonized event (same ``event_id``, newer batch) replaces its warehouse row.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.absence import AbsenceClassifier
from streams.rejection import Reason, RecordRefused, Stage, reason

BANDS = ("0-60", "61-74", "75-100")
PASS_MARK = 60.0
PASS_WORDS = {"S", "P", "PASS", "REUSSI", "RÉUSSI", "R+"}
FAIL_WORDS = {"R", "F", "FAIL", "ECHEC", "ÉCHEC", "E-"}


def _refuse(code: Reason, field: str, rule: str) -> RecordRefused:
    return RecordRefused(Stage.HARMONIZE, code, reason(field, rule))


@dataclass(frozen=True)
class Unmapped:
    """A local code or text that no mapping covers: reported to data stewards, per CSS.
    Never stored in the warehouse."""

    css: str
    dataset: str
    field: str
    value: str


UNMAPPED_VALUE_MAX = 80


@dataclass(frozen=True)
class GradeResult:
    """A result on the network's scale."""

    percent: float | None
    band: str | None
    passed: bool


# Local spellings of the breakdowns the ministry reports student success by.
LANGUAGE_GROUPS = {
    **dict.fromkeys(("francophone", "fr", "français", "francais", "french"), "francophone"),
    **dict.fromkeys(("anglophone", "en", "anglais", "english"), "anglophone"),
    **dict.fromkeys(("allophone", "autre", "other", "allo"), "allophone"),
}
IMMIGRATION = {
    **dict.fromkeys(("1", "1re", "1ere", "première", "premiere", "first", "1st"), "1re"),
    **dict.fromkeys(("2", "2e", "deuxième", "deuxieme", "second", "2nd"), "2e"),
    **dict.fromkeys(("3", "3+", "3e", "3e+", "troisième", "troisieme", "third", "3rd+"), "3e+"),
}


def band_of(percent: float) -> str:
    """Result band of a percent rounded half up, as results are (74.5 → '75-100'): '0-60',
    '61-74' or '75-100'. Python's round() would round half to even (74.5 → 74)."""
    rounded = math.floor(percent + 0.5)
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

    def __init__(self, mappings_dir: Path, model_cache: Path | None = None) -> None:
        self.absence = AbsenceClassifier.from_dir(mappings_dir, model_cache=model_cache)
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
        self._subjects = {
            (r["css"], r["local_code"].upper()): r["subject"] for r in _read(mappings_dir / "subjects.csv")
        }
        self._competencies = {
            (r["css"], r["local_code"].upper()): r["competency"]
            for r in _read(mappings_dir / "competencies.csv")
        }
        digest = hashlib.sha256()
        for path in sorted(mappings_dir.rglob("*.csv")):
            if path.name == "consent.csv":
                continue
            digest.update(path.relative_to(mappings_dir).as_posix().encode())
            digest.update(path.read_bytes())
        digest.update(self.absence.fingerprint.encode())  # the model, its corpus, the stewards' texts
        self.version = "m" + digest.hexdigest()[:10]

    @staticmethod
    def _lookup(table: dict[tuple[str, str], str], css: str, code: str) -> str | None:
        key = code.strip().upper()
        return table.get((css, key)) or table.get(("*", key))

    def status(self, code: str) -> str:
        """Canonical attendance status; an unknown status code refuses the record."""
        status = self._status.get(code.strip().upper())
        if status is None:
            raise _refuse(Reason.UNKNOWN_STATUS, "status_code", "not in the attendance status mapping")
        return status

    def grade(self, scale: str, result: str) -> GradeResult:
        """Convert a result written on a local scale to percent, band and pass."""
        value = result.strip().upper()
        if scale == "percent":
            try:
                percent = float(value.replace(",", ".").rstrip("%"))
            except ValueError:
                raise _refuse(Reason.INVALID_GRADE, "result", "not a number on the percent scale") from None
            if not 0 <= percent <= 100:
                raise _refuse(Reason.INVALID_GRADE, "result", "percent outside zero to one hundred")
        elif scale == "letter":
            if value not in self._letters:
                raise _refuse(Reason.INVALID_GRADE, "result", "not in the letter grade mapping")
            percent = self._letters[value]
        elif scale == "pass_fail":
            if value in PASS_WORDS:
                return GradeResult(None, None, True)
            if value in FAIL_WORDS:
                return GradeResult(None, None, False)
            raise _refuse(Reason.INVALID_GRADE, "result", "not a pass or fail word")
        else:
            raise _refuse(Reason.INVALID_GRADE, "scale", "not percent, letter or pass_fail")
        return GradeResult(percent, band_of(percent), percent >= PASS_MARK)

    def job_class(self, css: str, code: str) -> str | None:
        return self._lookup(self._jobs, css, code)

    def leave_type(self, code: str | None) -> str | None:
        if code is None:
            return None
        return self._leaves.get(code.strip().upper(), "autre")

    def subject(self, css: str, code: str) -> str | None:
        return self._lookup(self._subjects, css, code)

    def competency(self, css: str, code: str) -> str | None:
        return self._lookup(self._competencies, css, code)

    # -- one record of each dataset -----------------------------------------------------
    def prepare_attendance(self, css: str, records: list[dict[str, Any]]) -> None:
        """Before ``attendance`` on each: the batch's new motifs meet the model together."""
        self.absence.prepare(css, [
            (rec["absence_code"], rec["absence_text"]) for rec in records
            if rec["absence_text"] and self._status.get(rec["status_code"].strip().upper()) != "present"
        ])  # fmt: skip  (an unknown status refuses its record later, in ``attendance``)

    def attendance(self, css: str, rec: dict[str, Any], unmapped: list[Unmapped]) -> dict[str, Any]:
        """Status and motif d'absence; an unmapped motif becomes 'inconnu' and is reported."""
        status = self.status(rec["status_code"])
        if status == "present":
            return {"status": status, "absence_reason": None, "reason_mapped": True}
        code, text = rec["absence_code"], rec["absence_text"]
        if status != "absent" and not (code or "").strip() and not (text or "").strip():
            # A late arrival or early departure often has no motif: nothing to map.
            return {"status": status, "absence_reason": None, "reason_mapped": True}
        found = self.absence.classify(css, code, text)  # cached per distinct text
        if not found.mapped:
            for name, value in (("absence_code", code), ("absence_text", text)):
                if value and value.strip():
                    unmapped.append(Unmapped(css, "attendance", name, value.strip()[:UNMAPPED_VALUE_MAX]))
        return {"status": status, "absence_reason": found.category, "reason_mapped": found.mapped}

    def grades(
        self, css: str, batch: dict[str, Any], rec: dict[str, Any], unmapped: list[Unmapped]
    ) -> dict[str, Any]:
        """Result on the network's scale, subject and competency codes."""
        result = self.grade(batch["scale"], rec["result"])
        codes = {}
        for name, lookup in (("subject_code", self.subject), ("competency_code", self.competency)):
            local = batch[name]
            canonical = lookup(css, local)
            if canonical is None:
                unmapped.append(Unmapped(css, "grades", name, local.strip()[:UNMAPPED_VALUE_MAX]))
            codes[name] = canonical or "inconnu"
        sex = (rec["sex"] or "").strip().upper()[:1]
        groups = {}
        for name, vocabulary in (("language_group", LANGUAGE_GROUPS), ("immigration", IMMIGRATION)):
            local = (rec.get(name) or "").strip()
            groups[name] = vocabulary.get(local.lower()) if local else None
            if local and groups[name] is None:
                unmapped.append(Unmapped(css, "grades", name, local[:UNMAPPED_VALUE_MAX]))
        return {
            **codes,
            **groups,
            "intervention_plan": rec.get("intervention_plan"),
            "sex": sex if sex in {"F", "M", "X"} else None,
            "result_percent": result.percent,
            "result_band": result.band,
            "passed": result.passed,
        }

    def staff(self, css: str, rec: dict[str, Any], unmapped: list[Unmapped]) -> dict[str, Any]:
        """Job class and leave type."""
        job_class = self.job_class(css, rec["job_code"])
        if job_class is None:
            unmapped.append(Unmapped(css, "staff", "job_code", rec["job_code"].strip()[:UNMAPPED_VALUE_MAX]))
        leave = rec["leave_type"]
        leave_type = self.leave_type(leave)
        if leave is not None and leave_type == "autre":
            unmapped.append(Unmapped(css, "staff", "leave_type", leave.strip()[:UNMAPPED_VALUE_MAX]))
        return {"job_class": job_class or "inconnu", "leave_type": leave_type}
