"""``vigie demo``: the embedded stack plus a simulated network of the 72 organizations."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from connectors.publisher import ConnectorPublisher, flush, make_producer
from connectors.simulator import simulated_network
from dashboards.status import OrganizationStatus
from schemas.organizations import Organization, load_organizations
from schemas.wire import AvroCodec
from vigie.runtime.client import fetch_status
from vigie.runtime.supervisor import EmbeddedRuntime
from vigie.settings import Settings


@dataclass(frozen=True)
class DemoResult:
    """What the simulated network sent and what the warehouse shows."""

    sent_records: int
    statuses: list[OrganizationStatus]
    drained: bool


def _accounted(statuses: list[OrganizationStatus]) -> int:
    """Records the pipeline has accounted for: stored, dead-lettered or withheld."""
    return sum(
        sum(d.events + d.withheld_no_consent for d in s.datasets.values()) + s.dead_letter_records
        for s in statuses
    )


def _simulate(
    broker: str, registry_url: str, organizations: dict[str, Organization], minutes: float,
    seed: int, rate: float, heartbeat_every_s: float, console: Console,
) -> int:  # fmt: skip
    """Publish the simulated network for ``minutes``; return the records the broker acknowledged.

    The producer lives only inside this function, so it is gone before the broker stops.
    """
    codec = AvroCodec.from_url(registry_url)
    producer = make_producer(broker)
    network = simulated_network(organizations, seed)
    publishers = {
        css.org.code: ConnectorPublisher(css.org.code, css.source_system, codec, producer) for css in network
    }
    seconds = max(1, round(minutes * 60))
    sent = 0
    last_beat = 0.0
    with Progress(
        TextColumn("[b]simulating the network[/b]"), BarColumn(),
        TextColumn("{task.fields[records]:>10,} records sent"), TimeRemainingColumn(),
        console=console, transient=False,
    ) as progress:  # fmt: skip
        task = progress.add_task("sim", total=seconds, records=0)
        started = time.monotonic()
        for tick in range(seconds):
            for css in network:
                for dataset, batch in css.tick(tick, rate):
                    publishers[css.org.code].publish(dataset, batch)
            if time.monotonic() - last_beat >= heartbeat_every_s:
                for publisher in publishers.values():
                    publisher.heartbeat()
                last_beat = time.monotonic()
            producer.poll(0)
            sent = sum(sum(p.stats.acked_records.values()) for p in publishers.values())
            progress.update(task, advance=1, records=sent)
            # Keep to simulated real time: one tick per second.
            time.sleep(max(0.0, started + tick + 1 - time.monotonic()))
    pending = flush(producer, 60.0)
    if pending:
        console.print(f"[red]{pending} messages were not acknowledged by the broker[/red]")
    sent = sum(sum(p.stats.acked_records.values()) for p in publishers.values())
    failed = sum(p.stats.failed_messages for p in publishers.values())
    if failed:
        console.print(f"[red]{failed} messages failed delivery[/red]")
    return sent


def run_demo(
    settings: Settings, minutes: float, seed: int, rate: float, console: Console,
    heartbeat_every_s: float = 5.0, drain_timeout_s: float = 120.0,
) -> DemoResult:  # fmt: skip
    """Start the runtime, simulate the network for ``minutes``, wait until every record
    sent is accounted for, and return the status table."""
    organizations = load_organizations(settings.organizations_file)
    runtime = EmbeddedRuntime(settings)
    console.print("[b]Starting the embedded stack[/b] (Tansu, registry, Faust worker, chDB)…")
    info = runtime.start(say=lambda line: console.print(f"  {line}"))
    try:
        sent = _simulate(info.broker, info.registry_url, organizations, minutes, seed, rate,
                         heartbeat_every_s, console)  # fmt: skip
        console.print(f"Sent {sent:,} records; waiting for the pipeline to account for all of them…")
        deadline = time.monotonic() + drain_timeout_s
        statuses, _ = fetch_status(settings)
        while _accounted(statuses) < sent and time.monotonic() < deadline:
            time.sleep(1.0)
            statuses, _ = fetch_status(settings)
        return DemoResult(sent, statuses, _accounted(statuses) >= sent)
    finally:
        console.print("Stopping the embedded stack…")
        runtime.stop()
