"""Unmapped values accumulate per CSS for the data stewards, across restarts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from streams.harmonize import Unmapped
from streams.stewardship import StewardshipLog


def test_counts_accumulate_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "stewardship.sqlite"
    log = StewardshipLog(path)
    code = Unmapped("montreal", "attendance", "absence_code", "13X")
    text = Unmapped("phares", "attendance", "absence_text", "voir agenda")
    log.record(Counter({code: 3, text: 1}))
    log.record(Counter({code: 2}))
    log.record(Counter())
    log.close()

    again = StewardshipLog(path)
    entries = again.report()
    assert [(e.css, e.value, e.count) for e in entries] == [
        ("montreal", "13X", 5),
        ("phares", "voir agenda", 1),
    ]
    assert [e.value for e in again.report("phares")] == ["voir agenda"]
    assert entries[0].first_seen <= entries[0].last_seen
    again.close()
