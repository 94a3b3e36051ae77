"""Pseudonyms are keyed, stable and unlinkable across keys; birth dates become bands."""

from __future__ import annotations

import hmac
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.pseudonymize import (
    STUDENT_AGE_BANDS,
    Pseudonymizer,
    PseudonymKeyError,
    age_band,
    derive_key_id,
    load_pseudonymizer,
)

KEY_A = b"a" * 32
KEY_B = b"b" * 32


@given(st.text(min_size=1, max_size=40))
def test_pseudonym_stable_for_a_key_and_changes_with_the_key(local_id: str) -> None:
    a1 = Pseudonymizer(KEY_A, "ka").pseudonym("laval", "student", local_id)
    a2 = Pseudonymizer(KEY_A, "ka").pseudonym("laval", "student", local_id)
    b = Pseudonymizer(KEY_B, "kb").pseudonym("laval", "student", local_id)
    assert a1 == a2
    assert a1 != b
    assert local_id not in a1 or len(local_id) < 4


@given(st.binary(min_size=16, max_size=200), st.text(max_size=12), st.text(max_size=60))
def test_pseudonyms_are_hmac_sha256_of_kind_css_and_id(key: bytes, css: str, local_id: str) -> None:
    """The precomputed HMAC states give exactly RFC 2104's HMAC-SHA256 for any key length
    (keys longer than SHA-256's block are hashed first): ids already in the warehouse stay
    the ids a redelivery or a re-harmonization computes."""
    p = Pseudonymizer(key, "k")
    for kind in ("student", "staff", "record", "event", "group"):
        expected = hmac.digest(key, f"{kind}\x1f{css}\x1f{local_id}".encode(), "sha256").hex()[:32]
        assert p.keyed(css, kind, local_id) == expected
    assert p.pseudonym(css, "student", local_id) == p.keyed(css, "student", local_id)
    assert p.record_key(css, local_id) == p.keyed(css, "record", local_id)
    assert p.event_id(css, local_id) == p.keyed(css, "event", local_id)


def test_same_local_id_in_two_css_gives_two_pseudonyms() -> None:
    p = Pseudonymizer(KEY_A, "ka")
    assert p.pseudonym("laval", "student", "123") != p.pseudonym("montreal", "student", "123")
    assert p.pseudonym("laval", "student", "123") != p.pseudonym("laval", "staff", "123")


def test_key_never_in_repr_and_short_keys_refused() -> None:
    assert "aaaa" not in repr(Pseudonymizer(KEY_A, "ka"))
    with pytest.raises(PseudonymKeyError):
        Pseudonymizer(b"short", "k")


def test_key_sources(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY_B + b"\n")
    assert load_pseudonymizer(None, key_file, "", None).key == KEY_B
    assert load_pseudonymizer("x" * 20, key_file, "kx", None).key_id == "kx"
    with pytest.raises(PseudonymKeyError, match="cannot read"):
        load_pseudonymizer(None, tmp_path / "missing", "", None)
    with pytest.raises(PseudonymKeyError, match="no pseudonymization key"):
        load_pseudonymizer(None, None, "", None)
    generated = tmp_path / "secrets" / "k"
    first = load_pseudonymizer(None, None, "", generated)
    assert load_pseudonymizer(None, None, "", generated).key == first.key
    assert generated.stat().st_mode & 0o777 == 0o600
    assert first.key_id == derive_key_id(first.key) and first.key.decode() not in first.key_id


@pytest.mark.parametrize(
    ("birth", "on", "band"),
    [(date(2020, 11, 21), date(2026, 11, 20), "5-8"), (date(2020, 11, 20), date(2026, 11, 20), "5-8"),
     (date(2021, 11, 21), date(2026, 11, 20), "0-4"), (date(2008, 1, 1), date(2026, 11, 20), "18+"),
     (None, date(2026, 11, 20), None)],
)  # fmt: skip
def test_age_bands(birth: date | None, on: date, band: str | None) -> None:
    assert age_band(birth, on, STUDENT_AGE_BANDS, "18+") == band
