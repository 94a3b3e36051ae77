"""Consent registry: which CSS consented to which dataset, for what and how long."""

from __future__ import annotations

import csv
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from schemas.contracts import Dataset

log = logging.getLogger(__name__)


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


class ConsentWatcher:
    """The consent registry, reloaded without restart when its file changes.

    The file's modification time and size are checked at most every ``check_every_s``
    seconds. A file that fails to parse leaves the previous registry in force (and is
    reported through ``last_error``): a typo in the consent file must not open the gate
    nor shut the whole network out.
    """

    def __init__(
        self, path: Path, check_every_s: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self._check_every_s = check_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self.registry = ConsentRegistry.load(path)
        self._stamp = self._file_stamp()
        self._checked_at = clock()
        self.last_error: str | None = None
        self.reloads = 0

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def current(self) -> ConsentRegistry:
        """The registry in force, reloading it first if the file changed."""
        now = self._clock()
        if now - self._checked_at < self._check_every_s:
            return self.registry
        with self._lock:
            self._checked_at = now
            stamp = self._file_stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self.registry = ConsentRegistry.load(self.path)
                except ConsentFileError as exc:
                    self.last_error = str(exc)
                    log.error("consent file not reloaded, previous consents stay in force: %s", exc)
                else:
                    self.last_error = None
                    self.reloads += 1
                    log.info("consent file reloaded: %d consents", len(self.registry.consents))
        return self.registry

    def allows(self, css: str, dataset: Dataset, on: date) -> bool:
        return self.current().allows(css, dataset, on)
