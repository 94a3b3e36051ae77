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
)
console = Console()
if not console.is_terminal:
    # Piped output (CI logs, files) gets the full table rather than 80 columns.
    console = Console(width=120)
err = Console(stderr=True)

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
        render_status(result.statuses, console)
    if not result.drained:
        raise _fail("not every record sent was accounted for before the drain timeout")


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
    render_status(statuses, console)
    where = {"worker": "running worker", "server": "ClickHouse server"}.get(source, str(settings.data_dir))
    console.print(f"[dim]source: {where}[/dim]")


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
    console.print(f"{out}: {len(results)} panels ({shown} with rows), from the {source}")


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
    <data-dir>/secrets/warehouse.password (0600; its path is printed, never its value).
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
) -> None:
    """Classify motifs d'absence read on stdin, one per line; print one JSON object per line.

    Each object has text, category (one of the 12 canonical reasons), confidence, mapped
    and by ('local_code' or 'text'). Unknown or empty input gives 'inconnu', never an error.
    """
    import sys

    from schemas.organizations import load_organizations
    from streams.absence import AbsenceClassifier

    settings = _settings(None)
    if css is not None and css not in load_organizations(settings.organizations_file):
        raise _fail(f"unknown organization code {css!r} (see `vigie status` for the list)", 2)
    classifier = AbsenceClassifier.from_dir(settings.mappings_dir)
    for line in sys.stdin:
        text = line.rstrip("\r\n")
        found, by = None, "text"
        if css is not None:
            found, by = classifier.classify_code(css, text), "local_code"
        if found is None or not found.mapped:
            found, by = classifier.classify_text(text), "text"
        out = {"text": text, "category": found.category, "confidence": found.confidence,
               "mapped": found.mapped, "by": by}  # fmt: skip
        print(json.dumps(out, ensure_ascii=False), flush=True)


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
        str, typer.Option(help="Bootstrap written into the connector configs.")
    ] = "127.0.0.1:9092",
    registry: Annotated[
        str, typer.Option(help="Registry URL written into the configs.")
    ] = "http://127.0.0.1:8081",
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

    settings = _settings(None)
    organizations = load_organizations(settings.organizations_file)
    unknown = sorted(set(css or []) - set(organizations))
    if unknown:
        raise _fail(f"unknown organization code(s): {', '.join(unknown)}", 2)
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


@connector_app.command("run")
def connector_run(
    config: Annotated[Path, typer.Option("--config", help="Connector configuration (.toml, .yaml or .yml).")],
    once: Annotated[
        bool, typer.Option("--once", help="Poll every source once, send everything, then exit.")
    ] = False,
    metrics_port: Annotated[
        int, typer.Option(help="Serve Prometheus metrics on this port (0: none).", min=0, max=65535)
    ] = 0,
) -> None:
    """Run one CSS's connector: detect changes, keep them in the durable outbox, send them.

    Sources are SQL tables or queries (any SQLAlchemy URL) and file-drop folders (CSV or
    XLSX). Nothing leaves the outbox before the broker acknowledged it; a restart after a
    crash or an outage resumes where it stopped. SIGTERM or Ctrl-C stops it cleanly.
    """
    import signal

    from connectors.config import ConnectorConfigError, load_connector_config
    from connectors.runner import Connector

    settings = _settings(None)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        cfg = load_connector_config(config)
    except ConnectorConfigError as exc:
        raise _fail(str(exc), 2) from None
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
    connector.run(once=once)
    s = connector.stats
    err.print(
        f"stopped: {s.records_enqueued:,} records enqueued in {s.batches_enqueued:,} batches, "
        f"{s.batches_acked:,} batches acknowledged, {s.skipped_rows} rows skipped"
    )


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
    app()


if __name__ == "__main__":
    main()
