"""Consent registry and its reload without restart."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest

from schemas.contracts import Dataset
from streams.consent import ConsentFileError, ConsentRegistry, ConsentWatcher

HEADER = "css,dataset,purpose,valid_from,valid_to,retention_days\n"


def _write(path: Path, body: str, bump: int = 0) -> None:
    path.write_text(HEADER + body, encoding="utf-8")
    if bump:  # distinct mtimes even on coarse file systems
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


def test_consent_is_per_css_dataset_and_period(tmp_path: Path) -> None:
    path = tmp_path / "consent.csv"
    _write(path, "laval,attendance,suivi,2025-07-01,2026-06-30,365\nlaval,grades,réussite,2025-07-01,,1825\n")
    reg = ConsentRegistry.load(path)
    assert reg.allows("laval", Dataset.ATTENDANCE, date(2026, 1, 15))
    assert not reg.allows("laval", Dataset.ATTENDANCE, date(2026, 7, 1))  # expired
    assert not reg.allows("laval", Dataset.ATTENDANCE, date(2025, 6, 30))  # not yet valid
    assert reg.allows("laval", Dataset.GRADES, date(2030, 1, 1))  # open-ended
    assert not reg.allows("laval", Dataset.STAFF, date(2026, 1, 15))
    assert not reg.allows("montreal", Dataset.GRADES, date(2026, 1, 15))
    assert reg.consents[("laval", Dataset.GRADES)].retention_days == 1825


@pytest.mark.parametrize(
    ("body", "message"),
    [("laval,payroll,x,2025-07-01,,10\n", "consent.csv:2"), ("laval,grades,x,July 1st,,10\n", "malformed"),
     ("laval,grades,x,2025-07-01,,ten\n", "malformed")],
)  # fmt: skip
def test_malformed_consent_file_names_the_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "consent.csv"
    _write(path, body)
    with pytest.raises(ConsentFileError, match=message):
        ConsentRegistry.load(path)


def test_watcher_reloads_a_changed_file_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = tmp_path / "consent.csv"
    _write(path, "laval,attendance,suivi,2025-07-01,,365\n")
    clock = [0.0]
    watcher = ConsentWatcher(path, check_every_s=2.0, clock=lambda: clock[0])
    on = date(2026, 1, 15)
    assert not watcher.allows("laval", Dataset.STAFF, on)

    _write(path, "laval,attendance,suivi,2025-07-01,,365\nlaval,staff,rh,2025-07-01,,365\n", bump=1)
    clock[0] = 1.0
    assert not watcher.allows("laval", Dataset.STAFF, on)  # not checked yet
    clock[0] = 3.0
    assert watcher.allows("laval", Dataset.STAFF, on)
    assert watcher.reloads == 1

    _write(path, "laval,staff,rh,not-a-date,,365\n", bump=2)
    clock[0] = 6.0
    assert watcher.allows("laval", Dataset.STAFF, on)  # the previous consents stay in force
    assert watcher.last_error and "consent.csv:2" in watcher.last_error

    _write(path, "laval,attendance,suivi,2025-07-01,,365\n", bump=3)  # staff consent withdrawn
    clock[0] = 9.0
    assert not watcher.allows("laval", Dataset.STAFF, on)
    assert watcher.last_error is None
