"""Measure the stream stage alone on one core (not a test: a script, run by hand).

    .venv/bin/python -m tests.measure_stage [MARKS]        # CPU µs per mark, best of 5 passes
    SAMPLE=3000 REPS=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m tests.measure_stage             # set-up only
    SAMPLE=3000 REPS=2 valgrind ...                          # set-up and two passes

The clock of a shared virtual machine swings from one minute to the next; valgrind's instruction
count does not: (count with REPS=2 − count with REPS=0) / 2 / marks is the stage's cost per mark.
Simulated attendance sheets as `vigie bench` makes them, the registry in memory (the stage asks
it once per schema), a throw-away key.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka.schema_registry._sync.mock_schema_registry_client import MockSchemaRegistryClient
from pydantic import SecretStr

from schemas.contracts import Dataset, raw_contract
from schemas.wire import AvroCodec
from streams.curate import RawMessage
from vigie.runtime.bench import SheetFactory
from vigie.runtime.stage_pool import Stage
from vigie.settings import Settings


def main(marks: int, reps: int | None) -> None:
    """Build the stage, then time (or, with ``reps``, just run) passes over ``marks`` marks."""
    data_dir = Path(tempfile.mkdtemp(prefix="vigie-stage-")) / "vigie"
    settings = Settings(data_dir=data_dir, pseudonym_key=SecretStr("measure-" + "k" * 32),
                        registry_url="http://127.0.0.1:9")  # fmt: skip
    codec = AvroCodec(MockSchemaRegistryClient({"url": "mock://measure"}))
    sheets = SheetFactory(settings, 7)
    now = datetime.now(UTC)
    messages: list[RawMessage] = []
    count = 0
    while count < marks:
        topic, sheet = sheets.next(now.date(), now)
        count += len(sheet["marks"])
        value = codec.encode(raw_contract(Dataset.ATTENDANCE), sheet)
        messages.append(RawMessage(topic, 0, len(messages), value))
    stage = Stage.from_settings(settings)
    object.__setattr__(stage, "codec", codec)  # the registry in memory, not over HTTP
    batch = settings.stream_batch_max

    def one_pass() -> None:
        stage.ctx.pseudonymizer._cached.cache_clear()  # type: ignore[attr-defined]  # as a new process
        for start in range(0, len(messages), batch):
            stage.run(messages[start : start + batch])

    if reps is not None:
        for _ in range(reps):
            one_pass()
        return
    one_pass()  # the classifier's cache and the codec's schemas, as in a running stage
    best = min(_timed(one_pass) for _ in range(5))
    print(f"{count:,} marks: {best * 1e6 / count:.1f} CPU µs per mark (best of 5 passes)")


def _timed(run: Callable[[], None]) -> float:
    started = time.process_time()
    run()
    return time.process_time() - started


if __name__ == "__main__":
    reps = os.environ.get("REPS")
    main(int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("SAMPLE", "30000")),
         int(reps) if reps is not None else None)  # fmt: skip
