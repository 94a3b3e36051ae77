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
COMMANDS = ["up", "demo", "status", "migrate", "worker"]


def test_help_on_every_subcommand() -> None:
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    for command in COMMANDS:
        assert command in top.output
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, command
        assert "--data-dir" in result.output


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
    assert "montreal" in result.output and "no consent" in result.output


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
