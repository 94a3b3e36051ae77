"""The `vigie` command as a user meets it: help, clear errors, status on a data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vigie.cli import app

runner = CliRunner()
COMMANDS = ["up", "demo", "status", "migrate", "worker", "mappings report"]


def test_help_on_every_subcommand() -> None:
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    for command in COMMANDS:
        assert command.split()[0] in top.output
        result = runner.invoke(app, [*command.split(), "--help"])
        assert result.exit_code == 0, command
        assert "--data-dir" in result.output
    assert runner.invoke(app, ["classify", "--help"]).exit_code == 0


def test_status_json_lists_the_72_organizations_on_a_fresh_data_dir(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "--json", "--data-dir", str(tmp_path / "new")])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 72
    assert {r["code"] for r in rows} >= {"montreal", "kativik", "riveraine"}
    assert all(set(r["datasets"]) == {"attendance", "grades", "staff"} for r in rows)
    kativik = next(r for r in rows if r["code"] == "kativik")
    assert kativik["datasets"]["staff"]["consented"] is False
    assert not (tmp_path / "new" / "warehouse").exists()  # reading status creates nothing


def test_status_table_is_readable(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "montreal" in result.output and "sans consentement" in result.output  # French by default
    assert "Présences" in result.output and "Organisme" in result.output
    english = runner.invoke(app, ["status", "--data-dir", str(tmp_path)], env={"VIGIE_LANGUAGE": "en"})
    assert english.exit_code == 0 and "no consent" in english.output and "Attendance" in english.output


@pytest.mark.parametrize("args", [["demo", "--minutes", "-1"], ["demo", "--minutes", "abc"],
                                  ["status", "--bogus"], ["nope"]])  # fmt: skip
def test_bad_arguments_give_a_clear_error_not_a_traceback(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vigie.cli", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip()


def test_worker_without_broker_explains_what_it_needs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIE_")}
    result = subprocess.run([sys.executable, "-m", "vigie.cli", "worker", "--data-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert result.returncode == 2
    assert "VIGIE_BROKER_URL" in result.stderr and "Traceback" not in result.stderr


def test_invalid_environment_setting_is_reported(tmp_path: Path) -> None:
    env = {**os.environ, "VIGIE_SINK_BATCH_MAX": "lots"}
    result = subprocess.run([sys.executable, "-m", "vigie.cli", "status", "--data-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert result.returncode == 2
    assert "sink_batch_max" in result.stderr and "Traceback" not in result.stderr


def test_classify_reads_stdin_and_prints_json_lines() -> None:
    lines = "rdv médecin\n01\n\nchez le chiro\nxyz qwerty\n"
    result = runner.invoke(app, ["classify", "--css", "montreal"], input=lines)
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["category"] for o in out] == ["sante_rdv", "maladie", "inconnu", "sante_rdv", "inconnu"]
    assert out[1]["by"] == "local_code" and out[0]["by"] in {"rule", "model"}  # the layer that decided
    assert all({"text", "category", "confidence"} <= set(o) for o in out)
    assert out[0]["text"] == "rdv médecin"


def test_classify_without_css_does_not_use_local_codes() -> None:
    result = runner.invoke(app, ["classify"], input="01\n")
    assert json.loads(result.stdout)["category"] == "inconnu"


def test_classify_refuses_an_unknown_css() -> None:
    result = subprocess.run([sys.executable, "-m", "vigie.cli", "classify", "--css", "atlantis"],
                            input="x\n", capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "unknown organization code 'atlantis'" in result.stderr


def test_mappings_report_on_an_empty_data_dir(tmp_path: Path) -> None:
    result = runner.invoke(app, ["mappings", "report", "--json", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and json.loads(result.stdout) == []
