"""Installing a connector: the column contract, a checklist that sends nothing, a starter config.

- ``column_contract`` lists, per dataset, the columns a source must give (generated from the
  same tables the connector coerces rows with, so it cannot drift from the code);
- ``check_connector`` runs every check a technician would otherwise find out by failing
  (database reachable, each query runs, required columns present and typed on a sample,
  broker and registry reachable with the credentials) and returns a checklist;
- ``starter_config`` introspects a source database and writes a config with the dataset
  mappings it could infer (local column names matched to Vigie's, a watermark column guessed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from connectors.config import ConnectorConfig, FileDropSourceConfig, SqlSourceConfig
from connectors.source_rows import (
    DEFAULT_KEYS,
    DEFAULT_WINDOW_COLUMNS,
    DIRECT_IDENTIFIERS,
    HEADER_COLUMNS,
    RECORD_COLUMNS,
    RowError,
    coerce_row,
    source_key,
)
from schemas.contracts import Dataset, raw_topic

TYPE_NAMES = {
    "str": "texte",
    "int": "entier",
    "date": "date (AAAA-MM-JJ)",
    "datetime": "date-heure ISO",
    "bool": "oui/non (1/0, true/false, oui/non)",
}
SAMPLE_ROWS = 200


@dataclass(frozen=True)
class ContractColumn:
    """One column a source gives for a dataset."""

    name: str
    kind: str
    required: bool
    key: bool
    identifier: bool


def column_contract(dataset: Dataset) -> list[ContractColumn]:
    """The columns of a dataset, in the order the connector reads them."""
    keys = set(DEFAULT_KEYS[dataset])
    return [
        ContractColumn(
            name,
            kind,
            required,
            name in keys,
            name in DIRECT_IDENTIFIERS or name in {"student_local_id", "employee_number"},
        )
        for name, kind, required in HEADER_COLUMNS[dataset] + RECORD_COLUMNS[dataset]
    ]


def contract_markdown() -> str:
    """The column contract of every dataset as Markdown tables (README and `vigie connector
    contract`), in French: it is read by the CSS's technicians."""
    out = []
    for dataset in Dataset:
        out.append(f"**{dataset.value}** (fenêtre des suppressions : `{DEFAULT_WINDOW_COLUMNS[dataset]}`)\n")
        out.append("| colonne | type | requise | clé | identifiant (retiré à l'étape de flux) |")
        out.append("|---|---|---|---|---|")
        for c in column_contract(dataset):
            out.append(
                f"| `{c.name}` | {TYPE_NAMES[c.kind]} | {'oui' if c.required else ''} | "
                f"{'oui' if c.key else ''} | {'oui' if c.identifier else ''} |"
            )
        out.append("")
    return "\n".join(out)


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    name: str
    ok: bool
    detail: str = ""


def _check_sql(source: SqlSourceConfig) -> list[Check]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    from connectors.sources.sql import describe_db_error

    label = f"{source.dataset.value} ({source.table or 'query'})"
    checks = []
    try:
        engine = create_engine(source.url)
    except Exception as exc:  # a malformed URL or a driver that is not installed
        return [Check(f"{label} : URL de la base", False, f"{type(exc).__name__}: {exc}")]
    try:
        with engine.connect() as conn:
            checks.append(Check(f"{label} : base joignable", True, conn.dialect.name))
            body = (source.query or f"SELECT * FROM {source.table}").strip().rstrip(";")
            try:
                result = conn.execute(text(body))
                sample = [dict(r) for r in result.mappings().fetchmany(SAMPLE_ROWS)]
                result.close()
                names = set(result.keys())
            except SQLAlchemyError as exc:
                return [*checks, Check(f"{label} : requête exécutée", False, describe_db_error(exc))]
            checks.append(Check(f"{label} : requête exécutée", True, f"{len(sample)} ligne(s) d'échantillon"))
            wanted = {c.name for c in column_contract(source.dataset) if c.required}
            missing = sorted(wanted - names)
            checks.append(
                Check(
                    f"{label} : colonnes requises",
                    not missing,
                    f"manquantes : {', '.join(missing)}" if missing else ", ".join(sorted(wanted)),
                )
            )
            for extra, what in (
                (source.watermark, "watermark"),
                (
                    source.delete_window_column
                    or (DEFAULT_WINDOW_COLUMNS[source.dataset] if source.delete_window_days else None),
                    "fenêtre des suppressions",
                ),
            ):
                if extra is not None:
                    checks.append(
                        Check(
                            f"{label} : colonne {extra} ({what})",
                            extra in names,
                            "" if extra in names else "absente des colonnes de la requête",
                        )
                    )
            if source.watermark is None:
                checks.append(
                    Check(
                        f"{label} : watermark",
                        True,
                        "aucun : chaque relève lit toute la table (mettre `watermark` sur une grande table)",
                    )
                )
            if not missing:
                checks.append(
                    _check_sample(
                        label, source.dataset, sample, tuple(source.key or DEFAULT_KEYS[source.dataset])
                    )
                )
    except SQLAlchemyError as exc:
        checks.append(Check(f"{label} : base joignable", False, describe_db_error(exc)))
    finally:
        engine.dispose()
    return checks


