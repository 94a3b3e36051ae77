"""The data directory, attacked by another user of the machine: a directory they created
first, or a link to a loose directory, must not be taken as private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.embedded import vigie
from vigie.runtime.datadir import DataDirNotPrivate, secure_data_dir


def test_a_data_dir_given_as_a_link_is_tightened_where_it_points(tmp_path: Path) -> None:
    real = tmp_path / "srv-vigie"
    real.mkdir()
    os.chmod(real, 0o755)
    (tmp_path / "vigie").symlink_to(real)
    previous = os.umask(0o022)
    try:
        secure_data_dir(tmp_path / "vigie")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(real.stat().st_mode) == 0o700  # was left 0755 (the link was skipped)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory another user's needs root")
def test_a_data_dir_another_user_created_is_refused_with_one_line(tmp_path: Path) -> None:
    """Its owner could swap the pseudonym key for one they know, or loosen it again."""
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o700)
    os.chown(planted, 65534, 65534)
    with pytest.raises(DataDirNotPrivate, match="another user"):
        secure_data_dir(planted)
    inner = tmp_path / "mine"
    (inner / "secrets").mkdir(parents=True)
    os.chown(inner / "secrets", 65534, 65534)
    with pytest.raises(DataDirNotPrivate, match="secrets"):
        secure_data_dir(inner)
    done = vigie("migrate", data_dir=planted, check=False)
    assert done.returncode == 2 and "another user" in done.stderr and "Traceback" not in done.stderr
    assert not (planted / "warehouse").exists()


def test_migrate_run_first_leaves_nothing_of_the_store_loose(tmp_path: Path) -> None:
    """Found: `vigie migrate` as the first command created the store under the shell's umask
    (145 paths 0755/0644 under warehouse/; only the 0700 top directory hid them)."""
    data = tmp_path / "fresh"
    previous = os.umask(0o022)
    try:
        vigie("migrate", data_dir=data)
    finally:
        os.umask(previous)
    loose = [p for p in data.rglob("*") if not p.is_symlink() and stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert loose == []
