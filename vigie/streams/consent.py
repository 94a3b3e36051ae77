"""Consent registry: which CSS consented to which dataset, for what and how long."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from vigie.schemas.contracts import Dataset


class ConsentFileError(ValueError):
    """The consent file is missing or malformed."""


@dataclass(frozen=True)
class Consent:
    """One CSS's consent to one dataset."""

    css: str
    dataset: Dataset
    purpose: str
    valid_from: date
    valid_to: date | None
    retention_days: int

    def covers(self, on: date) -> bool:
        return self.valid_from <= on and (self.valid_to is None or on <= self.valid_to)


@dataclass(frozen=True)
class ConsentRegistry:
    """Consents keyed by (css, dataset)."""

    consents: dict[tuple[str, Dataset], Consent]

    def allows(self, css: str, dataset: Dataset, on: date) -> bool:
        """True when ``css`` has a consent to ``dataset`` valid on ``on``."""
        consent = self.consents.get((css, dataset))
        return consent is not None and consent.covers(on)

    @classmethod
    def load(cls, path: Path) -> ConsentRegistry:
        """Read a consent CSV: css,dataset,purpose,valid_from,valid_to,retention_days."""
        try:
            with path.open(encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError as exc:
            raise ConsentFileError(f"cannot read consent file {path}: {exc}") from exc
        consents: dict[tuple[str, Dataset], Consent] = {}
        for line, row in enumerate(rows, start=2):
            try:
                consent = Consent(
                    css=row["css"].strip(),
                    dataset=Dataset(row["dataset"].strip()),
                    purpose=row["purpose"].strip(),
                    valid_from=date.fromisoformat(row["valid_from"].strip()),
                    valid_to=date.fromisoformat(row["valid_to"]) if row["valid_to"].strip() else None,
                    retention_days=int(row["retention_days"]),
                )
            except (KeyError, ValueError, AttributeError) as exc:
                raise ConsentFileError(f"{path}:{line}: malformed consent row ({exc})") from exc
            consents[(consent.css, consent.dataset)] = consent
        return cls(consents)
