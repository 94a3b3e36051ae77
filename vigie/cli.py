"""The ``vigie`` command."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import ValidationError
from rich.console import Console

from vigie.settings import Settings

app = typer.Typer(
    help="Vigie: streaming ingestion for Québec's school network "
    "(connectors → Kafka/Avro → Faust → ClickHouse → Grafana).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
console = Console()
if not console.is_terminal:
    # Piped output (CI logs, files, scripts that grep it) gets the full table rather than 80
    # columns, and lines that name a path are never broken in two.
    console = Console(width=120, soft_wrap=True)
err = Console(stderr=True)
if not err.is_terminal:
    err = Console(stderr=True, soft_wrap=True)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Data directory of the embedded runtime (default ./.vigie, or $VIGIE_DATA_DIR)."
    ),
]


dashboards_app = typer.Typer(help="The Grafana dashboards.", no_args_is_help=True)
app.add_typer(dashboards_app, name="dashboards")
warehouse_app = typer.Typer(help="The warehouse outside `vigie up`.", no_args_is_help=True)
app.add_typer(warehouse_app, name="warehouse")


def _version(value: bool) -> None:
    if value:
        from vigie import __version__

        console.print(f"vigie {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Vigie: streaming ingestion for Québec's school network."""


def _settings(data_dir: Path | None) -> Settings:
    try:
        base = Settings()
    except ValidationError as exc:
        err.print(f"[red]invalid VIGIE_* environment setting:[/red] {exc}")
        raise typer.Exit(2) from None
    return base.model_copy(update={"data_dir": data_dir}) if data_dir is not None else base


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@app.command()
def up(data_dir: DataDir = None) -> None:
    """Start the embedded stack (broker, registry, worker, warehouse).

    Starts the Tansu broker, a schema-registry stand-in, the Faust worker (stream and
    sink agents) and the chDB warehouse. Ctrl-C or SIGTERM stops it cleanly; the
    warehouse's data stays in the data directory for the next start.
    """
    from vigie.runtime.supervisor import EmbeddedRuntime, RuntimeStartError

    settings = _settings(data_dir)
    runtime = EmbeddedRuntime(settings)
    try:
        info = runtime.start(say=lambda line: console.print(f"  {line}"))
    except RuntimeStartError as exc:
        raise _fail(str(exc)) from None
    console.print(f"[green]Vigie is up[/green] on {runtime.data_dir} — broker {info.broker}, "
                  f"registry {info.registry_url}, status {info.web_url}/status, "
                  f"metrics {info.web_url}/metrics. "
                  "Ctrl-C to stop.")  # fmt: skip
    try:
        code = runtime.wait()
    finally:
        console.print("Stopping…")
        runtime.stop()
    if code:
        raise _fail(f"a component stopped unexpectedly; see {runtime.logs}")
    console.print("Stopped.")


