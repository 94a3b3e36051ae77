"""Local codes, free text and scales → the network's vocabulary."""

from __future__ import annotations

import pytest

from streams.absence import CANONICAL_REASONS
from streams.harmonize import BANDS, Harmonizer, Unmapped, band_of
from streams.rejection import RecordRefused


@pytest.mark.parametrize(
    ("css", "code", "reason"),
    [("montreal", "01", "maladie"), ("montreal", "12L", "sante_rdv"), ("capitale", "rdv", "sante_rdv"),
     ("english-montreal", "BEREAV", "deuil"), ("laval", "T1", "transport_meteo")],
)  # fmt: skip
def test_local_absence_codes(harmonizer: Harmonizer, css: str, code: str, reason: str) -> None:
    found = harmonizer.absence.classify(css, code, None)
    assert (found.category, found.mapped) == (reason, True)


def test_unknown_local_code_is_unmapped_not_an_error(harmonizer: Harmonizer) -> None:
    found = harmonizer.absence.classify("montreal", "13X", None)
    assert (found.category, found.mapped) == ("inconnu", False)
    # A CSS code list does not leak to another CSS.
    assert harmonizer.absence.classify("laval", "01", None).category == "inconnu"


@pytest.mark.parametrize(
    ("text", "reason"),
    [("absent pour maladie", "maladie"), ("MALADE", "maladie"), ("rdv médecin", "sante_rdv"),
     ("chez le chiro", "sante_rdv"), ("méd.", "sante_rdv"), ("Rendez-vous optométriste", "sante_rdv"),
     ("funérailles grand-père", "deuil"), ("tempete", "transport_meteo"), ("sick", "maladie"),
     ("doctor appointment", "sante_rdv"), ("famile", "famille"), ("non motivée", "non_motivee"),
     ("vacances en famille", "voyage"), ("snow storm", "transport_meteo")],
)  # fmt: skip
def test_free_text(harmonizer: Harmonizer, text: str, reason: str) -> None:
    assert harmonizer.absence.classify_text(text).category == reason


@pytest.mark.parametrize("text", ["", "   ", "xyzzy", "???", "a" * 500])
def test_unclassifiable_text_gives_inconnu(harmonizer: Harmonizer, text: str) -> None:
    found = harmonizer.absence.classify_text(text)
    assert found.category == "inconnu" and not found.mapped


def test_all_mapped_reasons_are_canonical(harmonizer: Harmonizer) -> None:
    assert len(CANONICAL_REASONS) == 12
    for css in ("montreal", "capitale", "english-montreal", "laval"):
        for code in ("01", "MAL", "SICK", "M1", "PER", "P1"):
            assert harmonizer.absence.classify(css, code, None).category in CANONICAL_REASONS


@pytest.mark.parametrize(
    ("scale", "result", "percent", "band", "passed"),
    [("percent", "87", 87.0, "75-100", True), ("percent", "60", 60.0, "0-60", True),
     ("percent", "74,4", 74.4, "61-74", True), ("percent", "59%", 59.0, "0-60", False),
     ("letter", "b+", 84.0, "75-100", True), ("letter", "E", 45.0, "0-60", False),
     ("pass_fail", "S", None, None, True), ("pass_fail", "échec", None, None, False)],
)  # fmt: skip
def test_grade_scales(harmonizer, scale, result, percent, band, passed) -> None:
    out = harmonizer.grade(scale, result)
    assert (out.percent, out.band, out.passed) == (percent, band, passed)


@pytest.mark.parametrize(("scale", "result"), [("percent", "abs?"), ("percent", "120"), ("letter", "Z"),
                                               ("pass_fail", "maybe"), ("stanine", "5")])  # fmt: skip
def test_bad_grades_are_invalid(harmonizer: Harmonizer, scale: str, result: str) -> None:
    with pytest.raises(RecordRefused):
        harmonizer.grade(scale, result)


def test_bands_cover_0_to_100() -> None:
    assert {band_of(p / 2) for p in range(0, 201)} == set(BANDS)


def test_status_jobs_leaves(harmonizer: Harmonizer) -> None:
    assert harmonizer.status("pres") == "present"
    assert harmonizer.status("L") == "retard"
    with pytest.raises(RecordRefused):
        harmonizer.status("?")
    assert harmonizer.job_class("montreal", "4201") == "enseignant"
    assert harmonizer.job_class("laval", "TCH") == "enseignant"
    assert harmonizer.job_class("laval", "4201") is None
    assert harmonizer.leave_type("cnesst") == "accident_travail"
    assert harmonizer.leave_type("ZZ") == "autre"


