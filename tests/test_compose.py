"""The production compose stack, read the way docker-compose reads it (no Docker engine here):
it validates with the rendered .env and not without; start order waits on health and finished
init jobs; data lives in volumes; Kafka is SASL everywhere but loopback, deny-by-default; the
registry and Grafana authenticate; every script the stack runs passes shellcheck and runs."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from vigie.deploy.render import render
from vigie.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SCRIPTS = [
    DEPLOY / "kafka" / "init.sh",
    DEPLOY / "clickhouse" / "create-users.sh",
    DEPLOY / "tls" / "make-dev-certs.sh",
]
JOBS = {"kafka-init", "migrate", "clickhouse-users", "sample-sis"}


def _compose() -> str:
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is missing: `make tools` installs Debian's docker-compose package"
    return compose


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`vigie deploy render` + the dev certificates, then the resolved compose file."""
    base = tmp_path_factory.mktemp("stack")
    render(Settings().organizations_file, base / "secrets", base / ".env", "kafka.example.qc.ca")
    certs = subprocess.run(["sh", str(DEPLOY / "tls" / "make-dev-certs.sh"), str(base / "secrets" / "tls"),
                            "kafka.example.qc.ca"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert certs.returncode == 0, certs.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIGIE_", "GRAFANA_"))}
    cmd = [_compose(), "--env-file", str(base / ".env"), "-f", str(ROOT / "docker-compose.yml"),
           "--project-directory", str(ROOT), "config"]  # fmt: skip
    checked = subprocess.run([*cmd, "-q"], capture_output=True, text=True, timeout=60, env=env)
    assert checked.returncode == 0, checked.stderr
    resolved = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, check=True).stdout
    dotenv = dict(line.split("=", 1) for line in (base / ".env").read_text().splitlines() if "=" in line
                  and not line.startswith("#"))  # fmt: skip
    return {"config": yaml.safe_load(resolved), "base": base, "env": dotenv}


def test_without_the_rendered_env_the_stack_refuses_to_validate(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIGIE_", "GRAFANA_"))}
    (tmp_path / "empty.env").write_text("")
    missing = subprocess.run([_compose(), "-f", str(ROOT / "docker-compose.yml"), "--project-directory",
                              str(ROOT), "--env-file", str(tmp_path / "empty.env"), "config", "-q"],
                             capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert missing.returncode != 0 and "set it in .env" in missing.stderr


def test_start_order_waits_on_health_and_finished_jobs(stack) -> None:
    services = stack["config"]["services"]
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "on-failure"), name
        for dep, how in service.get("depends_on", {}).items():
            condition = how["condition"]
            assert condition in ("service_healthy", "service_completed_successfully"), (name, dep)
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits on {dep}, which has no healthcheck"
            else:
                assert dep in JOBS and services[dep]["restart"] == "on-failure", (name, dep)
        if name not in JOBS:
            assert "healthcheck" in service or name == "connector", f"{name} has no healthcheck"
    assert services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # One migration runner in the stack: the worker waits for it, so never races it.
    assert services["migrate"]["command"][0] == "migrate"


def test_data_lives_in_volumes(stack) -> None:
    services = stack["config"]["services"]

    def mounts(name: str) -> dict[str, str]:
        out = {}
        for v in services[name].get("volumes", []):
            if isinstance(v, dict):  # long syntax (newer docker compose)
                out[v["target"]] = v["source"] if v["type"] == "volume" else "bind"
            else:  # short syntax, as docker-compose 1.29 prints it: source:target[:mode]
                source, target = v.split(":")[:2]
                out[target] = "bind" if source.startswith(("/", ".")) else source
        return out

    kafka = services["kafka"]
    assert mounts("kafka")[kafka["environment"]["KAFKA_LOG_DIRS"]] == "kafka-data"
    assert mounts("clickhouse")["/var/lib/clickhouse"] == "clickhouse-data"
    assert mounts("worker")["/data"] == "vigie-data"
    assert mounts("connector")["/data"] == "connector-data"
    assert mounts("prometheus")["/prometheus"] == "prometheus-data"
    assert mounts("alertmanager")["/alertmanager"] == "alertmanager-data"
    assert mounts("grafana")["/var/lib/grafana"] == "grafana-data"
    assert "--storage.tsdb.path=/prometheus" in services["prometheus"]["command"]
    # The image's user owns /data, so a fresh named volume there is writable by it.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "chown vigie:vigie /data" in dockerfile and "USER vigie" in dockerfile
    assert "'.[mssql]'" in dockerfile  # the SQL Server driver ships in the image


def _listeners(value: str) -> dict[str, str]:
    return dict(item.split("://", 1) for item in value.split(","))


def test_kafka_is_sasl_everywhere_but_loopback_and_denies_by_default(stack) -> None:
    env = stack["config"]["services"]["kafka"]["environment"]
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    bound = _listeners(env["KAFKA_LISTENERS"])
    for name, address in bound.items():
        if protocols[name] == "PLAINTEXT":  # unauthenticated: loopback only
            assert address.startswith("127.0.0.1:"), name
    assert protocols["EXTERNAL"] == "SASL_SSL" and protocols["INTERNAL"] == "SASL_PLAINTEXT"
    assert _listeners(env["KAFKA_ADVERTISED_LISTENERS"])["EXTERNAL"] == "kafka.example.qc.ca:9094"
    assert stack["config"]["services"]["kafka"]["ports"][0]["target"] == 9094  # only TLS leaves the host
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert env["KAFKA_SUPER_USERS"] == "User:ANONYMOUS"  # = loopback listeners only, see above
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert env["CLUSTER_ID"] == stack["env"]["VIGIE_KAFKA_CLUSTER_ID"]
    # apache/kafka's configure script: CLUSTER_ID in KRaft, KAFKA_OPTS with a SASL listener.
    assert "java.security.auth.login.config=/etc/vigie/kafka_jaas.conf" in env["KAFKA_OPTS"]
    assert "ScramLoginModule required" in (DEPLOY / "kafka" / "kafka_jaas.conf").read_text()
    tls = stack["base"] / "secrets" / "tls"
    for key in ("KAFKA_SSL_KEYSTORE_FILENAME", "KAFKA_SSL_KEYSTORE_CREDENTIALS", "KAFKA_SSL_KEY_CREDENTIALS"):
        assert (tls / env[key]).exists(), key  # the files the image's configure script requires
    init = stack["config"]["services"]["kafka-init"]
    assert init["network_mode"] == "service:kafka"  # reaches the loopback listener, nothing else does


def test_clients_authenticate_and_replication_is_a_setting(stack) -> None:
    services = stack["config"]["services"]
    worker = services["worker"]["environment"]
    assert worker["VIGIE_BROKER_URL"] == "kafka:9092"  # the INTERNAL (SCRAM) listener
    assert worker["VIGIE_BROKER_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert worker["VIGIE_BROKER_SASL_USERNAME"] == "vigie-worker"
    assert worker["VIGIE_BROKER_SASL_PASSWORD"] == stack["env"]["VIGIE_KAFKA_WORKER_PASSWORD"]
    assert worker["VIGIE_REGISTRY_URL"].startswith("https://vigie-worker:")
    assert (
        worker["VIGIE_TOPIC_REPLICATION_FACTOR"] == "1" and worker["VIGIE_TOPIC_MIN_INSYNC_REPLICAS"] == "1"
    )
    registry = services["schema-registry"]
    assert registry["entrypoint"] == ["/bin/bash", "/opt/karapace/start.sh", "registry"]  # Karapace 4.1.0
    assert registry["image"].endswith(":4.1.0")
    assert registry["environment"]["KARAPACE_REGISTRY_AUTHFILE"].startswith("/run/secrets/")
    assert registry["environment"]["KARAPACE_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == stack["env"]["GRAFANA_ADMIN_PASSWORD"]
    users_xml = (DEPLOY / "clickhouse" / "users.xml").read_text()
    assert '<default remove="remove"/>' in users_xml and "ministere" not in users_xml


def test_no_secret_in_the_repository_files(stack) -> None:
    values = [v for k, v in stack["env"].items() if "PASSWORD" in k or k == "VIGIE_KAFKA_CLUSTER_ID"]
    assert values
    for path in [ROOT / "docker-compose.yml", *DEPLOY.rglob("*")]:
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            assert not any(v in text for v in values), path
    for path in (".env", "secrets/pseudonym.key", ".env.local"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, capture_output=True)
        assert ignored.returncode == 0, f"{path} must be git-ignored"
    kept = subprocess.run(["git", "check-ignore", "-q", "deploy/env.example"], cwd=ROOT, capture_output=True)
    assert kept.returncode == 1  # the documented example stays in the repository
    for name in ("kafka_scram_users", "karapace_auth", "clickhouse_users", "pseudonym_key", "registry_key"):
        source = Path(stack["config"]["secrets"][name]["file"])
        mode = stat.S_IMODE(source.stat().st_mode)
        assert mode & 0o007 == 0, f"{source} is readable by others"


def test_every_script_the_stack_runs_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: `make tools` installs Debian's shellcheck package"
    done = subprocess.run([shellcheck, "--shell=sh", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def _recorder(bin_dir: Path, name: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text(
        '#!/bin/sh\nprintf "%s %s\\n" "$(basename "$0")" "$*" >> "$RECORD"\ncat > /dev/null 2>&1 || true\n'
    )
    tool.chmod(0o755)


def test_kafka_init_creates_every_user_then_the_acls(stack, tmp_path: Path) -> None:
    secrets_dir = stack["base"] / "secrets"
    _recorder(tmp_path / "bin", "kafka-configs.sh")
    _recorder(tmp_path / "bin", "kafka-acls.sh")
    record = tmp_path / "calls.txt"
    env = {**os.environ, "KAFKA_BIN": str(tmp_path / "bin"), "RECORD": str(record)}
    done = subprocess.run(["sh", str(DEPLOY / "kafka" / "init.sh"), str(secrets_dir / "kafka" / "scram-users.txt"),
                           str(secrets_dir / "kafka" / "acls.sh")], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    calls = record.read_text().splitlines()
    users = [line.split()[0] for line in (secrets_dir / "kafka" / "scram-users.txt").read_text().splitlines()]
    scram = [c for c in calls if c.startswith("kafka-configs.sh")]
    assert [c.split("--entity-name ")[1] for c in scram] == users
    assert all("SCRAM-SHA-512=[iterations=8192,password=" in c for c in scram)
    first_acl = next(i for i, c in enumerate(calls) if c.startswith("kafka-acls.sh"))
    assert first_acl == len(scram)  # users first, then ACLs
    # A hostile user name in the file stops the job before anything runs with it.
    bad = tmp_path / "bad.txt"
    bad.write_text("css-x;rm secret\n")
    refused = subprocess.run(["sh", str(DEPLOY / "kafka" / "init.sh"), str(bad), "/dev/null"], env=env,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode != 0 and "refusing user name" in refused.stderr


def test_clickhouse_users_job_feeds_the_rendered_sql(stack, tmp_path: Path) -> None:
    _recorder(tmp_path / "bin", "clickhouse-client")
    record = tmp_path / "calls.txt"
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "RECORD": str(record),
           "VIGIE_CLICKHOUSE_WRITER_PASSWORD": stack["env"]["VIGIE_CLICKHOUSE_WRITER_PASSWORD"]}  # fmt: skip
    users_sql = stack["base"] / "secrets" / "clickhouse" / "users.sql"
    done = subprocess.run(["sh", str(DEPLOY / "clickhouse" / "create-users.sh"), str(users_sql)], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert record.read_text().startswith("clickhouse-client --host clickhouse --user vigie_writer")
    no_password = {k: v for k, v in env.items() if k != "VIGIE_CLICKHOUSE_WRITER_PASSWORD"}
    refused = subprocess.run(["sh", str(DEPLOY / "clickhouse" / "create-users.sh"), str(users_sql)],
                             env=no_password, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode != 0


def test_dev_certificates_chain_to_the_ca_and_are_reused(stack) -> None:
    tls = stack["base"] / "secrets" / "tls"
    for cert in ("kafka.crt", "registry.crt"):
        verified = subprocess.run(["openssl", "verify", "-CAfile", str(tls / "ca.crt"), str(tls / cert)],
                                  capture_output=True, text=True)  # fmt: skip
        assert verified.returncode == 0, verified.stdout + verified.stderr
    sans = subprocess.run(["openssl", "x509", "-in", str(tls / "kafka.crt"), "-noout", "-ext", "subjectAltName"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "DNS:kafka.example.qc.ca" in sans and "DNS:kafka" in sans
    assert stat.S_IMODE((tls / "ca.key").stat().st_mode) == 0o600
    ca_before = (tls / "ca.crt").read_bytes()
    again = subprocess.run(["sh", str(DEPLOY / "tls" / "make-dev-certs.sh"), str(tls), "kafka.example.qc.ca"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert again.returncode == 0 and (tls / "ca.crt").read_bytes() == ca_before  # connectors keep trusting it


def test_alerts_go_to_alertmanager(stack) -> None:
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"] and "alertmanager" in stack["config"]["services"]
    amtool = shutil.which("amtool")
    assert amtool, "amtool is missing: `make tools` installs Debian's prometheus-alertmanager package"
    checked = subprocess.run([amtool, "check-config", str(DEPLOY / "alertmanager.yml")], capture_output=True,
                             text=True)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_sample_connector_config_loads_as_css_laval(stack, monkeypatch) -> None:
    from connectors.config import load_connector_config
    from connectors.simulate import TABLES, _query

    for key in ("VIGIE_SAMPLE_KAFKA_PASSWORD", "VIGIE_SAMPLE_REGISTRY_PASSWORD"):
        monkeypatch.setenv(key, stack["env"][key])
    monkeypatch.setenv("VIGIE_SAMPLE_SOURCE_URL", "sqlite:////data/sample/laval/source.sqlite")
    config = load_connector_config(DEPLOY / "connector" / "connector.toml")
    assert config.css == "laval" and config.broker.config["sasl.username"] == "css-laval"
    # The queries are the simulator's own: the sample-sis job's database matches them.
    assert [s.query for s in config.sources] == [_query(t, c) for t, c in TABLES.values()]
