"""What a stage process (spawned by ``stage_pool.StagePool``) runs: build its stage once, then
curate the batches it is given; and the one-off training of the motif d'absence model.

This module imports nothing heavy at the top on purpose: it is the first Vigie module a
spawned child loads, so that ``init`` can refuse the libraries a stage process never uses
before the stage's own modules are imported: pandas and pyarrow (scikit-learn imported them
when the stage trained its model: ~63 MB per stage process, issue 18), the warehouse engine
(chDB) and Faust, which belong to the worker alone. A guard: a change that would load one of
them in every stage process fails the tests instead of growing each process.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
import threading
import time
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.curate import RawMessage, StageOutput
    from vigie.runtime.stage_pool import Stage
    from vigie.settings import Settings

# Top-level packages a stage process must never load (each is optional for what it does load).
NOT_IN_STAGE = ("pandas", "pyarrow", "chdb", "faust")


class _Refuse(importlib.abc.MetaPathFinder):
    """Makes ``import X`` fail, for X in ``names``, as if X were not installed: libraries that
    import it optionally (``try: import pandas``) carry on without it."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"{fullname} is not used by a stage process", name=fullname)
        return None


def refuse_imports(names: Sequence[str] = NOT_IN_STAGE) -> None:
    """Refuse ``names`` from now on in this process (those already imported are kept)."""
    if not any(isinstance(f, _Refuse) for f in sys.meta_path):
        sys.meta_path.insert(0, _Refuse([n for n in names if n not in sys.modules]))


_STAGE: Stage | None = None
PARENT_CHECK_S = 1.0


def exit_with_parent(every_s: float = PARENT_CHECK_S) -> None:
    """End this process when the one that started it is gone. A worker killed outright
    (SIGKILL, the kernel's out-of-memory killer) otherwise leaves its stage processes
    behind, ~120 MB each, waiting forever on a queue nobody writes to (seen: three after
    the SIGKILL test). Polling the parent id, not PR_SET_PDEATHSIG: that signal follows
    the parent *thread* that spawned the child, and the pool spawns from its own threads."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def init(settings: Settings) -> None:
    """The pool's initializer: refuse what a stage never needs, then build the stage."""
    global _STAGE
    exit_with_parent()
    refuse_imports()
    from vigie.runtime.stage_pool import Stage

    _STAGE = Stage.from_settings(settings)


def run(messages: list[RawMessage]) -> StageOutput:
    assert _STAGE is not None, "stage process not initialized"
    return _STAGE.run(messages)


def ping() -> int:
    # Long enough that every child is asked while the others are busy.
    time.sleep(0.05)
    return os.getpid()


def prepare_model(mappings_dir: Path, model_cache: Path) -> None:
    """Train the motif d'absence model into ``model_cache`` unless it is there already: run
    apart, so that scikit-learn and the training never stay resident in the worker."""
    from streams.absence_model import load_model

    load_model(mappings_dir, model_cache)


def loaded(names: Sequence[str] = NOT_IN_STAGE) -> list[str]:
    """Which of ``names`` this process imported (the tests ask a stage process)."""
    return [n for n in names if n in sys.modules]