@app.command()
def demo(
    minutes: Annotated[float, typer.Option(min=0.05, help="How long the simulated network publishes.")] = 2.0,
    seed: Annotated[int, typer.Option(help="Seed of the simulated network (same seed, same data).")] = 7,
    rate: Annotated[float, typer.Option(min=0.01, help="Volume multiplier of the simulated network.")] = 1.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the status table as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Run the embedded stack with a simulated network, then print the status table.

    The 72 organizations publish attendance, grades and staff events through the
    connector path for --minutes; the table is printed once every record sent is
    accounted for (stored, dead-lettered, or withheld for lack of consent).
    """
    from dashboards.status import render_status, status_to_json
    from vigie.runtime.demo import run_demo
    from vigie.runtime.supervisor import RuntimeStartError

    settings = _settings(data_dir)
    try:
        result = run_demo(settings, minutes, seed, rate, err if json_out else console)
    except RuntimeStartError as exc:
        raise _fail(str(exc)) from None
    if json_out:
        print(json.dumps(status_to_json(result.statuses), indent=2))
    else:
        render_status(result.statuses, console, settings.language)
    if not result.drained:
        raise _fail("not every record sent was accounted for before the drain timeout")


def _source_name(source: str, settings: Settings, lang: str | None = None) -> str:
    """Where `status` and `report` read from, in the operator's language."""
    names = {
        "fr": {"worker": "worker en cours", "server": "serveur ClickHouse"},
        "en": {"worker": "running worker", "server": "ClickHouse server"},
    }[lang or settings.language]
    return names.get(source, str(settings.data_dir))


@app.command()
def status(
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Show the network status: one row per organization.

    Events per dataset, consent, dead letters and last event time. Asks the running
    worker when `vigie up` runs on the data directory, otherwise reads the directory.
    """
    from dashboards.status import render_status, status_to_json
    from sinks.warehouse import WarehouseUnavailable
    from vigie.runtime.client import fetch_status
    from vigie.runtime.supervisor import RuntimeStartError

    settings = _settings(data_dir)
    try:
        statuses, source = fetch_status(settings)
    except (RuntimeStartError, WarehouseUnavailable) as exc:
        raise _fail(str(exc)) from None
    if json_out:
        print(json.dumps(status_to_json(statuses), indent=2))
        return
    render_status(statuses, console, settings.language)
    console.print(f"[dim]source : {_source_name(source, settings)}[/dim]")


@app.command()
def report(
    out: Annotated[Path, typer.Option("--out", help="HTML file to write.")],
    days: Annotated[float, typer.Option(min=0.01, help="The range: this many days back from now.")] = 30.0,
    data: Annotated[
        Path | None, typer.Option("--data", help="Also write every panel's rows as JSON here.")
    ] = None,
    lang: Annotated[
        str | None,
        typer.Option("--lang", help="fr (default, or VIGIE_LANGUAGE) or en, for the English boards."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Write the dashboards as one static HTML page with charts, for people without Grafana.

    The same panels and SQL as the Grafana dashboards (ClickHouse ones; the pipeline's
    Prometheus panels stay in Grafana), with the same small-cell suppression, in French
    (or English). Reads the running worker, VIGIE_WAREHOUSE_URL, or the data directory.
    """
    from datetime import UTC, datetime, timedelta

    from dashboards.report import render_html, results_to_json
    from sinks.warehouse import WarehouseUnavailable
    from vigie.runtime.client import fetch_panels
    from vigie.runtime.supervisor import RuntimeStartError

    settings = _settings(data_dir)
    if out.suffix.lower() not in (".html", ".htm"):
        raise _fail(f"--out should name an .html file, got {out}", 2)
    language = lang or settings.language
    if language not in ("fr", "en"):
        raise _fail(f"--lang should be fr or en, got {language!r}", 2)
    page_lang: Literal["fr", "en"] = "en" if language == "en" else "fr"
    end = datetime.now(UTC)
    start = end - timedelta(days=days)
    try:
        results, source = fetch_panels(settings, start, end)
    except (RuntimeStartError, WarehouseUnavailable) as exc:
        raise _fail(str(exc)) from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        page = render_html(results, start, end, settings.suppression_minimum, page_lang)
        out.write_text(page, encoding="utf-8")
        if data is not None:
            data.write_text(json.dumps(results_to_json(results), indent=1, default=str), encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot write the report: {exc}") from None
    shown = sum(1 for r in results if r.rows)
    where = _source_name(source, settings, page_lang)
    if page_lang == "en":
        console.print(f"{out}: {len(results)} panels ({shown} with rows), source: {where}")
    else:
        console.print(f"{out} : {len(results)} panneaux ({shown} avec des lignes), source : {where}")


@dashboards_app.command("export")
def dashboards_export(
    out: Annotated[
        Path | None, typer.Option("--out", help="Directory (default: the package's grafana/dashboards).")
    ] = None,
) -> None:
    """Write the Grafana dashboard JSON files from the panel definitions (dashboards/panels.py)."""
    from dashboards.grafana import DASHBOARDS_DIR, export

    for path in export(out or DASHBOARDS_DIR):
        console.print(str(path))


@app.command()
def migrate(
    down_to: Annotated[int | None, typer.Option(help="Undo migrations newer than this version.")] = None,
    url: Annotated[
        str | None,
        typer.Option(help="ClickHouse server URL (default: VIGIE_WAREHOUSE_URL, else the embedded store)."),
    ] = None,
    access: Annotated[
        bool, typer.Option(help="Also create the roles and row policies (a ClickHouse server only).")
    ] = True,
    data_dir: DataDir = None,
) -> None:
    """Apply (or with --down-to, undo) the warehouse migrations, then the access roles.

    Against a ClickHouse server (--url or VIGIE_WAREHOUSE_URL) or, by default, the
    embedded store in the data directory (refused while `vigie up` runs on it).
    """
    from schemas.organizations import load_organizations
    from sinks.access import apply_access
    from sinks.migrate import MigrationError, migrate_down, migrate_up
    from sinks.warehouse import WarehouseUnavailable, open_warehouse, redact_url
    from vigie.runtime.supervisor import DataDirLock

    settings = _settings(data_dir)
    server = url if url is not None else settings.warehouse_url
    if not server:  # the embedded store is created here when migrate comes first: private
        from vigie.runtime.datadir import secure_data_dir

        secure_data_dir(settings.data_dir)
    lock = DataDirLock(settings.lock_file)
    if not server and not lock.acquire():
        raise _fail(f"vigie up is running on {settings.data_dir}: stop it first (it migrates at start)")
    try:
        try:
            warehouse = open_warehouse(server, settings.warehouse_path, settings.warehouse_database)
        except (ValueError, WarehouseUnavailable) as exc:
            raise _fail(f"cannot reach the warehouse {redact_url(server)}: {exc}") from None
        try:
            cluster = settings.warehouse_cluster
            done = (migrate_up(warehouse, cluster=cluster) if down_to is None
                    else migrate_down(warehouse, down_to, cluster=cluster))  # fmt: skip
            granted = 0
            if access:
                granted = apply_access(warehouse, list(load_organizations(settings.organizations_file)))
        except MigrationError as exc:
            raise _fail(str(exc)) from None
        except Exception as exc:  # the server refused the access DDL (privileges, no access control)
            raise _fail(
                f"migrations applied, but not the roles and row policies: {exc}\n"
                "Run it as a user allowed to CREATE ROLE, or pass --no-access to skip them."
            ) from None
        finally:
            warehouse.close()
    finally:
        lock.release()
    verb = "applied" if down_to is None else "undone"
    console.print(f"{len(done)} migration(s) {verb}" + "".join(f"\n  {m.version:04d}_{m.name}" for m in done))
    if granted:
        console.print(f"roles and row policies checked ({granted} statements)")


def _interrupt(*_args: object) -> None:
    raise KeyboardInterrupt


@warehouse_app.command("serve")
def warehouse_serve(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8123,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on (default 127.0.0.1; another one needs "
            "VIGIE_WAREHOUSE_SERVER_PASSWORD)."
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Serve the embedded store over ClickHouse's HTTP protocol (a stand-in).

    Lets several workers share one embedded store, and a ClickHouse client read it:
    VIGIE_WAREHOUSE_URL=http://default:PASSWORD@127.0.0.1:PORT. One user, `default`, with a
    password: VIGIE_WAREHOUSE_SERVER_PASSWORD, else generated once into
    `<data-dir>/secrets/warehouse.password` (0600; its path is printed, never its value).
    GET only reads; one statement per request; table functions, engines and clauses that
    reach files or the network, and settings, are refused. Stop `vigie up` on the same
    data directory first.
    """  # fmt: skip
    import signal

    from vigie.runtime.datadir import secure_data_dir
    from vigie.runtime.supervisor import DataDirLock
    from vigie.runtime.warehouse_server import LOOPBACK, WarehouseServer, server_password

    settings = _settings(data_dir)
    explicit = settings.warehouse_server_password
    listen = host or settings.web_host
    if listen not in LOOPBACK and explicit is None:
        raise _fail(
            f"écoute sur {listen} refusée sans VIGIE_WAREHOUSE_SERVER_PASSWORD", 2,
        )  # fmt: skip
    if explicit is not None and len(explicit.get_secret_value()) < 12:
        raise _fail("VIGIE_WAREHOUSE_SERVER_PASSWORD est trop court (12 caractères au moins)", 2)
    secure_data_dir(settings.data_dir)
    lock = DataDirLock(settings.lock_file)
    if not lock.acquire():
        raise _fail(f"{settings.data_dir} is in use by another vigie process")
    try:
        password = server_password(
            explicit.get_secret_value() if explicit else None, settings.warehouse_password_file
        )
        try:
            server = WarehouseServer(settings.warehouse_path, password, listen, port)
        except OSError as exc:
            raise _fail(f"cannot listen on {listen}:{port}: {exc}") from None
        signal.signal(signal.SIGTERM, _interrupt)
        console.print(f"warehouse {settings.warehouse_path} served on {server.url}")
        where = "VIGIE_WAREHOUSE_SERVER_PASSWORD" if explicit else str(settings.warehouse_password_file)
        console.print(f"user 'default', password in {where}")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
    finally:
        lock.release()


@app.command()
def classify(
    css: Annotated[
        str | None, typer.Option("--css", help="Organization code: try its local absence codes first.")
    ] = None,
    evaluate: Annotated[
        Path | None,
        typer.Option("--evaluate", help="Score a labelled file (TSV `text<TAB>category`, or CSV) instead."),
    ] = None,
    unseen: Annotated[
        bool, typer.Option("--unseen", help="With --evaluate: drop the texts the model was trained on.")
    ] = False,
    examples: Annotated[
        bool, typer.Option("--examples", help="With --evaluate: show up to 3 texts per confusion.")
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="With --evaluate: machine-readable output.")
    ] = False,
) -> None:
    """Classify motifs d'absence read on stdin, one per line; print one JSON object per line.

    Each object has text, category (one of the 12 canonical reasons), confidence, mapped
    and by (local_code, steward, rule, model or none). Unknown or empty input gives
    'inconnu', never an error.

    With --evaluate FILE: accuracy, wrong-category rate (a reason other than the label;
    'inconnu' is counted apart), per-category precision and recall, and the confusions.
    """
    import sys

    from schemas.organizations import load_organizations
    from streams.absence import AbsenceClassifier
    from streams.absence_corpus import CorpusError

    settings = _settings(None)
    if css is not None and css not in load_organizations(settings.organizations_file):
        raise _fail(f"unknown organization code {css!r} (see `vigie status` for the list)", 2)
    try:
        classifier = AbsenceClassifier.from_dir(settings.mappings_dir, model_cache=settings.model_cache)
    except (CorpusError, ValueError) as exc:
        raise _fail(f"cannot load the absence mappings: {exc}") from None
    if evaluate is not None:
        _evaluate_classifier(classifier, evaluate, css, unseen, examples, json_out, settings.mappings_dir)
        return
    for line in sys.stdin:
        text = line.rstrip("\r\n")
        found = None
        if css is not None:
            found = classifier.classify_code(css, text)
        if found is None or not found.mapped:
            found = classifier.classify_text(text, css)
        out = {"text": text, "category": found.category, "confidence": found.confidence,
               "mapped": found.mapped, "by": found.by}  # fmt: skip
        print(json.dumps(out, ensure_ascii=False), flush=True)


def _evaluate_classifier(
    classifier: object, path: Path, css: str | None, unseen: bool, examples: bool, json_out: bool,
    mappings_dir: Path,
) -> None:  # fmt: skip
    """``vigie classify --evaluate``: score the classifier on a labelled file and print it."""
    import time

    from rich.table import Table

    from streams.absence import AbsenceClassifier
    from streams.absence_corpus import CorpusError, learned_texts, normalize, read_any
    from streams.absence_evaluate import evaluate

    assert isinstance(classifier, AbsenceClassifier)
    try:
        rows = read_any(path)
    except CorpusError as exc:
        raise _fail(str(exc), 2) from None
    dropped = 0
    if unseen:
        seen = learned_texts(mappings_dir)
        kept = [r for r in rows if normalize(r.text) not in seen]
        dropped, rows = len(rows) - len(kept), kept
    if not rows:
        raise _fail(f"{path}: no labelled rows to score", 2)
    started = time.perf_counter()
    classifier.prepare(css, ((None, r.text) for r in rows))  # one batch for the model, as in the stage
    result = evaluate(rows, lambda text: classifier.classify(css, None, text).category if css
                      else classifier.classify_text(text).category)  # fmt: skip
    per_text_us = (time.perf_counter() - started) / len(rows) * 1e6  # each text once: uncached, batched
    if json_out:
        payload = {"file": str(path), "dropped_as_seen": dropped, **result.as_dict(),
                   "us_per_text": round(per_text_us)}  # fmt: skip
        print(json.dumps(payload, ensure_ascii=False))
        return
    scope = f" ({dropped} texts seen in training left out)" if unseen else ""
    console.print(
        f"[bold]{path}[/bold]: {result.total} entries{scope} — accuracy [bold]{result.accuracy:.1%}[/bold] "
        f"({result.right}/{result.total}), wrong category [bold]{result.wrong_rate:.1%}[/bold] "
        f"({result.wrong_category}), left as inconnu {result.missed_rate:.1%} ({result.missed}); "
        f"{per_text_us:.0f} µs per text (uncached)"
    )
    table = Table("category", "expected", "predicted", "precision", "recall")
    for score in result.per_category:
        table.add_row(
            score.category, str(score.expected), str(score.predicted),
            "—" if score.precision is None else f"{score.precision:.1%}",
            "—" if score.recall is None else f"{score.recall:.1%}",
        )  # fmt: skip
    console.print(table)
    if result.confusions:
        confusions = Table("expected", "predicted", "count", *(["examples"] if examples else []))
        for (want, got), n in result.confusions.most_common():
            cells = [want, got, str(n)]
            if examples:
                texts = [r.text for r in rows if r.category == want
                         and classifier.classify_text(r.text).category == got][:3]  # fmt: skip
                cells.append(" | ".join(texts))
            confusions.add_row(*cells)
        console.print(confusions)


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the organizations' sources into.")],
    days: Annotated[int, typer.Option(min=1, max=200, help="School days to generate.")] = 1,
    seed: Annotated[int, typer.Option(help="Same seed, same data.")] = 7,
    scale: Annotated[float, typer.Option(min=0.001, max=1.0, help="Fraction of each CSS's students.")] = 0.02,
    until: Annotated[
        str | None, typer.Option(help="Last day to generate (YYYY-MM-DD); default today.")
    ] = None,
    css: Annotated[
        list[str] | None, typer.Option("--css", help="Only these organizations (repeatable).")
    ] = None,
    broker: Annotated[
        str | None,
        typer.Option(help="Bootstrap written into the connector configs (default: the running `vigie up`)."),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(help="Registry URL written into the configs (default: the running `vigie up`)."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Write realistic source data for the organizations: SQLite databases and drop folders.

    One folder per CSS with its local systems' data on the Québec school calendar and a
    connector.toml ready for `vigie connector run --config`. Each CSS keeps its own
    habits (absence codes or free text, status codes, grade scale, HR codes); a few
    send malformed rows.
    """
    from datetime import date

    from rich.progress import Progress

    from connectors.simulate import simulate_network
    from schemas.organizations import load_organizations

    settings = _settings(data_dir)
    organizations = load_organizations(settings.organizations_file)
    unknown = sorted(set(css or []) - set(organizations))
    if unknown:
        raise _fail(f"unknown organization code(s): {', '.join(unknown)}", 2)
    broker, registry = _stack_endpoints(settings, broker, registry)
    try:
        last = date.fromisoformat(until) if until else date.today()
    except ValueError:
        raise _fail(f"--until {until!r} is not a date (YYYY-MM-DD)", 2) from None
    chosen = {c: o for c, o in organizations.items() if not css or c in css}
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("writing sources", total=len(chosen))
        summaries = simulate_network(
            chosen, out, seed, days, scale, last, broker, registry,
            progress=lambda _code: progress.advance(task),
        )  # fmt: skip
    totals = [sum(getattr(s, f) for s in summaries) for f in ("attendance", "grades", "staff")]
    console.print(
        f"{len(summaries)} organizations in {out}: {totals[0]:,} attendance marks, {totals[1]:,} results, "
        f"{totals[2]:,} staff changes ({sum(s.kind == 'file_drop' for s in summaries)} use drop folders)."
    )


connector_app = typer.Typer(help="The connector installed at a CSS.", no_args_is_help=True)
app.add_typer(connector_app, name="connector")


def _stack_endpoints(settings: Settings, broker: str | None, registry: str | None) -> tuple[str, str]:
    """Broker and registry for connector configs: as given, else the running `vigie up` of the
    data directory (its runtime.json), else the usual ports 9092 / 8081 of a compose stack."""
    from vigie.runtime.supervisor import RuntimeInfo

    info = RuntimeInfo.read(settings.runtime_file)
    if info is not None and (broker is None or registry is None):
        err.print(f"connector configs point at the running `vigie up` ({settings.data_dir}): "
                  f"broker {info.broker}, registry {info.registry_url}")  # fmt: skip
    elif broker is None or registry is None:
        err.print("no running `vigie up` found: configs point at 127.0.0.1:9092 / :8081 "
                  "(a compose stack); `vigie connector run --stack` overrides them")  # fmt: skip
    return (
        broker or (info.broker if info else "127.0.0.1:9092"),
        registry or (info.registry_url if info else "http://127.0.0.1:8081"),
    )


def _load_connector(config: Path, stack: bool, data_dir: Path | None) -> tuple[Settings, object]:
    """The connector configuration, its css checked against the organizations; with ``stack``,
    its broker and registry replaced by the running `vigie up`'s."""
    from connectors.config import BrokerConfig, ConnectorConfigError, RegistryConfig, load_connector_config
    from schemas.organizations import OrganizationsError, load_organizations
    from vigie.runtime.supervisor import RuntimeInfo

    settings = _settings(data_dir)
    try:
        organizations = load_organizations(settings.organizations_file)
        cfg = load_connector_config(config, organizations)
    except (ConnectorConfigError, OrganizationsError) as exc:
        raise _fail(str(exc), 2) from None
    if stack:
        info = RuntimeInfo.read(settings.runtime_file)
        if info is None:
            raise _fail(
                f"--stack: no running `vigie up` in {settings.data_dir} (start it, or give --data-dir)", 2
            )
        cfg = cfg.model_copy(update={"broker": BrokerConfig(bootstrap=info.broker),
                                     "registry": RegistryConfig(url=info.registry_url)})  # fmt: skip
    return settings, cfg


StackOption = Annotated[
    bool,
    typer.Option(
        "--stack", help="Send to the `vigie up` running on --data-dir instead of the config's broker."
    ),
]


@connector_app.command("run")
def connector_run(
    config: Annotated[Path, typer.Option("--config", help="Connector configuration (.toml, .yaml or .yml).")],
    once: Annotated[
        bool, typer.Option("--once", help="Poll every source once, send everything, then exit.")
    ] = False,
    metrics_port: Annotated[
        int, typer.Option(help="Serve Prometheus metrics on this port (0: none).", min=0, max=65535)
    ] = 0,
    drain_timeout: Annotated[
        float, typer.Option(min=1, help="With --once: seconds to wait for the broker before giving up.")
    ] = 60.0,
    stack: StackOption = False,
    data_dir: DataDir = None,
) -> None:
    """Run one CSS's connector: detect changes, keep them in the durable outbox, send them.

    Sources are SQL tables or queries (any SQLAlchemy URL) and file-drop folders (CSV or
    XLSX). Nothing leaves the outbox before the broker acknowledged it; a restart after a
    crash or an outage resumes where it stopped. SIGTERM or Ctrl-C stops it cleanly.
    With --once, the exit status is 1 while batches remain undelivered or a source could not
    be read (a scheduled job then shows the failure).
    """
    import signal

    from connectors.config import ConnectorConfig
    from connectors.runner import Connector

    settings, loaded = _load_connector(config, stack, data_dir)
    assert isinstance(loaded, ConnectorConfig)
    cfg = loaded
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        connector = Connector(cfg)
    except Exception as exc:  # a source that cannot be opened: say which, not a traceback
        raise _fail(f"cannot start the connector for {cfg.css}: {type(exc).__name__}: {exc}", 1) from None
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: connector.stop())
    if metrics_port:
        from prometheus_client import start_http_server

        try:
            from schemas.metrics import CONNECTOR_REGISTRY

            start_http_server(metrics_port, registry=CONNECTOR_REGISTRY)  # not the worker's metrics
        except OSError as exc:
            raise _fail(f"cannot serve metrics on port {metrics_port}: {exc}") from None
    err.print(f"connector {cfg.name} for {cfg.css}: {len(cfg.sources)} source(s), outbox {cfg.outbox}")
    connector.run(once=once, drain_timeout_s=drain_timeout)
    s = connector.stats
    err.print(
        f"stopped: {s.records_enqueued:,} records enqueued in {s.batches_enqueued:,} batches, "
        f"{s.batches_acked:,} batches acknowledged, {s.skipped_rows} rows skipped"
    )
    if once and connector.left_undelivered:
        raise _fail(f"{connector.left_undelivered:,} lot(s) non livré(s) (courtier ou registre "
                    "injoignable ?) : ils restent dans la boîte d'envoi")  # fmt: skip
    if once and s.source_errors:
        raise _fail(f"une source n'a pas pu être lue : {s.last_source_error}")


@connector_app.command("check")
def connector_check(
    config: Annotated[Path, typer.Option("--config", help="Connector configuration (.toml, .yaml or .yml).")],
    stack: StackOption = False,
    data_dir: DataDir = None,
) -> None:
    """Check a connector configuration without sending anything, and print a checklist.

    CSS known, each database reachable, each query runs, required columns present, a sample
    of rows follows the contract, broker and registry reachable with the configured
    credentials. Exit status 1 if any check fails.
    """
    from connectors.config import ConnectorConfig
    from connectors.onboarding import check_connector
    from schemas.organizations import load_organizations

    settings, cfg = _load_connector(config, stack, data_dir)
    assert isinstance(cfg, ConnectorConfig)
    checks = check_connector(cfg, load_organizations(settings.organizations_file))
    for c in checks:
        mark = "[green]✔[/green]" if c.ok else "[red]✘[/red]"
        console.print(f"{mark} {c.name}" + (f" — {c.detail}" if c.detail else ""), highlight=False)
    failed = sum(not c.ok for c in checks)
    if failed:
        raise _fail(f"{failed} vérification(s) en échec")
    flags = " --stack" + (f" --data-dir {data_dir}" if data_dir else "") if stack else ""
    console.print(f"[green]prêt[/green] : `vigie connector run --config {config}{flags}`")


@connector_app.command("contract")
def connector_contract() -> None:
    """Print the columns a source must give, per dataset (generated from the connector's code)."""
    from connectors.onboarding import contract_markdown

    print(contract_markdown())


@connector_app.command("init")
def connector_init(
    css: Annotated[str, typer.Option("--css", help="Organization code (see organizations.csv).")],
    source: Annotated[str, typer.Option("--source", help="SQLAlchemy URL of the local database.")],
    out: Annotated[Path, typer.Option("--out", help="Config file to write.")] = Path("connector.toml"),
    broker: Annotated[
        str | None, typer.Option(help="Kafka bootstrap (default: the running `vigie up`).")
    ] = None,
    registry: Annotated[
        str | None, typer.Option(help="Registry URL (default: the running `vigie up`).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Introspect a local database and write a starter connector config.

    Tables are matched to the datasets by their column names (French and English names of
    Québec school systems); a modification-time column becomes the watermark. A password in
    the URL is not written: the file says ${VIGIE_SOURCE_PASSWORD} instead.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from connectors.config import ConnectorConfigError, check_css
    from connectors.onboarding import starter_config
    from connectors.sources.sql import describe_db_error
    from schemas.organizations import load_organizations

    settings = _settings(data_dir)
    try:
        check_css(css, load_organizations(settings.organizations_file))
    except ConnectorConfigError as exc:
        raise _fail(str(exc), 2) from None
    if out.exists() and not force:
        raise _fail(f"{out} exists (use --force to overwrite)", 2)
    try:
        url = make_url(source)
    except ArgumentError:
        raise _fail("--source is not a database URL (e.g. postgresql+psycopg://user@host/db)", 2) from None
    shown = url.render_as_string(hide_password=False)
    if url.password:  # the file says where the password comes from, not what it is
        shown = url.set(password="VIGIEPASSWORD").render_as_string(hide_password=False)
        shown = shown.replace("VIGIEPASSWORD", "${VIGIE_SOURCE_PASSWORD}")
    broker, registry = _stack_endpoints(settings, broker, registry)
    try:
        text = starter_config(css, source, broker, registry, shown)
    except SQLAlchemyError as exc:
        raise _fail(f"cannot read the source: {describe_db_error(exc)}") from None
    except Exception as exc:  # a driver that is not installed, a file that does not exist
        raise _fail(f"cannot read the source: {type(exc).__name__}: {exc}") from None
    out.write_text(text, encoding="utf-8")
    mapped = text.count("[[sources]]")
    console.print(f"{out}: {mapped} of 3 datasets mapped. Next: `vigie connector check --config {out}`")


@connector_app.command("poll")
def connector_poll(
    config: Annotated[Path, typer.Option("--config", help="Connector configuration (.toml, .yaml or .yml).")],
    repeat: Annotated[
        int, typer.Option(min=1, help="Polls in a row (the later ones show a no-change poll).")
    ] = 1,
    data_dir: DataDir = None,
) -> None:
    """Poll the sources into the outbox without sending, and print how long each poll took.

    What `run` would enqueue stays in the outbox and is sent by the next `run`. Useful to
    size `poll_every_s` on a large source.
    """
    import time

    from connectors.config import ConnectorConfig
    from connectors.publisher import make_producer
    from connectors.runner import Connector

    _, cfg = _load_connector(config, False, data_dir)
    assert isinstance(cfg, ConnectorConfig)
    # Nothing is sent: a quiet producer, so an absent broker does not fill the terminal.
    connector = Connector(
        cfg, producer=make_producer(cfg.broker.bootstrap, {**cfg.broker.config, "log_level": 0})
    )
    connector.sending = False
    try:
        for n in range(1, repeat + 1):
            before = connector.stats.records_enqueued
            started = time.perf_counter()
            connector.poll_sources()
            took = time.perf_counter() - started
            console.print(f"poll {n}: {connector.stats.records_enqueued - before:,} record(s) enqueued in "
                          f"{took:.3f} s; outbox {connector.outbox.depth():,} batch(es)")  # fmt: skip
    finally:
        for source in connector.sources:
            source.close()
        connector.outbox.close()
    if connector.stats.source_errors:
        raise _fail(f"une source n'a pas pu être lue : {connector.stats.last_source_error}")


mappings_app = typer.Typer(help="Data-steward tools for the harmonization mappings.", no_args_is_help=True)
app.add_typer(mappings_app, name="mappings")


@mappings_app.command("report")
def mappings_report(
    css: Annotated[str | None, typer.Option("--css", help="Only this organization.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Per CSS, the local codes and texts seen that no mapping covered, with counts.

    Fix them in streams/mappings/ (per-CSS code lists, keywords, subjects, jobs);
    these values are never stored in the warehouse.
    """
    from dataclasses import asdict

    from rich.table import Table

    from schemas.organizations import load_organizations
    from streams.stewardship import StewardshipLog

    settings = _settings(data_dir)
    if css is not None and css not in load_organizations(settings.organizations_file):
        raise _fail(f"unknown organization code {css!r}", 2)
    entries = []
    if settings.stewardship_file.exists():
        log = StewardshipLog(settings.stewardship_file, settings.stewardship_retention_days)
        try:
            entries = log.report(css)
        finally:
            log.close()
    if json_out:
        print(json.dumps([asdict(e) for e in entries], ensure_ascii=False, indent=2))
        return
    if not entries:
        console.print(f"No unmapped code or text recorded in {settings.data_dir}.")
        return
    table = Table(title="Unmapped codes and texts (not stored in the warehouse)")
    for column in ("CSS", "dataset", "field", "value", "count", "last seen (UTC)"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for e in entries:
        table.add_row(e.css, e.dataset, e.field, e.value, f"{e.count:,}", e.last_seen)
    console.print(table)


@mappings_app.command("set")
def mappings_set(
    css: Annotated[str, typer.Option("--css", help="Organization the mapping belongs to.")],
    category: Annotated[str, typer.Option("--category", help="One of the 12 canonical reasons.")],
    text: Annotated[str | None, typer.Option("--text", help="A motif typed as free text.")] = None,
    code: Annotated[str | None, typer.Option("--code", help="A local absence code.")] = None,
) -> None:
    """Data stewards: map a motif d'absence (free text or local code) to a canonical reason.

    A text joins the CSS's table (exact for that CSS) and the training data of the model
    (every CSS); a code joins the CSS's code table. The mapping version changes: run
    `vigie reharmonize --since DATE --css CODE` to apply it to history.
    """
    from schemas.organizations import load_organizations
    from streams.absence import AbsenceClassifier
    from streams.absence_corpus import CANONICAL_REASONS, CorpusError, set_code_mapping, set_text_mapping

    settings = _settings(None)
    if css not in load_organizations(settings.organizations_file):
        raise _fail(f"unknown organization code {css!r}", 2)
    if category not in CANONICAL_REASONS:
        raise _fail(f"--category must be one of: {', '.join(CANONICAL_REASONS)}", 2)
    if (text is None) == (code is None):
        raise _fail("give exactly one of --text or --code", 2)
    try:
        if text is not None:
            changed = set_text_mapping(settings.mappings_dir, css, text, category)
        else:
            assert code is not None
            changed = set_code_mapping(settings.mappings_dir, css, code, category)
        classifier = AbsenceClassifier.from_dir(settings.mappings_dir, model_cache=settings.model_cache)
    except (CorpusError, ValueError, OSError) as exc:
        raise _fail(f"mapping not saved: {exc}", 2) from None
    found = classifier.classify(css, code, text)
    what = "text" if text is not None else f"code {code!r}"
    if not changed:
        console.print(f"{css}: this {what} already maps to {category}; nothing changed.")
        return
    console.print(
        f"{css}: {what} → [bold]{found.category}[/bold] (by {found.by}). "
        f"Apply it to history with `vigie reharmonize --since YYYY-MM-DD --css {css}`; "
        "a running worker uses it for new data after a restart."
    )


@app.command()
def reharmonize(
    since: Annotated[
        str, typer.Option("--since", help="Replay what the CSS sent from this day (YYYY-MM-DD).")
    ],
    css: Annotated[
        list[str] | None, typer.Option("--css", help="Only these organizations (repeatable); default all.")
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option("--dataset", help="attendance, grades or staff (repeatable); default all."),
    ] = None,
    processes: Annotated[
        int,
        typer.Option(
            min=0,
            max=32,
            help="Stage processes: 0 (default) one per CPU core, the fastest measured on 2 cores "
            "(1 M marks: 26.8 s against 36.0 s in this process); 1 runs the stage in this process.",
        ),
    ] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Re-harmonize history: replay the raw topics through the stage with today's mappings.

    The raw topics keep what each CSS sent; replayed through the same stage with the
    current mapping tables and model, each record keeps its ids and replaces its row in
    the warehouse (nothing doubles). Needs the broker: VIGIE_BROKER_URL and
    VIGIE_REGISTRY_URL, or a `vigie up` running on the data directory. Prints what
    changed, e.g. « 1 234 marques inconnu → maladie ».
    """
    import os
    from datetime import date

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from schemas.contracts import Dataset
    from schemas.organizations import load_organizations
    from streams.pseudonymize import PseudonymKeyError
    from vigie.runtime.reharmonize import ReharmonizeError, format_count
    from vigie.runtime.reharmonize import reharmonize as replay

    settings = _settings(data_dir)
    try:
        start = date.fromisoformat(since)
    except ValueError:
        raise _fail(f"--since {since!r} is not a date (YYYY-MM-DD)", 2) from None
    if start > date.today():
        raise _fail("--since is in the future: there is nothing to replay yet", 2)
    organizations = load_organizations(settings.organizations_file)
    unknown = sorted(set(css or []) - set(organizations))
    if unknown:
        raise _fail(f"unknown organization code(s): {', '.join(unknown)}", 2)
    names = {d.value: d for d in Dataset}
    bad = sorted(set(dataset or []) - set(names))
    if bad:
        raise _fail(f"unknown dataset(s): {', '.join(bad)} (attendance, grades, staff)", 2)
    chosen = [names[d] for d in dict.fromkeys(dataset)] if dataset else list(Dataset)
    if not settings.pseudonym_key and not settings.pseudonym_key_file and settings.embedded_key_file.exists():
        # The running embedded worker's own key: replayed records get the same pseudonyms.
        settings = settings.model_copy(update={"embedded": True})
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
        console=err, transient=True, disable=json_out,
    ) as progress:  # fmt: skip
        task = progress.add_task("reading what the curated topic carries…", total=None)

        def advance(messages: int, records: int) -> None:
            progress.update(task, description=f"replayed {messages:,} messages, {records:,} records")

        try:
            workers = processes or os.cpu_count() or 1
            summary = replay(settings, start, sorted(css or organizations), chosen, workers, advance)
        except (ReharmonizeError, PseudonymKeyError) as exc:
            raise _fail(str(exc)) from None
    if json_out:
        print(json.dumps(summary.to_json(), ensure_ascii=False))
        return
    rate = summary.records / summary.elapsed_s if summary.elapsed_s else 0
    console.print(
        f"{format_count(summary.records)} records replayed since {summary.since} "
        f"(mapping version {summary.mapping_version}) in {summary.elapsed_s:.1f} s "
        f"({format_count(round(rate))} records/s); {format_count(summary.dead_letters)} refused again "
        f"(not resent), {format_count(summary.unmapped)} values still unmapped."
    )
    if not summary.transitions:
        console.print(f"No motif d'absence changed ({format_count(summary.unchanged)} unchanged).")
    for (old, new), n in summary.transitions.most_common():
        console.print(f"« {format_count(n)} marques `{old}` → `{new}` »")
    if summary.transitions:
        console.print(f"{format_count(summary.unchanged)} unchanged, {format_count(summary.new)} new.")


@app.command()
def bench(
    records: Annotated[int, typer.Option(min=1000, help="Attendance marks to push end to end.")] = 300_000,
    latency_rate: Annotated[int, typer.Option(min=100, help="Records/s during the latency phase.")] = 10_000,
    latency_seconds: Annotated[float, typer.Option(min=1, help="Length of the latency phase.")] = 60.0,
    seed: Annotated[int, typer.Option(help="Seed of the generated network.")] = 7,
    runs: Annotated[int, typer.Option(min=1, help="Whole runs; every figure is their median.")] = 1,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Measure the embedded pipeline: records/s end to end, latency, memory, and a baseline.

    Loads --records attendance marks (Avro, one sheet per message) into the raw topics, then
    times the worker from readiness until all are queryable in ClickHouse; then measures
    record→queryable latency at --latency-rate; then times a plain consume → decode →
    insert of the same messages (no processing) into a table of the same shape and reports
    the ratio, with the CPU time per record of each process. Uses a temporary data directory;
    with --runs N, N whole runs and their median.
    """
    from vigie.runtime.bench import run_bench

    settings = _settings(None)
    say = (lambda line: err.print(line)) if json_out else (lambda line: console.print(line))
    result = run_bench(settings, records, latency_rate, latency_seconds, seed, say, runs)
    if json_out:
        print(json.dumps(result.to_json()))
        return
    r = result
    console.print(
        f"[b]{r.events:,} records[/b] end to end in {r.elapsed_s} s: [b]{r.events_per_s:,.0f} records/s[/b] "
        f"(baseline passthrough {r.baseline_events_per_s:,.0f}/s, ratio {r.ratio}); latency at "
        f"{r.latency_rate_per_s:,}/s: p50 {r.p50_latency_s} s, p99 {r.p99_latency_s} s; "
        f"worker peak RSS {r.peak_rss_mb:,.0f} MB; CPU µs/record {r.cpu_us_per_record}; "
        f"load average {r.load_average}"
    )


@app.command()
def worker(data_dir: DataDir = None) -> None:
    """Run the Faust worker alone, against an external broker and registry.

    Stream and sink agents plus the status and metrics web views. `vigie up` starts it
    for you; run it directly with VIGIE_BROKER_URL and VIGIE_REGISTRY_URL set.
    """
    from vigie.runtime.worker import run_worker

    settings = _settings(data_dir)
    if not settings.broker_url or not settings.registry_url:
        raise _fail("the worker needs VIGIE_BROKER_URL and VIGIE_REGISTRY_URL (or use `vigie up`)", 2)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from vigie.runtime.worker import WorkerStartupError

    try:
        run_worker(settings)
    except WorkerStartupError as exc:
        raise _fail(f"le worker ne peut pas démarrer: {exc}") from None


deploy_app = typer.Typer(
    help="Production stack (docker-compose): credentials and access rules.", no_args_is_help=True
)
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("render")
def deploy_render(
    out: Annotated[Path, typer.Option(help="Directory of the generated secrets (outside git).")] = Path(
        "secrets"
    ),
    env_file: Annotated[Path, typer.Option(help="The .env docker-compose reads (written 0600).")] = Path(
        ".env"
    ),
    write_env: Annotated[bool, typer.Option("--env/--no-env", help="Write the .env file.")] = True,
    external_host: Annotated[
        str, typer.Option(help="Host name the CSS connectors reach Kafka and the registry at.")
    ] = "vigie.example.qc.ca",
    organizations: Annotated[
        Path | None, typer.Option(help="Organization list (default: the reference list).")
    ] = None,
) -> None:
    """Écrit les identifiants par CSS (SCRAM), le script d'ACL Kafka, les utilisateurs ClickHouse,
    l'authentification Karapace, la clé de pseudonymisation et le .env du stack docker-compose.

    Les mots de passe existants sont conservés: relancez-la après l'ajout d'un CSS.
    """
    from vigie.deploy.render import RenderError, render

    settings = _settings(None)
    try:
        done = render(organizations or settings.organizations_file, out,
                      env_file if write_env else None, external_host)  # fmt: skip
    except (RenderError, OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"{len(done.principals)} comptes Kafka et leurs ACL écrits dans {done.out}"
                  + (f"; {done.env_file} écrit (0600)" if done.env_file else ""))  # fmt: skip


def main() -> None:
    from vigie.runtime.datadir import DataDirNotPrivate

    try:
        app()
    except DataDirNotPrivate as exc:  # from any command that opens the data dir: one line
        err.print(f"[red]error:[/red] {exc}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
