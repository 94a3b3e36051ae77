"""A connector's configuration file (TOML or YAML): one connector per CSS.

String values may reference environment variables as ``${NAME}`` so that passwords
stay out of the file (and out of the repository and the logs).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.contracts import Dataset

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConnectorConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BrokerConfig(_Frozen):
    """Kafka bootstrap servers, plus librdkafka settings passed through (TLS, SASL…)."""

    bootstrap: str
    config: dict[str, str | int | bool] = Field(default_factory=dict)


class RegistryConfig(_Frozen):
    """Schema registry URL, plus client settings passed through (basic auth, TLS…)."""

    url: str
    config: dict[str, str] = Field(default_factory=dict)


class SqlSourceConfig(_Frozen):
    """A table or query of a local database, polled for new, changed and deleted rows."""

    kind: Literal["sql"]
    dataset: Dataset
    source_system: str
    url: str = Field(description="SQLAlchemy URL: postgresql+psycopg://…, sqlite:///…, mssql+pyodbc://…")
    query: str | None = None
    table: str | None = None
    key: list[str] | None = Field(None, description="Columns naming a row; default per dataset.")
    watermark: str | None = Field(
        None,
        description="Column that grows on every change: a modification time or SQL Server "
        "rowversion. Only newer rows are read; without it every poll reads the whole table.",
    )
    lookback_s: float = Field(
        300.0,
        ge=0,
        description="Each poll also re-reads rows up to this many seconds before the previous poll "
        "(rowversion or number watermarks: this many units), for transactions committed late.",
    )
    detect_deletes: bool = True
    delete_window_column: str | None = Field(
        None,
        description="Date column bounding deletion detection (default per dataset: sheet_date, "
        "evaluation_date, effective_date).",
    )
    delete_check_every_s: float = Field(
        60.0,
        ge=0,
        description="Without other changes, deletions are looked for at most this often (a count "
        "per day of the window: the dearest part of a no-change poll on a large table).",
    )
    delete_window_days: int | None = Field(
        14, ge=1, description="Deletions are looked for in rows of the last N days (null: the whole table)."
    )

    @model_validator(mode="after")
    def _one_of_query_or_table(self) -> SqlSourceConfig:
        if (self.query is None) == (self.table is None):
            raise ValueError("give exactly one of 'query' or 'table'")
        if self.table is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", self.table):
            raise ValueError(f"table {self.table!r} is not a plain table name")
        for name in (self.watermark, self.delete_window_column):
            if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"column {name!r} is not a plain column name")
        return self


class FileDropSourceConfig(_Frozen):
    """A folder where CSV or XLSX exports are dropped; each file is processed once."""

    kind: Literal["file_drop"]
    dataset: Dataset
    source_system: str
    folder: Path
    columns: dict[str, str] = Field(default_factory=dict, description="Local column name → Vigie name.")
    key: list[str] | None = None
    settle_s: float = Field(2.0, description="A file must be unchanged this long before it is read.")
    max_bytes: int = Field(
        200_000_000, ge=1, description="Larger files are refused with a reason (not read)."
    )
    full_export: bool = Field(
        False,
        description="Each file is a complete export of the dataset: rows of the previous file "
        "missing from the next one are sent as deletions.",
    )


SourceConfig = Annotated[SqlSourceConfig | FileDropSourceConfig, Field(discriminator="kind")]


class ConnectorConfig(_Frozen):
    """Everything one CSS's connector needs."""

    css: str
    connector_id: str = ""
    outbox: Path = Field(description="SQLite file of the durable outbox (and change-detection state).")
    broker: BrokerConfig
    registry: RegistryConfig
    sources: list[SourceConfig] = Field(min_length=1)
    poll_every_s: float = 10.0
    heartbeat_every_s: float = 30.0
    outbox_max_rows: int = Field(10_000, description="Sources are not polled while the outbox is this full.")
    max_in_flight: int = 500
    batch_max_records: int = 500

    @property
    def name(self) -> str:
        return self.connector_id or f"{self.css}-connector"


def _expand(value: Any) -> Any:
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match[1]
            if name not in os.environ:
                raise ConnectorConfigError(f"environment variable {name} is not set")
            return os.environ[name]

        return _ENV_REF.sub(lookup, value)
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def check_css(css: str, organizations: Iterable[str]) -> None:
    """Refuse an organization code that is not one of the network's, naming the closest one:
    a typo would otherwise send everything to topics nobody reads."""
    codes = list(organizations)
    if css in codes:
        return
    from rapidfuzz import fuzz, process

    best = process.extractOne(css, codes, scorer=fuzz.WRatio)
    hint = f" Vouliez-vous dire « {best[0]} » ?" if best and best[1] >= 60 else ""
    raise ConnectorConfigError(
        f"css « {css} » n'est pas l'un des {len(codes)} organismes du réseau.{hint} "
        "(codes : schemas/reference/organizations.csv)"
    )


def load_connector_config(path: Path, organizations: Iterable[str] | None = None) -> ConnectorConfig:
    """Read and validate a TOML (.toml) or YAML (.yaml/.yml) connector configuration; with
    ``organizations``, refuse a ``css`` that is not one of them."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConnectorConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in {".yaml", ".yml"}:
            data = yaml.safe_load(text)
        else:
            raise ConnectorConfigError(f"{path}: use a .toml, .yaml or .yml file")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConnectorConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConnectorConfigError(f"{path}: expected a mapping at the top level")
    base = path.parent
    try:
        config = ConnectorConfig.model_validate(_expand(data))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConnectorConfigError(f"{path}: {problems}") from None
    if organizations is not None:
        check_css(config.css, organizations)
    # Relative paths are relative to the configuration file, not to where it is run from.
    sources = [
        s.model_copy(update={"folder": base / s.folder}) if isinstance(s, FileDropSourceConfig) else s
        for s in config.sources
    ]
    return config.model_copy(update={"outbox": base / config.outbox, "sources": sources})
