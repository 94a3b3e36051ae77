"""Motif d'absence: local code lists first, then free text through a keyword classifier.

The classifier tolerates case, missing accents and typos (rapidfuzz similarity on
words); below the confidence threshold the reason is ``inconnu``. Free text is
never forwarded: only the category leaves this module.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz import fuzz, process

CANONICAL_REASONS = (
    "maladie", "sante_rdv", "famille", "deuil", "activite_scolaire", "suspension",
    "transport_meteo", "voyage", "religieux_culturel", "personnel", "non_motivee", "inconnu",
)  # fmt: skip
UNKNOWN = "inconnu"
_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def normalize(text: str) -> str:
    """Lowercase, strip accents and punctuation."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join(_WORD.findall("".join(c for c in decomposed if not unicodedata.combining(c))))


@dataclass(frozen=True)
class Classification:
    """Outcome of mapping one motif d'absence."""

    category: str
    confidence: float
    mapped: bool


class AbsenceClassifier:
    """Maps a CSS's local absence code, or free text, to a canonical reason."""

    def __init__(
        self,
        local_codes: dict[str, dict[str, str]],
        keywords: dict[str, str],
        threshold: float = 0.8,
    ) -> None:
        self._local_codes = local_codes
        self._keywords = keywords
        self._phrases = [k for k in keywords if " " in k]
        self._words = [k for k in keywords if " " not in k]
        self._threshold = threshold

    @classmethod
    def from_dir(cls, mappings_dir: Path) -> AbsenceClassifier:
        """Load ``absence/<css>.csv`` code lists and ``absence_keywords.csv``."""
        local: dict[str, dict[str, str]] = {}
        for path in sorted((mappings_dir / "absence").glob("*.csv")):
            with path.open(encoding="utf-8", newline="") as f:
                local[path.stem] = {r["local_code"].strip().upper(): r["reason"] for r in csv.DictReader(f)}
        with (mappings_dir / "absence_keywords.csv").open(encoding="utf-8", newline="") as f:
            keywords = {normalize(r["keyword"]): r["reason"] for r in csv.DictReader(f)}
        for table in [keywords, *local.values()]:
            unknown = set(table.values()) - set(CANONICAL_REASONS)
            if unknown:
                raise ValueError(f"absence mappings use non-canonical reasons: {sorted(unknown)}")
        return cls(local, keywords)

    def classify_code(self, css: str, code: str) -> Classification:
        reason = self._local_codes.get(css, {}).get(code.strip().upper())
        if reason is None:
            return Classification(UNKNOWN, 0.0, False)
        return Classification(reason, 1.0, True)

    def classify_text(self, text: str) -> Classification:
        """Classify free text; never raises, unknown or empty text gives ``inconnu``."""
        norm = normalize(text)
        if not norm:
            return Classification(UNKNOWN, 0.0, False)
        for phrase in self._phrases:
            if phrase in norm:
                return Classification(self._keywords[phrase], 1.0, True)
        best_reason, best_score = UNKNOWN, 0.0
        for word in norm.split():
            # Short words must match exactly: fuzzy matching "ill" or "bus" misfires.
            if len(word) < 5:
                if word in self._keywords:
                    return Classification(self._keywords[word], 1.0, True)
                continue
            match = process.extractOne(word, self._words, scorer=fuzz.ratio)
            if match is not None and match[1] / 100 > best_score:
                best_reason, best_score = self._keywords[match[0]], match[1] / 100
        if best_score >= self._threshold:
            return Classification(best_reason, round(best_score, 3), True)
        return Classification(UNKNOWN, round(best_score, 3), False)

    def classify(self, css: str, code: str | None, text: str | None) -> Classification:
        """Local code first, then free text."""
        if code:
            by_code = self.classify_code(css, code)
            if by_code.mapped or not text:
                return by_code
        if text:
            return self.classify_text(text)
        return Classification(UNKNOWN, 0.0, False)
