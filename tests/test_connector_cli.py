"""`vigie connector …` as a CSS technician runs it: refusals are one line, `--once` tells the truth,
`check` sends nothing and says what is wrong, `init` writes a config that passes `check`."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import date
from importlib.metadata import version
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from connectors.onboarding import contract_markdown
from schemas.contracts import HEARTBEAT_CONTRACT, Dataset, heartbeat_topic, load_contract, raw_topic
from tests.connector_fixtures import POSTGRES_URL, SourceTable, attendance_row
from tests.embedded import TEST_ENV
from vigie.runtime.broker import TansuBroker, ensure_topics

README = Path(__file__).parent.parent / "README.md"


def vigie(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vigie.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **TEST_ENV})  # fmt: skip


def _config(tmp_path: Path, css: str, bootstrap: str, registry: str, source: str) -> Path:
    path = tmp_path / "connector.toml"
    path.write_text(f"""
css = "{css}"
outbox = "outbox.sqlite"
poll_every_s = 0.2
heartbeat_every_s = 30
[broker]
bootstrap = "{bootstrap}"
[registry]
url = "{registry}"
{source}
""")
    return path


def _sql(table: SourceTable, query: str | None = None) -> str:
    what = f'query = "{query}"' if query else f'table = "{table.name}"'
    return f"""[[sources]]
