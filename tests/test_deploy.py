"""`vigie deploy render`: per-CSS credentials, Kafka ACLs (each principal gets exactly its
topics), Karapace auth, ClickHouse users; modes of the files; the scripts run."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from schemas.contracts import AVRO_DIR, Dataset, all_topics, curated_topic, raw_topic
from schemas.organizations import load_organizations
from vigie.deploy.render import (
    REGISTRY,
    WORKER,
    css_clickhouse_user,
    css_principal,
    render,
)
from vigie.settings import Settings

ORGS = Settings().organizations_file
CODES = list(load_organizations(ORGS))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("deploy")
    render(ORGS, base / "secrets", base / ".env", "vigie.test")
    return base


@dataclass(frozen=True)
class Rule:
    principal: str
    operation: str
    kind: str
    name: str
    pattern: str

    def covers(self, kind: str, name: str) -> bool:
        if self.kind != kind:
            return False
        return name.startswith(self.name) if self.pattern == "prefixed" else name == self.name


def _parse_acls(script: Path) -> list[Rule]:
    """The ACLs the script adds, read back from its kafka-acls.sh command lines."""
    rules = []
    for line in script.read_text().splitlines():
        if not line.startswith("acl "):
            continue
        args = shlex.split(line)[1:]
        assert args[0] == "--add" and "--deny-principal" not in args
        opts: dict[str, str] = {}
        rest = args[1:]
        while rest:  # --cluster takes no value; every other option does
            flag = rest.pop(0)
            opts[flag] = "kafka-cluster" if flag == "--cluster" else rest.pop(0)
        kind = next(k for k in ("topic", "group", "cluster") if f"--{k}" in opts)
        rules.append(Rule(opts["--allow-principal"].removeprefix("User:"), opts["--operation"], kind,
                          opts[f"--{kind}"], opts["--resource-pattern-type"]))  # fmt: skip
    return rules


def _universe(codes: list[str]) -> list[str]:
    """Every topic name that exists or will: the pipeline's, per-CSS heartbeats (raw.<css>.heartbeat,
    where heartbeats are moving), Faust's internal topics, the registry's."""
    return [
        *all_topics(codes),
        *(f"raw.{c}.heartbeat" for c in codes),
        "vigie-__assignor-__leader",
        "_schemas",
    ]


def _allowed(rules: list[Rule], principal: str, operation: str, topics: list[str]) -> set[str]:
    return {t for t in topics for r in rules
            if r.principal == principal and r.operation in (operation, "All") and r.covers("topic", t)}  # fmt: skip


def test_each_css_writes_exactly_its_raw_topics_and_reads_nothing(rendered: Path) -> None:
    rules = _parse_acls(rendered / "secrets" / "kafka" / "acls.sh")
    topics = _universe(CODES)
    for css in CODES:
        own = {raw_topic(css, ds) for ds in Dataset} | {f"raw.{css}.heartbeat"}
        assert _allowed(rules, css_principal(css), "Write", topics) == own
        assert _allowed(rules, css_principal(css), "Read", topics) == set()
        assert {(r.kind, r.operation) for r in rules if r.principal == css_principal(css)} == {
            ("topic", "Write"),
            ("topic", "Describe"),
        }  # no group, no cluster, no Create, no Delete


def test_only_the_worker_reads_raw_and_writes_curated_and_dead_letters(rendered: Path) -> None:
    rules = _parse_acls(rendered / "secrets" / "kafka" / "acls.sh")
    topics = _universe(CODES)
    raw = {t for t in topics if t.startswith("raw.")}
    pipeline_out = {curated_topic(ds) for ds in Dataset} | {"deadletter"}
    assert raw <= _allowed(rules, WORKER, "Read", topics)
    assert _allowed(rules, WORKER, "Write", topics) & raw == set()  # the worker never forges CSS data
    assert pipeline_out <= _allowed(rules, WORKER, "Write", topics)
    principals = {r.principal for r in rules}
    assert principals == {WORKER, REGISTRY, *(css_principal(c) for c in CODES)}
    for principal in principals - {WORKER}:
        assert _allowed(rules, principal, "Write", topics) & pipeline_out == set(), principal
        assert _allowed(rules, principal, "Read", topics) & raw == set(), principal
    assert _allowed(rules, REGISTRY, "Write", topics) == {"_schemas"}
    assert all(r.pattern in ("literal", "prefixed") and r.name for r in rules)


def test_a_css_whose_code_extends_another_cannot_reach_its_topics(tmp_path: Path) -> None:
    """Hostile CSS: 'laval' must not write 'raw.laval-nord.…' (the prefix ends with a dot)."""
    orgs = tmp_path / "orgs.csv"
    lines = ORGS.read_text(encoding="utf-8").splitlines()
    laval = next(line for line in lines if line.startswith("laval,"))
    orgs.write_text("\n".join([*lines, laval.replace("laval,", "laval-nord,", 1)]) + "\n", encoding="utf-8")
    render(orgs, tmp_path / "s", None, "h")
    rules = _parse_acls(tmp_path / "s" / "kafka" / "acls.sh")
    topics = _universe([*CODES, "laval-nord"])
    assert _allowed(rules, "css-laval", "Write", topics) == {raw_topic("laval", ds) for ds in Dataset} | {
        "raw.laval.heartbeat"
    }
    bad = tmp_path / "bad.csv"
    bad.write_text(lines[0] + "\n" + laval.replace("laval,", "laval x;rm -rf,", 1) + "\n", encoding="utf-8")
    from vigie.deploy.render import RenderError

    with pytest.raises(RenderError, match="cannot name a principal"):
        render(bad, tmp_path / "t", None, "h")


def test_secrets_have_private_modes_and_are_kept_across_renders(rendered: Path, tmp_path: Path) -> None:
    out = rendered / "secrets"
    assert stat.S_IMODE((rendered / ".env").stat().st_mode) == 0o600
    for path in out.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o007 == 0, f"{path} is readable by others ({oct(mode)})"
    for bundle in (out / "connectors").iterdir():
        assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    passwords = dict(line.split(" ", 1) for line in (out / "passwords.txt").read_text().splitlines())
    assert len(set(passwords.values())) == len(passwords)  # every credential its own
    assert all(len(p) >= 32 for k, p in passwords.items() if k != "env:VIGIE_KAFKA_CLUSTER_ID")
    assert len(passwords["env:VIGIE_KAFKA_CLUSTER_ID"]) == 22  # KRaft's format: a base64 UUID
    # No password in what containers read as configuration (hashes only) or in the ACL script.
    for name in ("kafka/acls.sh", "karapace/auth.json", "clickhouse/users.sql"):
        text = (out / name).read_text()
        assert not any(p in text for p in passwords.values()), name
    again = tmp_path / "again"
    shutil.copytree(out, again)
    render(ORGS, again, None, "vigie.test")
    assert (again / "passwords.txt").read_text() == (out / "passwords.txt").read_text()
    assert (again / "pseudonym.key").read_text() == (out / "pseudonym.key").read_text()


def test_connector_bundle_is_the_css_credential(rendered: Path) -> None:
    import tomllib

    out = rendered / "secrets"
    passwords = dict(line.split(" ", 1) for line in (out / "passwords.txt").read_text().splitlines())
    bundle = tomllib.loads((out / "connectors" / "laval.toml").read_text())
    assert bundle["css"] == "laval"
    assert bundle["broker"]["config"]["sasl.username"] == "css-laval"
    assert bundle["broker"]["config"]["sasl.password"] == passwords["css-laval"]
    assert bundle["broker"]["config"]["security.protocol"] == "SASL_SSL"


def _karapace_hash(salt: str, password: str) -> str:
    # Karapace 4.1.0 karapace/auth.py hash_password for sha512: PBKDF2, 5000 rounds, base64.
    return base64.b64encode(hashlib.pbkdf2_hmac("sha512", password.encode(), salt.encode(), 5000)).decode()


def test_karapace_auth_lets_a_css_register_raw_contracts_only(rendered: Path) -> None:
    out = rendered / "secrets"
    passwords = dict(line.split(" ", 1) for line in (out / "passwords.txt").read_text().splitlines())
    auth = json.loads((out / "karapace" / "auth.json").read_text())
    users = {u["username"]: u for u in auth["users"]}
    laval = users["css-laval"]
    assert laval["password_hash"] == _karapace_hash(laval["salt"], passwords["registry:css-laval"])
    subjects = []
    for path in AVRO_DIR.glob("*.avsc"):
        raw = json.loads(path.read_text())
        subjects.append(f"Subject:{raw['namespace']}.{raw['name']}")

    def can_write(user: str, resource: str) -> bool:  # Karapace: re.match on the resource
        return any(p["username"] == user and p["operation"] == "Write" and re.match(p["resource"], resource)
                   for p in auth["permissions"])  # fmt: skip

    assert {s for s in subjects if can_write("css-laval", s)} == {
        s for s in subjects if s.startswith("Subject:qc.vigie.raw.") or s.endswith(".ConnectorHeartbeat")
    }
    assert not can_write("css-laval", "Subject:qc.vigie.curated.AttendanceBatch")
    assert all(can_write(WORKER, s) for s in subjects)


def test_clickhouse_users_hold_roles_only_and_parse(rendered: Path, warehouse) -> None:
    sql = (rendered / "secrets" / "clickhouse" / "users.sql").read_text()
    statements = [s.strip() for s in sql.split(";") if s.strip() and not s.strip().startswith("--")]
    assert not any(re.search(r"GRANT\s+\w+.*\sON\s", s) for s in statements)  # no table grant
    grants = {tuple(s.split()[1::2]) for s in statements if s.startswith("GRANT ")}
    assert grants == {("vigie_ministry", "ministere")} | {
        (f"vigie_css_{c.replace('-', '_')}", css_clickhouse_user(c)) for c in CODES
    }
    for statement in statements:  # the engine's own parser (chDB has no access control to run them)
        escaped = statement.replace("\\", "\\\\").replace("'", "\\'")
        assert warehouse.query(f"SELECT formatQuery('{escaped}') AS q")[0]["q"]


def test_acl_script_passes_shellcheck_and_runs(rendered: Path, tmp_path: Path) -> None:
    script = rendered / "secrets" / "kafka" / "acls.sh"
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: `make tools` installs Debian's shellcheck package"
    assert subprocess.run([shellcheck, str(script)], capture_output=True, text=True).returncode == 0
    # Run it for real against a stand-in kafka-acls.sh that records its arguments.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    recorder = bin_dir / "kafka-acls.sh"
    recorder.write_text('#!/bin/sh\nprintf "%s\\n" "$*" >> "$RECORD"\n')
    recorder.chmod(0o755)
    record = tmp_path / "record.txt"
    env = {**os.environ, "KAFKA_BIN": str(bin_dir), "RECORD": str(record)}
    done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    calls = record.read_text().splitlines()
    assert len(calls) == len(_parse_acls(script))
    assert all(c.startswith("--bootstrap-server 127.0.0.1:9095 --add --allow-principal User:") for c in calls)


def test_the_documented_command_writes_env_and_key(tmp_path: Path) -> None:
    """`vigie deploy render` as a user runs it: .env and the key with private modes, no traceback on
    bad input."""
    import sys

    env = {**os.environ, "COLUMNS": "300"}
    cmd = [sys.executable, "-m", "vigie.cli", "deploy", "render"]
    done = subprocess.run([*cmd, "--out", str(tmp_path / "secrets"), "--env-file", str(tmp_path / ".env")],
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    key = (tmp_path / "secrets" / "pseudonym.key").read_text().strip()
    assert len(bytes.fromhex(key)) == 32
    assert (
        f"VIGIE_PSEUDONYM_KEY_FILE={tmp_path / 'secrets' / 'pseudonym.key'}"
        in (tmp_path / ".env").read_text()
    )
    bad = subprocess.run([*cmd, "--out", str(tmp_path / "x"), "--organizations", str(tmp_path / "none.csv")],
                         capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert len([line for line in bad.stderr.splitlines() if line.strip()]) == 1
