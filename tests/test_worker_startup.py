"""`vigie worker` that cannot start says why in one line and exits non-zero, without a traceback
(compose shows exactly this in the container's log)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vigie.runtime.broker import free_port

GOOD_KEY = "0123456789abcdef0123456789abcdef"


def _worker(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VIGIE_")}
    base = {"VIGIE_BROKER_URL": f"127.0.0.1:{free_port()}", "VIGIE_REGISTRY_URL": "http://127.0.0.1:1",
            "VIGIE_DATA_DIR": str(tmp_path), "COLUMNS": "300"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "vigie.cli", "worker"], capture_output=True, text=True,
                          timeout=180, env={**clean, **base, **env})  # fmt: skip


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "no pseudonymization key"),
        ({"VIGIE_PSEUDONYM_KEY": "short"}, "at least 16 bytes"),
        ({"VIGIE_PSEUDONYM_KEY_FILE": "/nonexistent/pseudonym.key"}, "cannot read pseudonymization key file"),
        ({"VIGIE_PSEUDONYM_KEY": GOOD_KEY, "VIGIE_BROKER_WAIT_S": "3"}, "cannot reach the broker at 127.0.0.1:"),
    ],
    ids=["no-key", "short-key", "missing-key-file", "no-broker"],
)
def test_worker_that_cannot_start_prints_one_line(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    done = _worker(tmp_path, **env)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert expected in lines[0]
    assert GOOD_KEY not in done.stderr  # the key itself never shows


def test_a_short_key_file_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "pseudonym.key"
    key.write_text("abc\n")
    done = _worker(tmp_path, VIGIE_PSEUDONYM_KEY_FILE=str(key))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "at least 16 bytes" in done.stderr
