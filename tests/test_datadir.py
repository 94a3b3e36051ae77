"""The data directory is private: another user of the machine reads nothing in it (the
warehouse, the logs, the stewards' log, the pseudonym key, the server's password)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.embedded import vigie_up
from vigie.runtime.datadir import secure_data_dir


def _loose(root: Path) -> list[str]:
    """Every path under ``root`` (itself included) that its group or others can use."""
    out = []
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            out.append(f"{oct(stat.S_IMODE(path.stat().st_mode))} {path.relative_to(root)}")
    return out


def test_an_old_world_readable_data_dir_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "old"
    (data / "logs").mkdir(parents=True)
    (data / "logs" / "worker.log").write_text("x")
    (data / "stewardship.sqlite").write_text("x")
    os.chmod(data, 0o755)
    os.chmod(data / "logs", 0o755)
    os.chmod(data / "logs" / "worker.log", 0o644)
    os.chmod(data / "stewardship.sqlite", 0o664)
    previous = os.umask(0o022)
    try:
        secure_data_dir(data)
        (data / "created-after").write_text("x")  # the umask now applies
    finally:
        os.umask(previous)
    assert _loose(data) == []
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "logs" / "worker.log").stat().st_mode) == 0o600


@pytest.mark.integration
def test_vigie_up_keeps_every_file_of_its_data_dir_private(tmp_path: Path) -> None:
    data = tmp_path / "vigie"
    env = {"VIGIE_PSEUDONYM_KEY": ""}  # the embedded runtime generates its key file
    with vigie_up(data, env=env):
        during = _loose(data)
    after = _loose(data)
    assert during == [] and after == []
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    expected = [data / "warehouse", data / "logs" / "worker.log", data / "stewardship.sqlite"]
    for path in expected:
        assert path.exists(), path
    key = data / "secrets" / "pseudonym.key"
    if key.exists():
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_a_command_run_first_creates_the_data_dir_private(tmp_path: Path) -> None:
    from tests.embedded import vigie

    data = tmp_path / "fresh"
    previous = os.umask(0o022)
    try:
        vigie("migrate", data_dir=data)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "lock").stat().st_mode) == 0o600
