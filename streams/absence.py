"""Motif d'absence: local code lists first, then free text through a keyword classifier.

The classifier tolerates case, missing accents, punctuation and typos: phrases match
on word boundaries, single words exactly or (five letters and more) by rapidfuzz
similarity. When a text names several reasons ("vacances en famille", "deuil dans la
famille"), the more specific reason wins by ``PRIORITY``. Below the confidence
threshold the reason is ``inconnu``. Free text never leaves this module: only the
category does.
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
# Most specific first: "deuil dans la famille" is a deuil, "voyage scolaire" a school activity.
PRIORITY = (
    "deuil", "suspension", "sante_rdv", "activite_scolaire", "maladie", "religieux_culturel",
    "voyage", "transport_meteo", "famille", "non_motivee", "personnel",
)  # fmt: skip
# Shorter words only match exactly: "bus" must not catch "bug", nor "ill" "all".
FUZZY_MIN_LENGTH = 5
_WORD = re.compile(r"[a-z0-9]+")


def normalize(text: str) -> str:
    """Casefold, strip accents, and keep words only ("Rendez-vous d'Éric!" → "rendez vous d eric")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join(_WORD.findall("".join(c for c in decomposed if not unicodedata.combining(c))))


@dataclass(frozen=True)
class Classification:
    """Outcome of mapping one motif d'absence."""

    category: str
    confidence: float
    mapped: bool


UNMAPPED = Classification(UNKNOWN, 0.0, False)


class AbsenceClassifier:
    """Maps a CSS's local absence code, or free text, to a canonical reason."""

    def __init__(
        self, local_codes: dict[str, dict[str, str]], keywords: dict[str, str], threshold: float = 0.8
    ) -> None:
        unknown = {r for table in [keywords, *local_codes.values()] for r in table.values()} - set(
            CANONICAL_REASONS
        )
        if unknown:
            raise ValueError(f"absence mappings use non-canonical reasons: {sorted(unknown)}")
        self._local_codes = local_codes
        self._keywords = keywords
        self._phrases = [k for k in keywords if " " in k]
        self._words = {k: r for k, r in keywords.items() if " " not in k}
        self._fuzzy_words = [k for k in self._words if len(k) >= FUZZY_MIN_LENGTH]
        self._rank = {reason: i for i, reason in enumerate(PRIORITY)}
        self.threshold = threshold

    @classmethod
    def from_dir(cls, mappings_dir: Path, threshold: float = 0.8) -> AbsenceClassifier:
        """Load ``absence/<css>.csv`` code lists and ``absence_keywords.csv``."""
        local: dict[str, dict[str, str]] = {}
        for path in sorted((mappings_dir / "absence").glob("*.csv")):
            with path.open(encoding="utf-8", newline="") as f:
                local[path.stem] = {
                    r["local_code"].strip().upper(): r["reason"].strip() for r in csv.DictReader(f)
                }
        with (mappings_dir / "absence_keywords.csv").open(encoding="utf-8", newline="") as f:
            keywords = {normalize(r["keyword"]): r["reason"].strip() for r in csv.DictReader(f)}
        return cls(local, keywords, threshold)

    def knows_css(self, css: str) -> bool:
        """True when the CSS has a local code list."""
        return css in self._local_codes

    def classify_code(self, css: str, code: str) -> Classification:
        reason = self._local_codes.get(css, {}).get(code.strip().upper())
        return UNMAPPED if reason is None else Classification(reason, 1.0, True)

    def classify_text(self, text: str) -> Classification:
        """Classify free text; never raises: unknown or empty text gives ``inconnu``."""
        norm = normalize(text)
        if not norm:
            return UNMAPPED
        padded = f" {norm} "
        found: dict[str, float] = {}
        for phrase in self._phrases:
            if f" {phrase} " in padded:
                found[self._keywords[phrase]] = 1.0
        best_fuzzy = 0.0
        for word in norm.split():
            reason = self._words.get(word)
            if reason is not None:
                found[reason] = 1.0
                continue
            if len(word) < FUZZY_MIN_LENGTH or not self._fuzzy_words:
                continue
            match = process.extractOne(word, self._fuzzy_words, scorer=fuzz.ratio)
            if match is None:
                continue
            score = match[1] / 100
            best_fuzzy = max(best_fuzzy, score)
            if score >= self.threshold:
                reason = self._words[match[0]]
                found[reason] = max(found.get(reason, 0.0), score)
        if not found:
            return Classification(UNKNOWN, round(best_fuzzy, 3), False)
        category = min(found, key=lambda r: self._rank.get(r, len(PRIORITY)))
        return Classification(category, round(found[category], 3), True)

    def classify(self, css: str, code: str | None, text: str | None) -> Classification:
        """Local code first, then free text."""
        if code and code.strip():
            by_code = self.classify_code(css, code)
            if by_code.mapped or not text:
                return by_code
        if text:
            return self.classify_text(text)
        return UNMAPPED
