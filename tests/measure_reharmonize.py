"""Measure `vigie reharmonize` on the embedded stack (not a test: a script, run by hand).

    .venv/bin/python -m tests.measure_reharmonize 300000   # marks; add a process count (default 2)

Starts `vigie up` on a throw-away data directory, loads N attendance marks as `vigie bench`
does, waits until the warehouse holds them, then times `vigie reharmonize --since TODAY`
and the insertion of the replayed rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import httpx

from connectors.publisher import make_producer
from schemas.wire import AvroCodec
from tests.embedded import TEST_ENV, vigie_up
from vigie.runtime.bench import SheetFactory, _count, _wait_count, load_raw
from vigie.settings import Settings


def main(records: int, processes: int) -> None:
    """Run the measurement and print what it took."""
    data_dir = Path(tempfile.mkdtemp(prefix="vigie-reharmonize-")) / "vigie"
    with vigie_up(data_dir, timeout_s=300) as (_proc, info):
        started = time.monotonic()
        load_raw(make_producer(info.broker), AvroCodec.from_url(info.registry_url),
                 SheetFactory(Settings(), 7), records, date.today())  # fmt: skip
        _wait_count(info.web_url, records, 3600)
        with httpx.Client() as client:
            first = _count(client, info.web_url)
        print(f"first pass: {first:,} rows stored {time.monotonic() - started:.1f} s after loading began")
        replay_started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "vigie.cli", "reharmonize", "--since", date.today().isoformat(),
             "--processes", str(processes), "--json", "--data-dir", str(data_dir)],
            capture_output=True, text=True, env={**os.environ, **TEST_ENV}, check=True,
        )  # fmt: skip
        replayed = time.monotonic() - replay_started
        summary = json.loads(done.stdout)
        print(f"reharmonize: {summary['records']:,} records in {replayed:.1f} s "
              f"({summary['records_per_s']:,} records/s by its own clock)")  # fmt: skip
        _wait_count(info.web_url, first + summary["records"], 3600)
        print(f"replayed rows stored {time.monotonic() - replay_started:.1f} s after the replay began")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300_000, int(sys.argv[2]) if len(sys.argv) > 2 else 2)
