"""``vigie simulate``: the 72 organizations' local systems, written to disk.

Each CSS gets a SQLite source database (tables named and shaped the way its local
systems would, French column names) or, for small CSS, a drop folder of CSV and XLSX
exports, plus a ``connector.toml`` whose queries map the local columns to Vigie's.
Deterministic for a seed; volume scales with ``students_approx`` (times ``scale``);
days follow the Québec school calendar; each CSS keeps its habits (see simulator.py),
and a few send malformed rows.
"""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from connectors.calendar import PERIODS_PER_DAY, etape, school_days_until
from connectors.simulator import REASON_WEIGHTS, TEXT_EN, TEXT_FR, SimulatedCss
from schemas.organizations import Organization

# Local column → Vigie column, per dataset (what the generated connector queries alias).
ATTENDANCE_COLUMNS = {
    "ecole": "school_code", "groupe": "group_code", "periode": "period", "date_presence": "sheet_date",
    "fiche": "student_local_id", "code_permanent": "code_permanent", "prenom": "first_name", "nom": "last_name",
    "date_naissance": "birth_date", "code_postal": "postal_code", "code_presence": "status_code",
    "code_motif": "absence_code", "motif": "absence_text", "saisi_le": "occurred_at",
    "modifie_le": "modified_at",
}  # fmt: skip
GRADES_COLUMNS = {
    "ecole": "school_code", "groupe": "group_code", "niveau": "level", "matiere": "subject_code",
    "competence": "competency_code", "etape": "etape", "date_evaluation": "evaluation_date", "echelle": "scale",
    "fiche": "student_local_id", "code_permanent": "code_permanent", "prenom": "first_name", "nom": "last_name",
    "date_naissance": "birth_date", "sexe": "sex", "plan_intervention": "intervention_plan",
    "langue": "language_group", "immigration": "immigration", "resultat": "result",
    "modifie_le": "modified_at",
}  # fmt: skip
STAFF_COLUMNS = {
    "matricule": "employee_number", "prenom": "first_name", "nom": "last_name", "date_naissance": "birth_date",
    "courriel": "email", "telephone": "phone", "corps_emploi": "job_code", "type_mouvement": "change_type",
    "type_conge": "leave_type", "ecole": "school_code", "qualifie": "legally_qualified",
    "date_effective": "effective_date", "modifie_le": "modified_at",
}  # fmt: skip
TABLES = {"attendance": ("presences", ATTENDANCE_COLUMNS), "grades": ("resultats", GRADES_COLUMNS),
          "staff": ("mouvements_rh", STAFF_COLUMNS)}  # fmt: skip
# The local date column of each table: indexed, as a school system's would be, since the
# connector bounds deletion detection to its recent days.
DATE_COLUMN = {
    "presences": "date_presence",
    "resultats": "date_evaluation",
    "mouvements_rh": "date_effective",
}
DROP_FOLDER_BELOW_STUDENTS = 3000


@dataclass(frozen=True)
class SimulationSummary:
    """What was written for one organization."""

    css: str
    kind: str  # "sql" or "file_drop"
    attendance: int
    grades: int
    staff: int


def _groups(css: SimulatedCss, scale: float) -> range:
    return range(max(1, round(css.org.students_approx * scale / 25)))


def attendance_rows(css: SimulatedCss, day: date, scale: float) -> list[dict[str, Any]]:
    rng = css.rng
    texts = TEXT_EN if css.english else TEXT_FR
    rows = []
    for group in _groups(css, scale):
        for period in range(1, PERIODS_PER_DAY + 1):
            taken = datetime.combine(day, time(8 + period * 1, 5), tzinfo=UTC)
            # The system stamps each row when it is written (the connector's watermark).
            modified = (taken + timedelta(seconds=group % 1800)).isoformat()
            for s in css.roster(group):
                roll = rng.random()
                idx = 0 if roll < 0.9 else 1 if roll < 0.96 else 2 if roll < 0.99 else 3
                code = text = None
                if idx == 1:
                    reason = rng.choices(list(REASON_WEIGHTS), list(REASON_WEIGHTS.values()))[0]
                    if css.codes is not None:
                        code = css.codes.get(reason)
                    else:
                        text = rng.choice(texts.get(reason) or ("absent",))
                status: str | None = css.statuses[idx]
                if css.malformed and rng.random() < 0.002:
                    status = None  # a row the connector must skip, not send
                rows.append({
                    "ecole": css.school_of(group), "groupe": f"G{group:04d}", "periode": period,
                    "date_presence": day.isoformat(), "fiche": s.local_id, "code_permanent": s.code_permanent,
                    "prenom": s.first_name, "nom": s.last_name, "date_naissance": s.birth_date.isoformat(),
                    "code_postal": s.postal_code, "code_presence": status, "code_motif": code, "motif": text,
                    "saisi_le": taken.isoformat(), "modifie_le": modified,
                })  # fmt: skip
    return rows


def grade_rows(css: SimulatedCss, day: date, scale: float) -> list[dict[str, Any]]:
    rows = []
    for group in _groups(css, scale):
        if css.rng.random() > 0.15:  # an evaluation for this group today?
            continue
        batch = css.evaluation(day, datetime.combine(day, time(15), tzinfo=UTC))
        batch["etape"] = etape(day)
        for r in batch["results"]:
            rows.append({
                "ecole": batch["school_code"], "groupe": f"G{group:04d}", "niveau": batch["level"],
                "matiere": batch["subject_code"], "competence": batch["competency_code"], "etape": batch["etape"],
                "date_evaluation": day.isoformat(), "echelle": batch["scale"], "fiche": r["student_local_id"],
                "code_permanent": r["code_permanent"], "prenom": r["first_name"], "nom": r["last_name"],
                "date_naissance": r["birth_date"].isoformat(), "sexe": r["sex"],
                "plan_intervention": r["intervention_plan"], "langue": r["language_group"],
                "immigration": r["immigration"], "resultat": r["result"],
                "modifie_le": datetime.combine(day, time(15), tzinfo=UTC).isoformat(),
            })  # fmt: skip
    return rows