def test_mapping_version_follows_the_mapping_files(tmp_path, harmonizer: Harmonizer) -> None:
    import shutil

    from vigie.settings import Settings

    copy = tmp_path / "mappings"
    shutil.copytree(Settings().mappings_dir, copy)
    cache = Settings().model_cache  # the session's: the same corpus is not trained again
    assert Harmonizer(copy, cache).version == harmonizer.version
    (copy / "leave_types.csv").write_text((copy / "leave_types.csv").read_text() + "SAB,personnel\n")
    assert Harmonizer(copy, cache).version != harmonizer.version


def test_unmapped_codes_and_texts_are_reported_not_guessed(harmonizer: Harmonizer) -> None:
    unmapped: list[Unmapped] = []
    rec = {"status_code": "A", "absence_code": "13X", "absence_text": None}
    assert harmonizer.attendance("montreal", rec, unmapped)["absence_reason"] == "inconnu"
    rec = {"status_code": "ABS", "absence_code": None, "absence_text": "voir agenda"}
    assert harmonizer.attendance("phares", rec, unmapped)["reason_mapped"] is False
    staff = harmonizer.staff("laval", {"job_code": "ZZ9", "leave_type": "SAB"}, unmapped)
    assert staff == {"job_class": "inconnu", "leave_type": "autre"}
    batch = {"scale": "percent", "subject_code": "HIS", "competency_code": "LIRE"}
    grades = harmonizer.grades("laval", batch, {"result": "71", "sex": "f"}, unmapped)
    assert (grades["subject_code"], grades["competency_code"], grades["sex"]) == ("inconnu", "lire", "F")
    assert unmapped == [
        Unmapped("montreal", "attendance", "absence_code", "13X"),
        Unmapped("phares", "attendance", "absence_text", "voir agenda"),
        Unmapped("laval", "staff", "job_code", "ZZ9"),
        Unmapped("laval", "staff", "leave_type", "SAB"),
        Unmapped("laval", "grades", "subject_code", "HIS"),
    ]


def test_subject_codes_are_per_css_with_network_defaults(harmonizer: Harmonizer) -> None:
    assert harmonizer.subject("montreal", "132") == "francais"
    assert harmonizer.subject("laval", "132") is None
    assert harmonizer.subject("english-montreal", "ELA") == "english_language_arts"


def test_success_breakdowns_take_local_spellings_and_report_the_rest(harmonizer: Harmonizer) -> None:
    batch = {"scale": "percent", "subject_code": "MAT", "competency_code": "C1"}
    base = {"result": "72", "sex": "F"}
    unmapped: list[Unmapped] = []
    fr = harmonizer.grades("laval", batch, {**base, "language_group": " FR ", "immigration": "2",
                                            "intervention_plan": True}, unmapped)  # fmt: skip
    assert (fr["language_group"], fr["immigration"], fr["intervention_plan"]) == ("francophone", "2e", True)
    en = harmonizer.grades(
        "laval", batch, {**base, "language_group": "anglais", "immigration": "3e+"}, unmapped
    )
    assert (en["language_group"], en["immigration"], en["intervention_plan"]) == ("anglophone", "3e+", None)
    assert unmapped == []
    odd = harmonizer.grades(
        "laval", batch, {**base, "language_group": "créole", "immigration": "?"}, unmapped
    )
    assert odd["language_group"] is None and odd["immigration"] is None
    assert {(u.field, u.value) for u in unmapped} == {("language_group", "créole"), ("immigration", "?")}
    # Records from connectors that predate these fields still harmonize.
    assert harmonizer.grades("laval", batch, base, [])["language_group"] is None


def test_result_bands_round_half_up() -> None:
    """Results are rounded half up: 74.5 % is in 75-100, 60.5 % in 61-74 (not half to even)."""
    from streams.harmonize import band_of

    assert band_of(74.5) == "75-100"
    assert band_of(74.49) == "61-74"
    assert band_of(60.5) == "61-74"
    assert band_of(60.4) == "0-60"


def test_a_late_mark_without_motif_is_not_unmapped(harmonizer) -> None:
    """A late arrival with no motif has nothing to map: no 'inconnu', nothing for the stewards;
    an absence without a motif, or a late arrival with a motif nobody can read, still is."""
    late: list = []
    out = harmonizer.attendance("laval", {"status_code": "R", "absence_code": "", "absence_text": " "}, late)
    assert out == {"status": "retard", "absence_reason": None, "reason_mapped": True} and late == []
    absent = harmonizer.attendance("laval", {"status_code": "A", "absence_code": "", "absence_text": ""}, [])
    assert absent["absence_reason"] == "inconnu" and not absent["reason_mapped"]
    unread: list = []
    odd = harmonizer.attendance("laval", {"status_code": "R", "absence_code": "", "absence_text": "zzqx"}, unread)
    assert odd["absence_reason"] == "inconnu" and not odd["reason_mapped"] and len(unread) == 1
