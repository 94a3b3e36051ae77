"""The connector's systemd unit is valid for systemd, and runs what the README says."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parent.parent / "connectors" / "service" / "vigie-connector.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    vigie = Path(sys.executable).parent / "vigie"
    unit = tmp_path / "vigie-connector.service"
    unit.write_text(UNIT.read_text().replace("/opt/vigie/.venv/bin/vigie", str(vigie)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in result.stderr.splitlines() if "vigie-connector.service" in line]
    assert not problems, problems


def test_the_unit_checks_before_it_runs_and_stops_gently() -> None:
    text = UNIT.read_text()
    assert "ExecStartPre=/opt/vigie/.venv/bin/vigie connector check --config" in text
    assert "ExecStart=/opt/vigie/.venv/bin/vigie connector run --config" in text
    assert "KillSignal=SIGTERM" in text and "UMask=0077" in text and "Restart=always" in text
