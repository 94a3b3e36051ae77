"""The network status view: one row per organization, events per dataset, last event time.

The same query answers ``vigie status`` whether it asks the running worker (which
owns the warehouse) or opens the data directory itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from dashboards.labels import Language, label
from schemas.contracts import Dataset
from schemas.organizations import Organization
from sinks.rows import FACT_TABLES
from sinks.warehouse import Warehouse
from streams.consent import ConsentRegistry


@dataclass
class DatasetStatus:
    """One organization's state for one dataset."""

    consented: bool
    events: int = 0
    last_event_at: str | None = None
    withheld_no_consent: int = 0


@dataclass
class OrganizationStatus:
    """One row of the network status table."""

    code: str
    name: str
    region: str
    datasets: dict[str, DatasetStatus]
    dead_letters: int = 0
    dead_letter_records: int = 0
    last_heartbeat_at: str | None = None
    connector_outbox_depth: int | None = None
    # What the connector refused today (its latest heartbeat): rows, whole files, the last reason.
    connector_rejected_rows: int = 0
    connector_rejected_files: int = 0
    connector_last_rejection: str | None = None


def _status_sql(db: str) -> str:
    facts = " UNION ALL ".join(
        f"SELECT css, '{ds.value}' AS dataset, count() AS events, "
        f"toString(max(processed_at)) AS last_at FROM {db}.{table} FINAL GROUP BY css"
        for ds, table in FACT_TABLES.items()
    )
    return facts


def network_status(
    warehouse: Warehouse | None, organizations: dict[str, Organization], consent: ConsentRegistry, today: date
) -> list[OrganizationStatus]:
    """Compute the status table from the warehouse (all zeros when there is none yet)."""
    rows = {
        code: OrganizationStatus(
            code,
            org.name,
            org.region_name,
            {ds.value: DatasetStatus(consent.allows(code, ds, today)) for ds in Dataset},
        )
        for code, org in organizations.items()
    }
    if warehouse is None:
        return list(rows.values())
    db = warehouse.database
    for r in warehouse.query(_status_sql(db)):
        if r["css"] in rows:
            st = rows[r["css"]].datasets[r["dataset"]]
            st.events, st.last_event_at = int(r["events"]), r["last_at"]
    for r in warehouse.query(
        f"SELECT css, dataset, reason_code, sum(record_count) AS n, count() AS letters "
        f"FROM {db}.dead_letters FINAL WHERE css IS NOT NULL GROUP BY css, dataset, reason_code"
    ):
        if r["css"] not in rows:
            continue
        if r["reason_code"] == "no_consent" and r["dataset"]:
            rows[r["css"]].datasets[r["dataset"]].withheld_no_consent += int(r["n"])
        else:
            rows[r["css"]].dead_letters += int(r["letters"])
            rows[r["css"]].dead_letter_records += int(r["n"])
    for r in warehouse.query(
        f"SELECT css, toString(max(sent_at)) AS last, argMax(outbox_depth, sent_at) AS depth, "
        f"argMax(rejected_rows, sent_at) AS rej_rows, argMax(rejected_files, sent_at) AS rej_files, "
        f"argMax(last_rejection, sent_at) AS rej_last "
        f"FROM {db}.connector_heartbeats GROUP BY css"
    ):
        if r["css"] in rows:
            rows[r["css"]].last_heartbeat_at = r["last"]
            rows[r["css"]].connector_outbox_depth = int(r["depth"])
            rows[r["css"]].connector_rejected_rows = int(r["rej_rows"] or 0)
            rows[r["css"]].connector_rejected_files = int(r["rej_files"] or 0)
            rows[r["css"]].connector_last_rejection = r["rej_last"]
    return list(rows.values())


def status_to_json(statuses: list[OrganizationStatus]) -> list[dict[str, Any]]:
    return [asdict(s) for s in statuses]


def status_from_json(data: list[dict[str, Any]]) -> list[OrganizationStatus]:
    out = []
    for item in data:
        datasets = {k: DatasetStatus(**v) for k, v in item.pop("datasets").items()}
        out.append(OrganizationStatus(datasets=datasets, **item))
    return out


# The status table's words; French by default (Québec's public administration), English
# for the English school boards' operators (VIGIE_LANGUAGE=en).
_WORDS: dict[str, dict[str, str]] = {
    "fr": {"title": "Vigie — état du réseau ({n} organismes)", "organization": "Organisme",
           "dead": "Refusés", "last": "Dernier (UTC)", "never": "jamais",
           "no_consent": "sans consentement", "network": "réseau"},
    "en": {"title": "Vigie — network status ({n} organizations)", "organization": "Organization",
           "dead": "Dead", "last": "Last (UTC)", "never": "never",
           "no_consent": "no consent", "network": "network"},
}  # fmt: skip


def _cell(st: DatasetStatus, words: dict[str, str]) -> str:
    if not st.consented:
        return f"[dim]{words['no_consent']}[/dim]"
    if st.events == 0:
        return "[yellow]0[/yellow]"
    return f"{st.events:,}"


def _short_time(stamp: str | None, never: str = "jamais") -> str:
    """'2026-11-22 13:51:07.123' → '11-22 13:51'."""
    if not stamp:
        return f"[red]{never}[/red]"
    return stamp[5:16]


def rejection_note(s: OrganizationStatus) -> str:
    """'fichier refusé (n lignes)' where the CSS's connector refused input today: the CSS is
    sending, its data is not getting through, which is not the same as silent."""
    parts = []
    if s.connector_rejected_files:
        parts.append(f"{s.connector_rejected_files} fichier(s) refusé(s)")
    if s.connector_rejected_rows:
        parts.append(f"fichier refusé ({s.connector_rejected_rows} lignes)")
    return ", ".join(parts)


def render_status(statuses: list[OrganizationStatus], console: Console, lang: Language = "fr") -> None:
    """Print the status table: one row per organization, in French (default) or English."""
    words = _WORDS[lang]
    table = Table(title=words["title"].format(n=len(statuses)), box=box.SIMPLE_HEAD)
    table.add_column(words["organization"], no_wrap=True)
    for ds in Dataset:
        table.add_column(label(ds.value, lang), justify="right", no_wrap=True)
    table.add_column(words["dead"], justify="right")
    table.add_column(words["last"], no_wrap=True)
    totals = dict.fromkeys([ds.value for ds in Dataset], 0)
    for s in statuses:
        last = max((d.last_event_at for d in s.datasets.values() if d.last_event_at), default=None)
        for ds in Dataset:
            totals[ds.value] += s.datasets[ds.value].events
        table.add_row(
            s.code, *[_cell(s.datasets[ds.value], words) for ds in Dataset],
            str(s.dead_letters) if s.dead_letters else "",
            _short_time(last, words["never"])
            + (f" [yellow]{rejection_note(s)}[/yellow]" if rejection_note(s) else ""),
        )  # fmt: skip
    table.add_section()
    table.add_row(f"[b]{words['network']}[/b]", *[f"[b]{totals[ds.value]:,}[/b]" for ds in Dataset], "", "")
    console.print(table)
