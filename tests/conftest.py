"""Shared fixtures: real registry stand-in over HTTP, one chDB store per test process
(chDB allows a single data directory per process; tests use separate databases)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from schemas.organizations import Organization, load_organizations
from schemas.schools import School, load_schools
from schemas.wire import AvroCodec
from sinks.migrate import migrate_up
from sinks.warehouse import ChdbWarehouse
from streams.consent import ConsentRegistry
from streams.harmonize import Harmonizer
from streams.process import StageContext
from streams.pseudonymize import Pseudonymizer
from vigie.runtime.registry import RegistryServer
from vigie.settings import Settings

_MODEL_CACHE = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """One model cache for the whole session, inherited by the xdist workers and every `vigie`
    subprocess: the motif model is trained once per run, as a deployment trains it once per corpus, instead
    of by every worker and stage process each test starts."""
    if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("VIGIE_MODEL_CACHE_DIR"):
        return  # an xdist worker: the controller's cache, locked per corpus, so trained once in all
    # `make test` keeps the cache in .venv/test-models (VIGIE_TEST_MODEL_CACHE), trained beside
    # ruff and mypy and kept between runs: it is keyed by the corpus's fingerprint, so a changed
    # corpus or recipe trains anew. Otherwise a cache of this session's own.
    cache = os.environ.get("VIGIE_TEST_MODEL_CACHE", "")
    if not cache:
        cache = tempfile.mkdtemp(prefix="vigie-test-models-")
        config.stash[_MODEL_CACHE] = cache
    os.environ["VIGIE_MODEL_CACHE_DIR"] = cache
    # Trained here, before any test's clock starts: with its sentence embedding the model takes
    # 1–3 min to train on two cores, too long to be paid inside the first test that needs it
    # (each test has 300 s, and the workers would wait on its lock).
    subprocess.run([sys.executable, "-m", "tests.session_model", cache], check=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _MODEL_CACHE in config.stash:
        shutil.rmtree(config.stash[_MODEL_CACHE], ignore_errors=True)


SETTINGS = Settings()
TEST_KEY = b"test-key-0123456789abcdef-not-a-secret"


@pytest.fixture(scope="session")
def organizations() -> dict[str, Organization]:
    return load_organizations(SETTINGS.organizations_file)


@pytest.fixture(scope="session")
def harmonizer() -> Harmonizer:
    return Harmonizer(SETTINGS.mappings_dir, Settings().model_cache)  # the session's cache


@pytest.fixture(scope="session")
def consent() -> ConsentRegistry:
    return ConsentRegistry.load(SETTINGS.consent_file)


@pytest.fixture(scope="session")
def schools() -> dict[str, dict[str, School]]:
    return load_schools(SETTINGS.schools_file)


@pytest.fixture(scope="session")
def stage_context(organizations, consent, harmonizer, schools) -> StageContext:
    return StageContext(organizations, consent, Pseudonymizer(TEST_KEY, "ktest"), harmonizer, schools)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = RegistryServer("127.0.0.1", 0, tmp_path_factory.mktemp("registry") / "registry.json").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def codec(registry: RegistryServer) -> AvroCodec:
    return AvroCodec.from_url(registry.url)


@pytest.fixture(scope="session")
def chdb_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture(scope="session")
def chdb_session(chdb_store: Path) -> Iterator[ChdbWarehouse]:
    wh = ChdbWarehouse(chdb_store, "bootstrap")
    yield wh
    wh.close()


@pytest.fixture
def empty_warehouse(chdb_session: ChdbWarehouse) -> ChdbWarehouse:
    """A fresh database in the process's single chDB store, not migrated."""
    return chdb_session.for_database(f"t_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def warehouse(empty_warehouse: ChdbWarehouse) -> ChdbWarehouse:
    """A fresh, migrated database."""
    migrate_up(empty_warehouse)
    return empty_warehouse


@pytest.fixture(scope="session")
def school_day() -> date:
    return date(2026, 11, 20)