kind = "sql"
dataset = "attendance"
source_system = "GPI"
url = "{table.url}"
{what}
"""


def _depth(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])


@pytest.fixture
def broker(tmp_path: Path):
    b = TansuBroker(0, tmp_path / "tansu.log").start()
    ensure_topics(
        b.bootstrap, [*(raw_topic(c, ds) for c in ("laval", "iles") for ds in Dataset), *(heartbeat_topic(c) for c in ("laval", "iles"))]
    )
    yield b
    b.stop()


def _beats(bootstrap: str, codec, css: str = "laval") -> list[dict]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "hb", "auto.offset.reset": "earliest"})
    # A connector beats on its own CSS's heartbeat topic (raw.<css>.heartbeat).
    consumer.assign([TopicPartition(heartbeat_topic(css), 0, OFFSET_BEGINNING)])
    try:
        got = consumer.consume(50, timeout=10)
        return [codec.decode(m.value(), load_contract(HEARTBEAT_CONTRACT)) for m in got if m.error() is None]
    finally:
        consumer.close()


def test_version() -> None:
    result = vigie("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"vigie {version('vigie')}"


def test_an_unknown_css_is_refused_with_the_closest_code(tmp_path: Path) -> None:
    table = SourceTable(f"sqlite:///{tmp_path / 'source.sqlite'}")
    config = _config(tmp_path, "montrael", "127.0.0.1:1", "http://127.0.0.1:1", _sql(table))
    result = vigie("connector", "run", "--config", str(config), "--once")
    assert result.returncode == 2
    assert "montrael" in result.stderr and "« montreal »" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "outbox.sqlite").exists()  # refused before anything was read


def test_a_missing_table_is_one_line_and_a_failure(tmp_path: Path, registry) -> None:
    table = SourceTable(f"sqlite:///{tmp_path / 'source.sqlite'}")
    source = _sql(table).replace(table.name, "presences_absentes")
    config = _config(tmp_path, "laval", "127.0.0.1:1", registry.url, source)
    result = vigie("connector", "run", "--config", str(config), "--once", "--drain-timeout", "2")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "no such table" in line]
    assert errors and all(len(line) < 300 for line in errors)


def test_once_fails_while_batches_stay_undelivered(tmp_path: Path, registry) -> None:
    table = SourceTable(f"sqlite:///{tmp_path / 'source.sqlite'}")
    table.insert([attendance_row(n) for n in range(10)])
    config = _config(tmp_path, "laval", "127.0.0.1:1", registry.url, _sql(table))  # nobody listens on :1
    result = vigie("connector", "run", "--config", str(config), "--once", "--drain-timeout", "3")
    assert result.returncode == 1, result.stderr
    assert "non livré" in result.stderr
    assert _depth(tmp_path / "outbox.sqlite") > 0  # kept for the next run


@pytest.mark.integration
def test_once_beats_after_its_sends(tmp_path: Path, broker, registry, codec) -> None:
    table = SourceTable(f"sqlite:///{tmp_path / 'source.sqlite'}")
    table.insert([attendance_row(n, group=f"G{n % 7}") for n in range(70)])
    config = _config(tmp_path, "laval", broker.bootstrap, registry.url, _sql(table))
    result = vigie("connector", "run", "--config", str(config), "--once")
    assert result.returncode == 0, result.stderr
    beats = [b for b in _beats(broker.bootstrap, codec) if b["css"] == "laval"]
    assert beats[0]["outbox_depth"] > 0  # the first beat leaves before the sends…
    assert beats[-1]["outbox_depth"] == 0  # …the last one after them: the network sees it drained
    assert beats[-1]["last_send_at"] is not None


@pytest.mark.integration
def test_refused_rows_travel_in_the_heartbeat(tmp_path: Path, broker, registry, codec) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    header = "school_code;group_code;period;sheet_date;student_local_id;last_name;status_code\n"
    rows = "".join(f"E1;G1;1;2026-11-20;ST{n};Côté;P\n" for n in range(5)) + "E1;G1;1;31/02;ST9;Roy;P\n"
    (drop / "presences.csv").write_text(header + rows, encoding="utf-8")
    source = f'[[sources]]\nkind = "file_drop"\ndataset = "attendance"\nsource_system = "Excel"\n' \
             f'folder = "{drop}"\nsettle_s = 0\n'  # fmt: skip
    config = _config(tmp_path, "iles", broker.bootstrap, registry.url, source)
    result = vigie("connector", "run", "--config", str(config), "--once")
    assert result.returncode == 0, result.stderr
    last = [b for b in _beats(broker.bootstrap, codec, "iles") if b["css"] == "iles"][-1]
    assert last["rejected_rows"] == 1 and last["rejected_files"] == 0
    assert "ligne 7" in last["last_rejection"] and "sheet_date" in last["last_rejection"]
    assert "31/02" not in last["last_rejection"] and "Roy" not in last["last_rejection"]
    assert "presences" not in last["last_rejection"]  # a file name can be anything a secretary typed


@pytest.mark.integration
def test_check_passes_a_good_config_and_sends_nothing(tmp_path: Path, broker, registry) -> None:
    table = SourceTable(f"sqlite:///{tmp_path / 'source.sqlite'}")
    table.insert([attendance_row(n) for n in range(5)])
    config = _config(tmp_path, "laval", broker.bootstrap, registry.url, _sql(table))
    result = vigie("connector", "check", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "✘" not in result.stdout and "colonnes requises" in result.stdout and "échantillon" in result.stdout
    )
    assert not (tmp_path / "outbox.sqlite").exists()


def test_check_names_each_problem(tmp_path: Path, registry) -> None:
    table = SourceTable(f"sqlite:///{tmp_path / 'source.sqlite'}")
    table.insert([attendance_row(n) for n in range(5)])
    query = f"SELECT school_code, group_code, period, sheet_date, student_local_id FROM {table.name}"
    config = _config(tmp_path, "laval", "127.0.0.1:1", registry.url, _sql(table, query))
    result = vigie("connector", "check", "--config", str(config))
    assert result.returncode == 1
    out = result.stdout
    assert "✘ attendance (query) : colonnes requises — manquantes : status_code" in out
    assert "✘ courtier 127.0.0.1:1" in out and "✔ registre" in out
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_init_writes_a_config_that_passes_check(tmp_path: Path, broker, registry, organizations) -> None:
    from connectors.simulate import simulate_network

    simulate_network({"laval": organizations["laval"]}, tmp_path / "sim", 3, 1, 0.005, date(2026, 11, 20),
                     "x:1", "http://x")  # fmt: skip
    out = tmp_path / "starter.toml"
    db = tmp_path / "sim" / "laval" / "source.sqlite"
    result = vigie("connector", "init", "--css", "laval", "--source", f"sqlite:///{db}", "--out", str(out),
                   "--broker", broker.bootstrap, "--registry", registry.url)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "3 of 3 datasets mapped" in result.stdout
    text = out.read_text()
    assert text.count('watermark = "modifie_le"') == 3
    assert "date_presence AS sheet_date" in text
    check = vigie("connector", "check", "--config", str(out))
    assert check.returncode == 0, check.stdout


def test_init_refuses_an_unknown_css_and_keeps_passwords_out(tmp_path: Path) -> None:
    result = vigie("connector", "init", "--css", "lavall", "--source", "sqlite:///x.sqlite")
    assert result.returncode == 2 and "« laval »" in result.stderr
    out = tmp_path / "c.toml"
    table = SourceTable(POSTGRES_URL)  # an attendance table to map
    result = vigie("connector", "init", "--css", "laval", "--out", str(out), "--broker", "b:1", "--registry",
                   "http://r", "--source", "postgresql+psycopg://postgres:s3cret@127.0.0.1:5432/test")  # fmt: skip
    assert result.returncode == 0, result.stderr
    table.drop()
    text = out.read_text()
    assert "s3cret" not in text and "postgres:${VIGIE_SOURCE_PASSWORD}@127.0.0.1" in text


def test_the_readme_shows_the_contract_the_code_enforces() -> None:
    assert contract_markdown() in README.read_text(encoding="utf-8")


def test_simulate_points_configs_at_the_running_stack(tmp_path: Path) -> None:
    data_dir = tmp_path / "vigie"
    data_dir.mkdir()
    (data_dir / "runtime.json").write_text(json.dumps({
        "pid": 1, "worker_pid": 2, "broker": "127.0.0.1:40123", "registry_url": "http://127.0.0.1:40124",
        "web_url": "http://127.0.0.1:40125", "started_at": "now"}))  # fmt: skip
    result = vigie("simulate", "--out", str(tmp_path / "sim"), "--css", "iles", "--scale", "0.01",
                   "--data-dir", str(data_dir))  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "sim" / "iles" / "connector.toml").read_text()
    assert 'bootstrap = "127.0.0.1:40123"' in text and 'url = "http://127.0.0.1:40124"' in text


def test_once_gives_up_when_the_outbox_is_full_and_nobody_takes_it(tmp_path: Path, registry) -> None:
    table = SourceTable(f"sqlite:///{tmp_path / 'source.sqlite'}")
    table.insert([attendance_row(n, group=f"G{n % 10}") for n in range(100)])
    config = _config(tmp_path, "laval", "127.0.0.1:1", registry.url, _sql(table))
    config.write_text(
        config.read_text().replace(
            'outbox = "outbox.sqlite"', 'outbox = "outbox.sqlite"\noutbox_max_rows = 2'
        )
    )
    result = vigie("connector", "run", "--config", str(config), "--once", "--drain-timeout", "3", timeout=90)
    assert result.returncode == 1 and "non livré" in result.stderr
