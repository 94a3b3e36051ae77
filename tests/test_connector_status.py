"""The status view tells a CSS whose connector refused input from a silent one."""

from __future__ import annotations

from rich.console import Console

from dashboards.status import (
    DatasetStatus,
    OrganizationStatus,
    render_status,
    status_from_json,
    status_to_json,
)


def _row(code: str, **extra) -> OrganizationStatus:
    datasets = {ds: DatasetStatus(consented=True) for ds in ("attendance", "grades", "staff")}
    return OrganizationStatus(code, code, "region", datasets, **extra)


def test_refused_rows_show_instead_of_silence() -> None:
    rows = [_row("iles", last_heartbeat_at="2026-11-30 10:00:00", connector_rejected_rows=89,
                 connector_last_rejection="attendance (fichier), ligne 90: column sheet_date: not a valid date"),
            _row("littoral", connector_rejected_files=1), _row("laval")]  # fmt: skip
    console = Console(record=True, width=200)
    render_status(rows, console)
    text = console.export_text()
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()[:1].isalpha()}
    assert "fichier refusé (89 lignes)" in lines["iles"]
    assert "1 fichier(s) refusé(s)" in lines["littoral"]
    assert "refusé" not in lines["laval"]


def test_status_json_round_trips_the_refusals_and_reads_older_answers() -> None:
    row = _row("iles", connector_rejected_rows=3, connector_last_rejection="x")
    assert status_from_json(status_to_json([row])) == [row]
    older = status_to_json([_row("laval")])
    for item in older:
        for name in ("connector_rejected_rows", "connector_rejected_files", "connector_last_rejection"):
            item.pop(name)
    assert status_from_json(older)[0].connector_rejected_rows == 0
