"""What a stage process (spawned by ``stage_pool.StagePool``) runs: build its stage once, then
curate the batches it is given.

This module imports nothing heavy at the top on purpose: it is the first Vigie module a
spawned child loads, so that ``init`` can refuse the libraries a stage process never uses
before the stage's own modules are imported. scikit-learn (the motif d'absence model) imports
pandas, and pandas imports pyarrow, when they are installed; refused, they cost nothing, where
importing them cost each stage process ~63 MB of resident memory (issue 18). The warehouse
engine (chDB) and Faust belong to the worker alone.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
import time
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
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


def init(settings: Settings) -> None:
    """The pool's initializer: refuse what a stage never needs, then build the stage."""
    global _STAGE
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


def loaded(names: Sequence[str] = NOT_IN_STAGE) -> list[str]:
    """Which of ``names`` this process imported (the tests ask a stage process)."""
    return [n for n in names if n in sys.modules]