def _check_sample(label: str, dataset: Dataset, sample: list[dict[str, Any]], keys: tuple[str, ...]) -> Check:
    problems: dict[str, int] = {}
    for row in sample:
        try:
            source_key(coerce_row(dataset, row), keys)
        except RowError as exc:  # the message names the column and the rule, not the value
            problems[str(exc)] = problems.get(str(exc), 0) + 1
    if not problems:
        return Check(f"{label} : échantillon conforme au contrat", True, f"{len(sample)} ligne(s) typée(s)")
    worst = ", ".join(f"{reason} ({n})" for reason, n in sorted(problems.items(), key=lambda p: -p[1])[:3])
    bad = sum(problems.values())
    # A few bad rows are refused one by one at run time; all of them bad means a wrong mapping.
    return Check(
        f"{label} : échantillon conforme au contrat",
        bad < len(sample),
        f"{bad} ligne(s) sur {len(sample)} seraient refusées : {worst}",
    )


def _check_drop(source: FileDropSourceConfig) -> list[Check]:
    label = f"{source.dataset.value} (dépôt {source.folder})"
    folder = source.folder
    if not folder.exists():
        return [Check(f"{label} : dossier", True, "sera créé au démarrage")]
    import os

    writable = os.access(folder, os.W_OK)
    waiting = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in {".csv", ".xlsx"}]
    return [
        Check(f"{label} : dossier accessible en écriture", writable, f"{len(waiting)} fichier(s) en attente")
    ]


def _check_broker(config: ConnectorConfig, timeout_s: float) -> list[Check]:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    settings: dict[str, Any] = {
        "bootstrap.servers": config.broker.bootstrap,
        "log.connection.close": False,
        **config.broker.config,
    }
    try:
        metadata = AdminClient(settings).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        return [Check(f"courtier {config.broker.bootstrap}", False, f"injoignable : {exc.args[0].str()}")]
    checks = [Check(f"courtier {config.broker.bootstrap}", True, f"{len(metadata.brokers)} courtier(s)")]
    datasets = sorted({s.dataset for s in config.sources})
    missing = [raw_topic(config.css, d) for d in datasets if raw_topic(config.css, d) not in metadata.topics]
    checks.append(
        Check(
            "topics bruts",
            True,
            "présents"
            if not missing
            else f"pas encore créés (le courtier peut les créer) : {', '.join(missing)}",
        )
    )
    return checks


def _check_registry(config: ConnectorConfig) -> Check:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    try:
        subjects = SchemaRegistryClient({"url": config.registry.url, **config.registry.config}).get_subjects()
    except Exception as exc:  # the client raises several types for refused, unauthorized, TLS…
        first = str(exc).splitlines()[0] if str(exc) else ""
        return Check(f"registre {config.registry.url}", False, f"{type(exc).__name__}: {first}"[:200])
    return Check(f"registre {config.registry.url}", True, f"{len(subjects)} sujet(s)")


def check_connector(
    config: ConnectorConfig, organizations: Iterable[str], timeout_s: float = 5.0
) -> list[Check]:
    """Every check, in the order a technician would fix them; nothing is sent or stored."""
    checks = [Check(f"css {config.css}", config.css in set(organizations), "un des organismes du réseau")]
    for source in config.sources:
        checks += _check_sql(source) if isinstance(source, SqlSourceConfig) else _check_drop(source)
    checks += _check_broker(config, timeout_s)
    checks.append(_check_registry(config))
    return checks


