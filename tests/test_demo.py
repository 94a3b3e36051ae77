"""`vigie demo` end to end: the simulated network of 72 organizations through the real stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.embedded import vigie

pytestmark = pytest.mark.integration


def test_demo_reports_every_organization_with_every_consented_dataset(tmp_path: Path) -> None:
    done = vigie("demo", "--minutes", "0.25", "--json", data_dir=tmp_path / "vigie", timeout=300)
    rows = json.loads(done.stdout)
    assert len(rows) == 72
    for row in rows:
        for name, ds in row["datasets"].items():
            if ds["consented"]:
                assert ds["events"] > 0, (row["code"], name)
                assert ds["last_event_at"]
            else:
                assert ds["events"] == 0 and ds["withheld_no_consent"] > 0, (row["code"], name)
        assert row["last_heartbeat_at"], row["code"]
    # The CSS that send malformed rows see them dead-lettered, not lost.
    assert sum(r["dead_letter_records"] for r in rows if r["code"] in {"iles", "littoral", "chic-chocs"}) > 0
    assert "simulating the network" in done.stderr
