"""Where changes come from: SQL databases and file-drop folders."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from connectors.outbox import SourceRowState
from connectors.source_rows import Change


class SourceError(RuntimeError):
    """A source cannot be read right now (database down, table missing, query refused): one
    line naming the source and the cause, never a value of a row."""


@dataclass(frozen=True)
class Rejection:
    """A row (or a whole file) refused: where (line, when known) and why (column and rule)."""

    where: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        line = f", ligne {self.line}" if self.line is not None else ""
        return f"{self.where}{line}: {self.reason}"


@dataclass
class Poll:
    """What one look at a source found, and the state to commit with it."""

    changes: list[Change] = field(default_factory=list)
    upserts: list[tuple[str, SourceRowState]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    kv: dict[str, str] = field(default_factory=dict)
    # Runs after the outbox committed the poll (a dropped file moves to archive/ then).
    on_committed: Callable[[], None] | None = None
    skipped_rows: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    # A row was refused whose key could not be read: no deletion is inferred from this poll.
    hold_deletions: bool = False
    # A whole file refused (counted in the heartbeat's rejected files).
    rejected_files: int = 0

    def merge(self, other: Poll) -> None:
        """Take another poll's findings into this one."""
        self.changes += other.changes
        self.upserts += other.upserts
        self.deletes += other.deletes
        self.skipped_rows += other.skipped_rows
        self.rejections += other.rejections
        self.hold_deletions |= other.hold_deletions
        self.rejected_files += other.rejected_files


class Source(Protocol):
    """A source of changes for one dataset."""

    id: str
    source_system: str
    waiting: int  # items seen but not yet readable (a file still settling)

    def poll(self) -> Iterable[Poll]: ...

    def close(self) -> None: ...
