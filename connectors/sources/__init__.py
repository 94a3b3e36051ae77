"""Where changes come from: SQL databases and file-drop folders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from connectors.outbox import SourceRowState
from connectors.source_rows import Change


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


class Source(Protocol):
    """A source of changes for one dataset."""

    id: str
    source_system: str
    waiting: int  # items seen but not yet readable (a file still settling)

    def poll(self) -> list[Poll]: ...

    def close(self) -> None: ...
