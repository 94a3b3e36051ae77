"""Measure the warehouse engine's memory while it stores a day of marks (not a test: a script,
run by hand).

    .venv/bin/python -m tests.measure_merges [MARKS] [--up-to VERSION] [--no-summary]

One chDB store in a throw-away directory, the real migrations (all, or up to VERSION), then
MARKS attendance marks (default 7,000,000) inserted 30,000 at a time — the size of a sink's
insert in `vigie bench` — while a thread reads `system.merges` every 50 ms. Prints the
process's peak RSS above its start (VmHWM) and the largest merges by the engine's own memory
count. `--up-to 10` is the store before migration 0011 (the per-minute summaries as 0002 made
them); `--no-summary` drops the view that feeds `events_per_minute`, the floor without it.
Set MALLOC_ARENA_MAX=2 to match the worker (`vigie/runtime/allocator.py`).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from sinks.migrate import load_migrations, migrate_up
from sinks.warehouse import ChdbWarehouse

STEP = 30_000


def _status_mb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) // 1024
    return 0


def main() -> None:
    """Run the measurement and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("marks", type=int, nargs="?", default=7_000_000)
    parser.add_argument("--up-to", type=int, default=None, help="apply migrations up to this version")
    parser.add_argument("--no-summary", action="store_true", help="drop the view feeding events_per_minute")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wh = ChdbWarehouse(Path(tmp) / "warehouse")
        migrations = [m for m in load_migrations() if args.up_to is None or m.version <= args.up_to]
        migrate_up(wh, migrations)
        if args.no_summary:
            wh.command(f"DROP VIEW {wh.database}.attendance_marks_per_minute")
        start = _status_mb("VmRSS")
        merges: dict[tuple[str, str], tuple[int, int]] = {}
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.05):
                for row in wh.query("SELECT table, result_part_name AS part, num_parts AS n, "
                                    "memory_usage AS mem FROM system.merges"):  # fmt: skip
                    key = (row["table"], row["part"])
                    merges[key] = (int(row["n"]), max(int(row["mem"]), merges.get(key, (0, 0))[1]))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        began = time.monotonic()
        for offset in range(0, args.marks, STEP):
            wh.command(
                f"INSERT INTO {wh.database}.attendance_marks (event_id, record_key, css, school_code, "
                f"group_code, period, sheet_date, student_pseudonym, key_id, age_band, status, absence_reason, "
                f"reason_mapped, occurred_at, detected_at, mapping_version, processed_at, row_version, is_deleted) "
                f"SELECT hex(sipHash128(number)), hex(sipHash128(number, 1)), concat('css', toString(number % 72)), "
                f"toString(700000 + number % 3000), toString(number % 40), number % 4, toDate('2026-11-30'), "
                f"hex(sipHash128(intDiv(number, 7))), 'k1', '12-13', if(number % 10 = 0, 'absent', 'present'), "
                f"if(number % 10 = 0, 'maladie', NULL), true, now64(3), now64(3), 'v1', now64(3), number, 0 "
                f"FROM numbers({offset}, {min(STEP, args.marks - offset)})"
            )
        elapsed = time.monotonic() - began
        time.sleep(5)  # the merges that follow the last insert
        done.set()
        watcher.join()
        print(f"{args.marks:,} marks inserted in {elapsed:.1f} s; peak RSS {_status_mb('VmHWM')} MB "
              f"({_status_mb('VmHWM') - start:+} MB over the {start} MB after the migrations)")  # fmt: skip
        for (table, part), (n, mem) in sorted(merges.items(), key=lambda kv: -kv[1][1])[:5]:
            print(f"  merge into {table}/{part}: {n} parts, {mem / 2**20:.0f} MB")
        wh.close()


if __name__ == "__main__":
    main()
