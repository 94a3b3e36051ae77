"""The stream stage's pure functions called as tests write their inputs: with datetimes and
dates. The stage reads the contracts' plain view (epoch milliseconds, days since 1970-01-01,
``Contract.plain``); these wrappers go through Avro both ways, as the pipeline does (the
connector encodes, the stage decodes plain, encodes plain, the sink decodes)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from typing import Any

from schemas.contracts import (
    CURATED_RECORDS_FIELD,
    RAW_RECORDS_FIELD,
    Dataset,
    curated_contract,
    raw_contract,
)
from schemas.wire import as_logical, as_plain
from streams.process import Outcome, StageContext, process_batch
from streams.validate import validate_record


def plain_batch(dataset: Dataset, batch: dict[str, Any]) -> dict[str, Any]:
    """A raw batch as the stage decodes it."""
    return as_plain(raw_contract(dataset), batch)


def logical_records(dataset: Dataset, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Curated records as a sink decodes them."""
    wrapped = {"mapping_version": "", "processed_at": 0, CURATED_RECORDS_FIELD[dataset]: records}
    return list(as_logical(curated_contract(dataset), wrapped)[CURATED_RECORDS_FIELD[dataset]])


def run_stage(css: str, dataset: Dataset, batch: dict[str, Any], ctx: StageContext) -> Outcome:
    """``process_batch`` on a raw batch written with datetimes; curated records and kept
    refused records come back with datetimes and dates too."""
    out = process_batch(css, dataset, plain_batch(dataset, batch), ctx)
    field = RAW_RECORDS_FIELD[dataset]
    rejections = []
    for rejection in out.rejections:
        if rejection.record is not None:
            single = {**plain_batch(dataset, {**batch, field: []}), field: [rejection.record]}
            rejection = replace(rejection, record=as_logical(raw_contract(dataset), single)[field][0])
        rejections.append(rejection)
    return Outcome(logical_records(dataset, out.records), rejections, out.unmapped)


def validate(
    dataset: Dataset, batch: dict[str, Any], rec: dict[str, Any], today: date, now: datetime | None = None
) -> None:
    """``validate_record`` on a batch and a record written with datetimes."""
    field = RAW_RECORDS_FIELD[dataset]
    plain = plain_batch(dataset, {**batch, field: [rec]})
    validate_record(dataset, plain, plain[field][0], today, now)