# -- starter configuration -----------------------------------------------------------------
# Local column names seen in Québec school systems (and the simulator's), per Vigie column.
ALIASES: dict[str, tuple[str, ...]] = {
    "school_code": ("ecole", "code_ecole", "no_ecole", "school"),
    "group_code": ("groupe", "code_groupe", "group"),
    "period": ("periode", "per"),
    "sheet_date": ("date_presence", "date", "jour"),
    "student_local_id": ("fiche", "no_fiche", "matricule_eleve", "student_id"),
    "code_permanent": ("code_perm",),
    "first_name": ("prenom",),
    "last_name": ("nom",),
    "birth_date": ("date_naissance", "naissance"),
    "postal_code": ("code_postal",),
    "status_code": ("code_presence", "statut", "presence"),
    "absence_code": ("code_motif",),
    "absence_text": ("motif", "raison"),
    "occurred_at": ("saisi_le", "date_saisie"),
    "level": ("niveau",),
    "subject_code": ("matiere", "code_matiere"),
    "competency_code": ("competence",),
    "etape": ("etape",),
    "evaluation_date": ("date_evaluation",),
    "scale": ("echelle",),
    "sex": ("sexe",),
    "intervention_plan": ("plan_intervention", "pi"),
    "language_group": ("langue",),
    "immigration": ("immigration",),
    "result": ("resultat", "note"),
    "employee_number": ("matricule", "no_employe"),
    "email": ("courriel",),
    "phone": ("telephone",),
    "job_code": ("corps_emploi", "emploi"),
    "change_type": ("type_mouvement",),
    "leave_type": ("type_conge",),
    "legally_qualified": ("qualifie", "brevet"),
    "effective_date": ("date_effective", "date_effet"),
}
WATERMARK_NAMES = (
    "modifie_le",
    "date_modification",
    "modified_at",
    "updated_at",
    "last_modified",
    "rowversion",
    "row_version",
    "maj_le",
)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "_", name.casefold()).strip("_")


def _mapping(dataset: Dataset, local_columns: list[str]) -> dict[str, str]:
    """Vigie column → local column, for the columns found."""
    by_norm = {_norm(c): c for c in local_columns}
    found = {}
    for c in column_contract(dataset):
        for candidate in (c.name, *ALIASES.get(c.name, ())):
            if _norm(candidate) in by_norm:
                found[c.name] = by_norm[_norm(candidate)]
                break
    return found


def starter_config(css: str, url: str, broker: str, registry: str, display_url: str | None = None) -> str:
    """Introspect the database at ``url`` and return a TOML config (the datasets it could map,
    the others left as comments to fill in)."""
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        tables = {t: [c["name"] for c in inspector.get_columns(t)] for t in inspector.get_table_names()}
    finally:
        engine.dispose()
    lines = [
        f"# Starter connector configuration for {css}, written by `vigie connector init`.",
        "# Check it with `vigie connector check --config <this file>` before running it.",
        f'css = "{css}"',
        'outbox = "outbox.sqlite"',
        "poll_every_s = 10",
        "heartbeat_every_s = 30",
        "",
        "[broker]",
        f'bootstrap = "{broker}"',
        "",
        "[registry]",
        f'url = "{registry}"',
        "",
    ]
    for dataset in Dataset:
        required = {c.name for c in column_contract(dataset) if c.required}
        scored = sorted(
            ((len(required & set(_mapping(dataset, cols))), t) for t, cols in tables.items()), reverse=True
        )
        if not scored or scored[0][0] < len(required):
            best = f" (closest: table {scored[0][1]}, {scored[0][0]} of {len(required)})" if scored else ""
            lines += [
                f"# {dataset.value}: no table has every required column{best};",
                "# write its query by hand (see `vigie connector contract`).",
                "",
            ]
            continue
        table = scored[0][1]
        mapping = _mapping(dataset, tables[table])
        select = ", ".join(
            local if local == ours else f"{local} AS {ours}" for ours, local in mapping.items()
        )
        watermark = next((c for c in tables[table] if _norm(c) in WATERMARK_NAMES), None)
        lines += [
            "[[sources]]",
            'kind = "sql"',
            f'dataset = "{dataset.value}"',
            'source_system = "local"',
            f'url = "{display_url or url}"',
        ]
        if watermark and watermark not in mapping.values():
            select += f", {watermark}"
        lines.append(f'query = "SELECT {select} FROM {table}"')
        if watermark:
            lines.append(f'watermark = "{watermark}"')
        else:
            lines.append("# no modification-time column found: every poll reads the whole table")
        unmapped = sorted({c.name for c in column_contract(dataset)} - set(mapping))
        if unmapped:
            lines.append(f"# not found (optional): {', '.join(unmapped)}")
        lines.append("")
    return "\n".join(lines)
