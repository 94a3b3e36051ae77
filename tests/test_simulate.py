"""`vigie simulate` → connectors → the running pipeline: the real path from local systems."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import date
from pathlib import Path

import pytest

from connectors.config import load_connector_config
from connectors.runner import Connector
from connectors.simulate import simulate_network
from tests.embedded import status_json, vigie_up, wait_for, worker_status

UNTIL = date(2026, 11, 20)


def _digest(folder: Path) -> str:
    """Content of a simulated CSS folder, its own location aside."""
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix == ".toml":
            h.update(path.read_text().replace(str(folder.resolve()), "<folder>").encode())
        elif path.is_file() and path.suffix == ".csv":
            h.update(path.read_bytes())
        elif path.suffix == ".sqlite":
            with sqlite3.connect(path) as db:
                h.update(repr(db.execute("SELECT * FROM presences ORDER BY rowid").fetchall()).encode())
    return h.hexdigest()


def test_simulation_is_deterministic_and_follows_habits(tmp_path: Path, organizations) -> None:
    chosen = {c: organizations[c] for c in ("montreal", "iles")}
    a = simulate_network(chosen, tmp_path / "a", 3, 2, 0.01, UNTIL, "b:9092", "http://r")
    b = simulate_network(chosen, tmp_path / "b", 3, 2, 0.01, UNTIL, "b:9092", "http://r")
    assert a == b
    for code in chosen:
        assert _digest(tmp_path / "a" / code) == _digest(tmp_path / "b" / code)
    kinds = {s.css: s.kind for s in a}
    assert kinds == {"montreal": "sql", "iles": "file_drop"}
    with sqlite3.connect(tmp_path / "a" / "montreal" / "source.sqlite") as db:
        codes = {r[0] for r in db.execute("SELECT DISTINCT code_motif FROM presences")}
        days = {r[0] for r in db.execute("SELECT DISTINCT date_presence FROM presences")}
    assert "01" in codes  # Montréal keeps its own code list
    assert days == {"2026-11-19", "2026-11-20"}  # school days only
    assert load_connector_config(tmp_path / "a" / "montreal" / "connector.toml").css == "montreal"


@pytest.mark.integration
def test_simulated_sources_flow_through_connectors_into_the_warehouse(tmp_path: Path, organizations) -> None:
    data_dir = tmp_path / "vigie"
    chosen = {c: organizations[c] for c in ("laval", "iles", "english-montreal")}
    with vigie_up(data_dir) as (_proc, info):
        summaries = {s.css: s for s in simulate_network(
            chosen, tmp_path / "sources", 11, 2, 0.01, UNTIL, info.broker, info.registry_url)}  # fmt: skip
        stats = {}
        for code in chosen:
            connector = Connector(load_connector_config(tmp_path / "sources" / code / "connector.toml"))
            connector.run(once=True)
            stats[code] = connector.stats

        def arrived() -> bool:
            rows = {r["code"]: r for r in worker_status(data_dir)}
            return (
                all(
                    rows[c]["datasets"]["attendance"]["events"]
                    == summaries[c].attendance - stats[c].skipped_rows
                    for c in ("laval", "english-montreal")
                )
                # One bad date refuses its row only (the 31/02 line is added beyond the summary).
                and rows["iles"]["datasets"]["attendance"]["events"]
                == summaries["iles"].attendance - (stats["iles"].skipped_rows - 1)
                and rows["iles"]["connector_rejected_rows"] == stats["iles"].skipped_rows
            )

        try:
            wait_for(arrived, 90, "the simulated attendance in the warehouse")
        except AssertionError:
            rows = {r["code"]: r["datasets"] for r in worker_status(data_dir) if r["code"] in chosen}
            raise AssertionError(f"warehouse {rows}; sent {summaries}; connectors {stats}") from None
        rows = {r["code"]: r for r in status_json(data_dir)}
    assert (
        rows["english-montreal"]["datasets"]["staff"]["withheld_no_consent"]
        == summaries["english-montreal"].staff
    )
    # Îles-de-la-Madeleine sends a malformed row: refused with its line and column, the rest goes
    # through, and the network's status view says so instead of showing a silent CSS.
    folder = tmp_path / "sources" / "iles" / "drop" / "presences"
    rejected = list((folder / "rejected").glob("*.lignes-refusees.txt"))
    assert rejected and "column sheet_date: not a valid date" in rejected[0].read_text()
    # The connector's own wording stays at the CSS (free text); centrally, the count says it.
    assert rows["iles"]["connector_rejected_rows"] >= 1 and rows["iles"]["connector_last_rejection"] is None
    assert not list(folder.glob("*.csv"))
    assert list((tmp_path / "sources" / "iles" / "drop" / "mouvements_rh" / "archive").glob("*.xlsx"))