def staff_rows(css: SimulatedCss, day: date) -> list[dict[str, Any]]:
    batch = css.staff_changes(day, datetime.combine(day, time(9), tzinfo=UTC))
    return [{
        "matricule": c["employee_number"], "prenom": c["first_name"], "nom": c["last_name"],
        "date_naissance": c["birth_date"].isoformat(), "courriel": c["email"], "telephone": c["phone"],
        "corps_emploi": c["job_code"], "type_mouvement": c["change_type"], "type_conge": c["leave_type"],
        "ecole": c["school_code"], "qualifie": c["legally_qualified"], "date_effective": day.isoformat(),
        "modifie_le": datetime.combine(day, time(9), tzinfo=UTC).isoformat(),
    } for c in batch["changes"]]  # fmt: skip


def _write_sqlite(path: Path, table: str, rows: list[dict[str, Any]], columns: dict[str, str]) -> None:
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(f'{c} TEXT' for c in columns)})")
        db.execute(f"CREATE INDEX IF NOT EXISTS {table}_modifie_le ON {table} (modifie_le)")
        db.execute(f"CREATE INDEX IF NOT EXISTS {table}_date ON {table} ({DATE_COLUMN[table]})")
        if rows:
            names = list(columns)
            db.executemany(
                f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
                [[r.get(n) for n in names] for r in rows],
            )


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: dict[str, str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), delimiter=";")
        writer.writeheader()
        writer.writerows(rows)


def _write_xlsx(path: Path, rows: list[dict[str, Any]], columns: dict[str, str]) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(list(columns))
    for r in rows:
        ws.append([r.get(c) for c in columns])
    wb.save(path)


def _query(table: str, columns: dict[str, str]) -> str:
    return f"SELECT {', '.join(f'{local} AS {ours}' for local, ours in columns.items())} FROM {table}"


def _toml_columns(columns: dict[str, str]) -> str:
    return "{ " + ", ".join(f'{local} = "{ours}"' for local, ours in columns.items()) + " }"


def connector_toml(css: SimulatedCss, kind: str, broker: str, registry: str, folder: Path) -> str:
    head = f'''# Connector of {css.org.name}, written by `vigie simulate`.
css = "{css.org.code}"
outbox = "outbox.sqlite"
poll_every_s = 5
heartbeat_every_s = 10

[broker]
bootstrap = "{broker}"

[registry]
url = "{registry}"
'''
    sources = []
    for dataset, (table, columns) in TABLES.items():
        if kind == "sql":
            sources.append(f'''
[[sources]]
kind = "sql"
dataset = "{dataset}"
source_system = "{css.source_system}"
url = "sqlite:///{folder.resolve() / "source.sqlite"}"
query = "{_query(table, columns)}"
# Only rows changed since the last poll are read; deletions are looked for in the last 14 days.
watermark = "modified_at"
delete_window_days = 14
''')
        else:
            sources.append(f'''
[[sources]]
kind = "file_drop"
dataset = "{dataset}"
source_system = "Excel"
folder = "drop/{table}"
columns = {_toml_columns(columns)}
''')
    return head + "".join(sources)


def simulate_network(
    organizations: dict[str, Organization], out: Path, seed: int, days: int, scale: float, until: date,
    broker: str, registry: str, progress: Callable[[str], None] | None = None,
) -> list[SimulationSummary]:  # fmt: skip
    """Write every organization's local sources for ``days`` school days ending by ``until``."""
    school_days = school_days_until(until, days)
    summaries = []
    for org in organizations.values():
        css = SimulatedCss(org, seed)
        folder = out / org.code
        folder.mkdir(parents=True, exist_ok=True)
        kind = "file_drop" if org.students_approx < DROP_FOLDER_BELOW_STUDENTS else "sql"
        att = [attendance_rows(css, d, scale) for d in school_days]
        grd = [grade_rows(css, d, scale) for d in school_days]
        stf = [staff_rows(css, d) for d in school_days]
        if kind == "sql":
            db = folder / "source.sqlite"
            for dataset, rows in (("attendance", att), ("grades", grd), ("staff", stf)):
                table, columns = TABLES[dataset]
                _write_sqlite(db, table, [r for day in rows for r in day], columns)
        else:
            for dataset, rows in (("attendance", att), ("grades", grd), ("staff", stf)):
                table, columns = TABLES[dataset]
                drop = folder / "drop" / table
                drop.mkdir(parents=True, exist_ok=True)
                for day, day_rows in zip(school_days, rows, strict=True):
                    if not day_rows:
                        continue
                    if dataset == "staff":
                        _write_xlsx(drop / f"{table}-{day}.xlsx", day_rows, columns)
                    else:
                        if css.malformed and dataset == "attendance" and day == school_days[0]:
                            day_rows = [*day_rows, {**day_rows[0], "date_presence": "31/02"}]
                        _write_csv(drop / f"{table}-{day}.csv", day_rows, columns)
        (folder / "connector.toml").write_text(
            connector_toml(css, kind, broker, registry, folder), encoding="utf-8"
        )
        summary = SimulationSummary(
            org.code, kind, sum(map(len, att)), sum(map(len, grd)), sum(map(len, stf))
        )
        summaries.append(summary)
        if progress is not None:
            progress(org.code)
    return summaries
