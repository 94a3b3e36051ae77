"""Train (or find) the session's motif model in a model cache: ``python -m tests.session_model DIR``.

Run by ``make test`` beside ruff and mypy, which leave a core idle, and by ``tests/conftest.py``
before the first test (a cache hit when make has trained it). In a process of its own, as `vigie
up` does: the pytest controller stays small."""

from __future__ import annotations

import sys
from pathlib import Path

from vigie.runtime.stage_child import prepare_model
from vigie.settings import Settings


def main(argv: list[str]) -> int:
    """Load the project's corpus's model into the cache directory ``argv[0]``, training it on a miss."""
    if len(argv) != 1:
        print("usage: python -m tests.session_model MODEL_CACHE_DIR", file=sys.stderr)
        return 2
    cache = Path(argv[0])
    cache.mkdir(parents=True, exist_ok=True)
    prepare_model(Settings().mappings_dir, cache)  # what `vigie up` runs apart before its worker
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
