"""The motif d'absence classifier against a labelled development set (French and English,
typos, missing accents, abbreviations)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from streams.absence import CANONICAL_REASONS, AbsenceClassifier, Classification, cross_validate, normalize
from streams.absence_corpus import (
    Context,
    CorpusError,
    Example,
    augment,
    learned_texts,
    read_context,
    read_labelled,
    set_code_mapping,
    set_text_mapping,
    training_examples,
    training_files,
)
from streams.absence_evaluate import evaluate
from streams.absence_model import TextModel, load_model
from streams.harmonize import Harmonizer
from tests.corpus import copy_mappings
from vigie.cli import app
from vigie.settings import Settings

DEV_SET = Path(__file__).parent / "data" / "absence_reasons_dev.csv"


def _dev_set() -> list[tuple[str, str]]:
    with DEV_SET.open(encoding="utf-8", newline="") as f:
        return [(r["text"], r["category"]) for r in csv.DictReader(f)]


def test_dev_set_is_large_and_varied() -> None:
    rows = _dev_set()
    assert len(rows) >= 300
    assert {c for _, c in rows} == set(CANONICAL_REASONS)
    assert sum(any(ch in t for ch in "éèàêç") for t, _ in rows) >= 30  # accented French
    assert sum(t.isascii() and t.lower() in {"sick", "flu", "dentist", "funeral"} for t, _ in rows) >= 4


def test_accuracy_on_the_development_set(harmonizer: Harmonizer) -> None:
    rows = _dev_set()
    wrong = [(t, c, harmonizer.absence.classify_text(t).category) for t, c in rows]
    wrong = [w for w in wrong if w[1] != w[2]]
    accuracy = 1 - len(wrong) / len(rows)
    assert accuracy >= 0.97, f"accuracy {accuracy:.3f}; misclassified: {wrong}"


@given(st.text(max_size=200))
def test_any_text_gives_a_canonical_category_never_an_error(harmonizer: Harmonizer, text: str) -> None:
    found = harmonizer.absence.classify_text(text)
    assert found.category in CANONICAL_REASONS
    assert 0.0 <= found.confidence <= 1.0
    assert found.mapped == (found.category != "inconnu")


def test_normalize_strips_case_accents_and_punctuation() -> None:
    assert normalize("Rendez-vous d'Éric, À L'HÔPITAL!") == "rendez vous d eric a l hopital"


HOLDOUT = Path(__file__).parent / "data" / "absence_reasons_holdout.csv"


def test_accuracy_on_the_held_out_set_does_not_regress(harmonizer: Harmonizer) -> None:
    """A set written after the lexicon was tuned, never tuned on (measured 0.90 when written):
    a guard against regressions and a check that the dev-set figure is not pure overfitting.
    Do not add its misses to the lexicon; write new held-out examples instead."""
    with HOLDOUT.open(encoding="utf-8", newline="") as f:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(f)]
    right = sum(harmonizer.absence.classify_text(t).category == c for t, c in rows)
    assert right / len(rows) >= 0.85


# -- the layered classifier and its corpus (issue 17) --------------------------------------

MAPPINGS = Settings().mappings_dir
CORPUS = MAPPINGS / "absence_corpus"
runner = CliRunner()
EVALUATION_SETS = (
    "dev.tsv", "heldout.tsv", "heldout2.tsv", "heldout3.tsv", "heldout4.tsv", "heldout5.tsv", "heldout6.tsv",
    "heldout7.tsv", "heldout8.tsv", "heldout9.tsv", "heldout10.tsv", "heldout11.tsv",
    "heldout12.tsv", "heldout13.tsv", "heldout14.tsv", "heldout15.tsv", "heldout16.tsv", "heldout17.tsv",
    "heldout18.tsv", "heldout19.tsv", "heldout20.tsv", "heldout21.tsv", "heldout22.tsv", "heldout23.tsv",
    "heldout24.tsv", "heldout25.tsv", "heldout26.tsv", "heldout27.tsv", "heldout28.tsv", "heldout29.tsv",
    "heldout30.tsv", "heldout31.tsv", "heldout32.tsv", "heldout33.tsv", "heldout34.tsv", "heldout35.tsv",
    "heldout36.tsv", "heldout37.tsv", "heldout38.tsv", "heldout39.tsv", "heldout40.tsv", "heldout41.tsv",
    "heldout42.tsv", "heldout43.tsv", "heldout44.tsv", "heldout45.tsv",
)  # fmt: skip


def _score(harmonizer: Harmonizer, name: str) -> tuple[float, float]:
    result = evaluate(read_labelled(CORPUS / name), lambda t: harmonizer.absence.classify_text(t).category)
    return result.accuracy, result.wrong_rate


def test_corpus_covers_every_category_in_both_languages() -> None:
    for name in ("train.tsv", *EVALUATION_SETS):
        rows = read_labelled(CORPUS / name)
        assert {r.category for r in rows} == set(CANONICAL_REASONS), name
        if name in ("train.tsv", "dev.tsv"):
            assert any(r.text == "" for r in rows), f"{name}: the empty motif is a case"
    train = read_labelled(CORPUS / "train.tsv")
    assert len(train) >= 1000
    assert sum(r.text.isascii() for r in train) > 300 and sum(not r.text.isascii() for r in train) > 300


def test_the_model_never_learns_from_the_dev_or_held_out_sets() -> None:
    names = {p.name for p in training_files(MAPPINGS)}
    assert not names & set(EVALUATION_SETS)
    assert "train.tsv" in names


@pytest.mark.parametrize(
    ("name", "already_shared"),
    [("dev.tsv", 44), ("heldout.tsv", 83), ("heldout2.tsv", 90), ("heldout3.tsv", 19), ("heldout4.tsv", 2),  # two inconnu lines that are neutral context phrases
     ("heldout5.tsv", 0), ("heldout6.tsv", 0),
     # written by helpers that never saw the corpus: common lines reproduced word for word
     ("heldout7.tsv", 165), ("heldout8.tsv", 34), ("heldout9.tsv", 122), ("heldout10.tsv", 112),
     ("heldout11.tsv", 118), ("heldout12.tsv", 136), ("heldout13.tsv", 85), ("heldout14.tsv", 32), ("heldout15.tsv", 45),
     ("heldout16.tsv", 110), ("heldout17.tsv", 53), ("heldout18.tsv", 84), ("heldout19.tsv", 71),
     ("heldout20.tsv", 103), ("heldout21.tsv", 55), ("heldout22.tsv", 86), ("heldout23.tsv", 62),
     ("heldout24.tsv", 92), ("heldout25.tsv", 94), ("heldout26.tsv", 89), ("heldout27.tsv", 18),
     ("heldout28.tsv", 20), ("heldout29.tsv", 73), ("heldout30.tsv", 80), ("heldout31.tsv", 34),
     ("heldout32.tsv", 7), ("heldout33.tsv", 74), ("heldout34.tsv", 9), ("heldout35.tsv", 64),
     ("heldout36.tsv", 4), ("heldout37.tsv", 86), ("heldout38.tsv", 66), ("heldout39.tsv", 73),
     ("heldout40.tsv", 8), ("heldout41.tsv", 86), ("heldout42.tsv", 72), ("heldout43.tsv", 83),
     ("heldout44.tsv", 91), ("heldout45.tsv", 65)],
)  # fmt: skip
def test_training_grows_without_copying_dev_or_held_out_lines(name: str, already_shared: int) -> None:
    """A training line equal to an evaluation line makes the figure measure memory. The older
    sets share common lines (« malade », « voyage ») written before this guard (``--unseen``
    leaves them out); no growth of train.tsv may add one."""
    learned = learned_texts(MAPPINGS) - {""}
    shared = sum(normalize(r.text) in learned for r in read_labelled(CORPUS / name))
    assert shared <= already_shared, f"{name}: {shared} lines are also training lines"


@pytest.mark.parametrize(
    ("name", "accuracy", "wrong"),
    [("dev.tsv", 0.97, 0.011), ("heldout.tsv", 0.97, 0.015), ("heldout2.tsv", 0.97, 0.011),
     ("heldout3.tsv", 0.94, 0.011),
     # first measured 89.7 % / 2.6 % wrong; 92.5 % / 1.1 % after the 4th growth; 93.4 % / 1.4 % after the
     # context round, 94.3 % / 0.9 % after the breadth round (README)
     ("heldout4.tsv", 0.93, 0.012),
     # first measured 98.4 % / 0.4 % wrong (1 line); 98.0 % / 0.8 % (2 lines) after the 4th growth (README)
     ("heldout5.tsv", 0.98, 0.008),
     # first measured 93.1 % / 1.9 % wrong; 97.2 % / 0.6 % after the 4th growth; 96.5 % / 0.9 % after the
     # context round (a day surgery now between an appointment and an illness); 96.9 % / 1.3 % after the
     # hospital round (« abs am, pas d'appel » is non_motivee where the corpus says « aucun appel » so)
     ("heldout6.tsv", 0.96, 0.013),
     ("heldout7.tsv", 0.98, 0.009),  # first measured 97.3 % / 0.9 % wrong; 99.1 % / 0.6 % after the context round
     ("heldout8.tsv", 0.97, 0.009),  # first measured 94.8 % / 1.8 % wrong; 97.9 % / 0.6 % after the context round
     ("heldout9.tsv", 0.97, 0.012),  # 96.3 % / 1.4 % before the context round, 98.3 % / 1.1 % after: first measure
     # 96.5 % / 1.5 % before the breadth round, 96.5 % / 0.9 % after, 97.1 % / 0.3 % after the personal round
     ("heldout10.tsv", 0.965, 0.006),
     ("heldout11.tsv", 0.97, 0.006),  # first measured 96.5 % / 1.3 % wrong; 97.9 % / 0 after the personal round
     ("heldout12.tsv", 0.975, 0.006),  # first measured 95.3 % / 0.8 % wrong; 98.3 % / 0.3 % after the hospital round
     ("heldout13.tsv", 0.97, 0.006),  # first measured (after the hospital round) 97.2 % / 0.3 % wrong
     ("heldout14.tsv", 0.965, 0.006),  # first measured 94.4 % / 0.6 % wrong; 96.4 % / 0.6 % after the messages round
     # first measured 97.2 % / 0.8 % wrong; 96.9 % / 0.8 % after the messages round, 96.4 % / 0.8 % with the embedding
     ("heldout15.tsv", 0.96, 0.009),
     # the embedding round (README): first measured 95.3 % / 0.3 % and 95.0 % / 1.4 % wrong (classifier of 98fdadd),
     # 96.7 % / 0.3 % and 94.4 % / 1.4 % with the sentence embedding, 97.8 % / 0 and 98.6 % / 0.6 % after the round
     ("heldout16.tsv", 0.975, 0.006), ("heldout17.tsv", 0.98, 0.009),
     # written before the gaps round, never informing it: with the embedding 96.1 % / 0.6, 96.1 / 1.9, 95.8 / 0.8,
     # 96.4 / 1.9 % wrong; after the round 97.2 / 0.8, 97.2 / 1.4, 96.1 / 0.6, 97.8 / 1.4 (first measurements);
     # after the second round (seen by then) 98.3 / 0, 98.9 / 0, 98.6 / 0.3, 98.3 / 0.6
     ("heldout18.tsv", 0.975, 0.006), ("heldout19.tsv", 0.98, 0.006),
     ("heldout20.tsv", 0.975, 0.006), ("heldout21.tsv", 0.975, 0.009),
     # written after the gaps round, never read: first measured 96.7 / 1.4, 97.8 / 0.3, 97.5 / 1.1, 95.3 / 0.6;
     # after the second round 97.2 / 1.1, 97.8 / 0.3, 98.6 / 0, 96.7 / 0.6 (README)
     ("heldout22.tsv", 0.965, 0.012), ("heldout23.tsv", 0.97, 0.006),
     ("heldout24.tsv", 0.98, 0.006), ("heldout25.tsv", 0.96, 0.009),
     # written from a brief rewritten in stop 26 (which put passports under personnel, against the corpus:
     # 7 of the 26 wrong answers); first measured 96.7 / 1.1, 95.0 / 1.9, 95.3 / 1.7, 90.6 / 2.5 (29: adult
     # education, where « enfant malade » is the student's child); their misses informed the third gaps round;
     # after the fifth 97.5 / 1.1, 97.8 / 0.8, 95.6 / 1.7, 91.4 / 2.2
     ("heldout26.tsv", 0.97, 0.013), ("heldout27.tsv", 0.97, 0.010),
     ("heldout28.tsv", 0.95, 0.019), ("heldout29.tsv", 0.905, 0.024),
     # never read except 32: first measured 97.2 / 0.6, 97.2 / 0.8, 91.7 / 1.9, 97.8 / 0.3; after the third
     # round (which they did not inform) 97.2 / 0.6, 97.5 / 0.6, 91.9 / 1.9, 97.8 / 0.3; 32's misses (second-
     # language writing) informed the fourth round; after it 97.8 / 0.6, 97.8 / 0.6, 96.1 / 1.1, 98.1 / 0.3;
     # after the fifth 97.8 / 0.6, 98.1 / 0.3, 95.3 / 0.8, 98.3 / 0.6
     ("heldout30.tsv", 0.97, 0.008), ("heldout31.tsv", 0.975, 0.005),
     ("heldout32.tsv", 0.945, 0.010), ("heldout33.tsv", 0.975, 0.008),
     # 35–37 first measured after the third round 98.9 / 0.6, 93.1 / 1.7, 97.5 / 1.4; after the fourth 98.9 / 0.6,
     # 94.2 / 0.6, 97.5 / 1.4; 34 first measured after the fourth, 95.8 / 1.1; 34's and 36's misses informed the
     # fifth round; after it 96.1 / 0.6, 99.4 / 0.3, 96.4 / 0.3, 97.8 / 1.1 (README)
     ("heldout34.tsv", 0.955, 0.008), ("heldout35.tsv", 0.985, 0.005),
     ("heldout36.tsv", 0.955, 0.005), ("heldout37.tsv", 0.97, 0.013),
     # first measured after the fourth round 98.1 / 0.6, 97.5 / 0.6, 96.7 / 0.8, 95.3 / 1.7; their misses
     # informed the fifth; after it 98.6 / 0.6, 97.8 / 0.6, 96.9 / 1.1, 96.7 / 1.1
     ("heldout38.tsv", 0.98, 0.008), ("heldout39.tsv", 0.97, 0.008),
     ("heldout40.tsv", 0.96, 0.013), ("heldout41.tsv", 0.96, 0.013),
     # written before the fifth round, scored once after it, never read: 97.8 / 0.8, 96.9 / 0, 98.9 / 0.6,
     # 98.3 / 0.8 — 98.0 % / 0.56 % over their 1,440 lines (README)
     ("heldout42.tsv", 0.97, 0.010), ("heldout43.tsv", 0.96, 0.003),
     ("heldout44.tsv", 0.98, 0.008), ("heldout45.tsv", 0.975, 0.010)],
)  # fmt: skip
def test_accuracy_and_wrong_categories_on_the_corpus_sets(
    harmonizer: Harmonizer, name: str, accuracy: float, wrong: float
) -> None:
    """Guards against regressions (the figures are in the README); held-out misses must not be
    copied into train.tsv — write new held-out examples instead. A wrong category is worse
    than `inconnu`, which a steward still sees."""
    right, wrong_rate = _score(harmonizer, name)
    assert right >= accuracy
    assert wrong_rate <= wrong


@pytest.mark.parametrize(
    ("text", "reason"),
    [("voyage au Liban pour les funérailles de son oncle", "deuil"),  # a death beats a trip
     ("raisons familiales: décès de la grand-mère", "deuil"),  # ... and family
     ("suspendu de l'autobus", "suspension"),  # a suspension is never transport
     ("bus suspension 2 days", "suspension"),
     ("voyage de classe à Ottawa", "activite_scolaire"),  # a school trip beats a trip
     ("class trip to the aquarium", "activite_scolaire")],
)  # fmt: skip
def test_rules_decide_what_must_be_exact(harmonizer: Harmonizer, text: str, reason: str) -> None:
    found = harmonizer.absence.classify_text(text)
    assert (found.category, found.by) == (reason, "rule")


@pytest.mark.parametrize(
    ("text", "reason"),
    [("transport scolaire suspendu en raison de la tempête", "transport_meteo"),  # the service, in a storm
     ("autobus suspendus à cause du verglas", "transport_meteo"),
     ("renvoyé à la maison par l'infirmière, fièvre", "maladie"),  # the nurse is not a sanction
     ("suspendu pour bataille, jour de tempête", "suspension"),  # a sanction word keeps the rule
     ("suspendu et malade", "suspension"),
     ("circuits d'autobus suspendus, pluie verglaçante", "transport_meteo"),  # road weather too
     ("autobus scolaires suspendus", "transport_meteo"),  # a suspended service names no student
     ("mal de cœur, renvoyée chez elle", "maladie")],  # sent home: the rest of the text decides
)  # fmt: skip
def test_the_suspension_rule_yields_to_weather_and_to_the_nurse(
    harmonizer: Harmonizer, text: str, reason: str
) -> None:
    assert harmonizer.absence.classify_text(text).category == reason


@pytest.mark.parametrize(
    ("text", "rule"),
    [("batterie morte", False), ("malade à mort", False), ("mort de rire, pas venu", False),
     ("expulsés du logement", False),  # an eviction, not a sanction
     ("notre auto est morte à cause du frette", False), ("my car died on the highway", False),  # a machine
     ("le char est mort, son grand-père aussi est décédé", True),
     ("élève sortie de l'école sans permission à 10h", False),  # she left: no outing
     ("sortie de l'école au musée", True),
     ("batterie morte, décès de son oncle", True), ("son chien est mort", True), ("expulsé pour bataille", True),
     ("renvoyée à la maison", False),  # sent home, sick or sanctioned: the model reads the rest
     ("renvoyé de l'école", True), ("renvoi de 3 jours", True), ("bus privileges suspended", True),
     ("renvoyées pour trois jours", True), ("deux renvois cette année", True),
     ("otite, on préfère attendre lundi avant de la renvoyer", False)],  # an infinitive: back as often as away
)  # fmt: skip
def test_what_only_looks_like_a_death_or_a_sanction_is_left_to_the_model(
    harmonizer: Harmonizer, text: str, rule: bool
) -> None:
    assert (harmonizer.absence.classify_text(text).by == "rule") is rule


def test_a_medical_appointment_comes_before_a_school_trip(harmonizer: Harmonizer) -> None:
    found = harmonizer.absence.classify_text("rdv chez le dentiste, sortie scolaire manquée")
    assert found.category == "sante_rdv" and found.by == "model"
    assert harmonizer.absence.classify_text("sortie scolaire au musée").by == "rule"


@pytest.mark.parametrize("text", ["s.o.", "x", "a m", "N/D", "p.s"])
def test_initials_and_keystrokes_are_never_a_reason(harmonizer: Harmonizer, text: str) -> None:
    assert harmonizer.absence.classify_text(text) == Classification("inconnu", 0.0, False)


def test_a_text_between_two_reasons_is_left_to_the_stewards(harmonizer: Harmonizer) -> None:
    """Below the lead over the runner-up the answer is inconnu, whatever the best score."""
    classifier = harmonizer.absence
    strict = AbsenceClassifier(
        {}, classifier._model, threshold=classifier.threshold, min_lead=100.0
    )  # no lead is that large
    found = strict.classify_text("fievre depuis hier")
    assert (found.category, found.by) == ("inconnu", "model")
    assert strict.fingerprint != classifier.fingerprint  # the decision rule is part of the mapping version
    assert classifier.classify_text("fievre depuis hier").category == "maladie"


@pytest.mark.parametrize(
    "text", ["fievre depuis hier", "Yom Kipour", "a foxé ses cours", "traversier annulé", "chez le dentist"]
)
def test_the_model_handles_what_no_rule_names(harmonizer: Harmonizer, text: str) -> None:
    found = harmonizer.absence.classify_text(text)
    assert found.mapped and found.by == "model" and found.confidence >= harmonizer.absence.threshold


@pytest.mark.parametrize(
    ("text", "category"),
    [("message de papa: gastro depuis hier soir, retour prévu jeudi", "maladie"),
     ("dad left a voicemail: has the flu, will be back Monday", "maladie"),
     ("selon la mère, dentiste à 10h, retour en après-midi", "sante_rdv"),
     ("message de papa: retour prévu jeudi", "inconnu")],
)  # fmt: skip
def test_a_reason_typed_inside_context_is_still_that_reason(
    harmonizer: Harmonizer, text: str, category: str
) -> None:
    """Secretaries write who called and when the student comes back around the reason; the
    model before the neutral context (absence_context.tsv) left the first two ``inconnu``.
    The context alone names no reason."""
    assert harmonizer.absence.classify_text(text).category == category


@pytest.mark.parametrize(
    ("text", "category"),
    [("hospitalisée depuis samedi pour une pneumonie", "maladie"),
     ("admitted to the children's hospital with pneumonia", "maladie"),
     ("prise de sang à l'hôpital ce matin", "sante_rdv"),
     ("day surgery for tonsils", "sante_rdv")],
)  # fmt: skip
def test_a_student_in_hospital_is_ill_a_test_there_is_an_appointment(
    harmonizer: Harmonizer, text: str, category: str
) -> None:
    """The labelling since held-out 7: two writers who never saw the corpus labelled a student
    admitted to hospital or at the ER ``maladie``; a test, an exam or planned day surgery
    stays ``sante_rdv``."""
    assert harmonizer.absence.classify_text(text).category == category


def test_context_wraps_each_reason_and_alone_is_unknown() -> None:
    context = Context(prefixes=("maman a appele",), suffixes=("retour lundi",))
    rows = augment([Example("Grippe", "maladie"), Example("voir note", "inconnu")], context=context)
    wrapped = [t for t, c in rows if c == "maladie" and ("maman a appele" in t or "retour lundi" in t)]
    assert len(wrapped) == 1 and "grippe" in wrapped[0]
    assert ("maman a appele", "inconnu") in rows and ("retour lundi", "inconnu") in rows
    assert not any(
        "voir note" in t and ("maman" in t or "lundi" in t) for t, _ in rows
    )  # inconnu is not wrapped
    assert augment([Example("Grippe", "maladie")], context=context) == augment(
        [Example("Grippe", "maladie")], context=context
    )  # seeded: the same corpus, the same model
    only_after = augment([Example("Grippe", "maladie")], context=Context(suffixes=("retour lundi",)))
    assert ("grippe retour lundi", "maladie") in only_after  # one side is enough to wrap


def test_a_malformed_context_file_is_refused_by_line(tmp_path: Path) -> None:
    (tmp_path / "absence_context.tsv").write_text("text\tposition\nselon la mère\tmilieu\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="line 2"):
        read_context(tmp_path)
    (tmp_path / "absence_context.tsv").write_text("texte\tplace\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="header"):
        read_context(tmp_path)
    assert read_context(tmp_path / "none") == Context()


def test_training_is_deterministic() -> None:
    """Two trainings on the same examples score alike (fixed seeds, no shuffling). Trained on a
    twentieth of the corpus: the recipe is the same, the suite pays ~5 s a training instead of ~90."""
    texts = [normalize(r.text) for r in read_labelled(CORPUS / "dev.tsv")]
    part = read_labelled(CORPUS / "train.tsv")[::20]
    context = read_context(MAPPINGS)

    def scores() -> list[tuple[str, float, float]]:
        return TextModel.fit(part, "determinism", context).predict(texts)

    assert scores() == scores()
    assert augment(training_examples(MAPPINGS), context=context) == augment(
        training_examples(MAPPINGS), context=context
    )


def test_each_distinct_normalized_text_is_classified_once(harmonizer: Harmonizer) -> None:
    classifier = harmonizer.absence
    first = classifier.classify_text("grippe carabinée du lundi")
    assert classifier.classify_text("grippe carabinée du lundi") is first  # from the cache
    assert classifier.classify_text("GRIPPE carabinee, du lundi!") is first  # same normalized text


def test_a_corpus_error_names_file_and_line_never_the_text(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tcategory\nMarie Tremblay est malade\tmaladiee\n", encoding="utf-8")
    with pytest.raises(CorpusError) as raised:
        read_labelled(bad)
    assert "line 2" in str(raised.value) and "Tremblay" not in str(raised.value)
    bad.write_text("motif,raison\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="header"):
        read_labelled(bad)


@pytest.fixture()
def mappings_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = copy_mappings(tmp_path / "mappings")
    monkeypatch.setenv("VIGIE_MAPPINGS_DIR", str(copy))
    return copy


def test_a_stewards_text_mapping_is_exact_for_its_css_and_teaches_the_model(mappings_copy: Path) -> None:
    text = "kermesse de Quiquinou"
    before = AbsenceClassifier.from_dir(mappings_copy)
    # Not yet the steward's: the tests' small corpus (tests/corpus.py) may guess any reason
    assert before.classify("laval", None, text).by != "steward"
    result = runner.invoke(app, ["mappings", "set", "--css", "laval", "--text", text,
                                 "--category", "activite_scolaire"])  # fmt: skip
    assert result.exit_code == 0, result.output
    after = AbsenceClassifier.from_dir(mappings_copy)
    found = after.classify("laval", None, "  KERMESSE de quiquinou ")
    assert (found.category, found.by) == ("activite_scolaire", "steward")
    assert Example(text, "activite_scolaire") in training_examples(mappings_copy)
    assert after.fingerprint != before.fingerprint  # a new mapping version: history can follow
    # Setting it again changes nothing; another category replaces it (no duplicate line).
    assert not set_text_mapping(mappings_copy, "laval", text, "activite_scolaire")
    assert set_text_mapping(mappings_copy, "laval", text.upper(), "religieux_culturel")
    assert len(read_labelled(mappings_copy / "absence_texts" / "laval.tsv")) == 1


def test_a_stewards_code_mapping_joins_the_css_code_table(mappings_copy: Path) -> None:
    assert set_code_mapping(mappings_copy, "laval", "z9", "maladie")
    found = AbsenceClassifier.from_dir(mappings_copy).classify("laval", "Z9", None)
    assert (found.category, found.by) == ("maladie", "local_code")
    assert AbsenceClassifier.from_dir(mappings_copy).classify("montreal", "Z9", None).category == "inconnu"


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--css", "laval", "--text", "x", "--category", "malade"], "--category must be one of"),
     (["--css", "atlantide", "--text", "x", "--category", "maladie"], "unknown organization"),
     (["--css", "laval", "--category", "maladie"], "exactly one of"),
     (["--css", "laval", "--text", "...", "--category", "maladie"], "no letter or digit"),
     (["--css", "laval", "--text", "x" * 300, "--category", "maladie"], "longer than"),
     (["--css", "laval", "--code", "Z9; DROP TABLE", "--category", "maladie"], "local code is")],
)  # fmt: skip
def test_careless_or_hostile_steward_input_is_refused_in_one_line(
    mappings_copy: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["mappings", "set", *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (mappings_copy / "absence_texts").exists()


def test_a_tab_or_newline_in_a_stewards_text_cannot_forge_a_corpus_line(mappings_copy: Path) -> None:
    assert set_text_mapping(mappings_copy, "laval", "piscine\tmaladie\nzorglub", "activite_scolaire")
    rows = read_labelled(mappings_copy / "absence_texts" / "laval.tsv")
    assert rows == [Example("piscine maladie zorglub", "activite_scolaire")]


def test_evaluate_prints_accuracy_wrong_rate_per_category_and_confusions(tmp_path: Path) -> None:
    labelled = tmp_path / "set.tsv"
    labelled.write_text("text\tcategory\nmalade\tmaladie\nrdv dentiste\tmaladie\nqwzx\tvoyage\n",
                        encoding="utf-8")  # fmt: skip
    result = runner.invoke(app, ["classify", "--evaluate", str(labelled)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "accuracy 33.3%" in said and "wrong category 33.3%" in said
    assert "precision" in result.output and "sante_rdv" in result.output
    data = json.loads(runner.invoke(app, ["classify", "--evaluate", str(labelled), "--json"]).output)
    assert data["right"] == 1 and data["wrong_category"] == 1 and data["missed_as_inconnu"] == 1
    assert {"expected": "maladie", "predicted": "sante_rdv", "count": 1} in data["confusions"]
    assert "rdv dentiste" not in json.dumps(data)  # counts and categories only


def test_evaluate_reads_the_older_csv_sets_and_can_leave_out_seen_texts() -> None:
    result = runner.invoke(app, ["classify", "--evaluate", str(HOLDOUT), "--json", "--unseen"])
    data = json.loads(result.output)
    with HOLDOUT.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert data["total"] + data["dropped_as_seen"] == len(rows)
    assert 0 < data["total"] < len(rows)


@pytest.mark.parametrize("content", ["", "text\tcategory\nmalade\n", "text\tcategory\nmalade\tcold\n"])
def test_evaluate_refuses_a_bad_file_in_one_line(tmp_path: Path, content: str) -> None:
    labelled = tmp_path / "bad.tsv"
    labelled.write_text(content, encoding="utf-8")
    result = runner.invoke(app, ["classify", "--evaluate", str(labelled)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    missing = runner.invoke(app, ["classify", "--evaluate", str(tmp_path / "nope.tsv")])
    assert missing.exit_code == 2


def test_the_one_text_path_scores_exactly_like_the_pipeline() -> None:
    model = load_model(MAPPINGS, Settings().model_cache)  # the session's model: nothing to train
    texts = [normalize(r.text) for name in ("dev.tsv", "heldout2.tsv") for r in read_labelled(CORPUS / name)]
    texts += ["", "zzzz qqq", "a", "é" * 300]
    for text, (category, margin, lead) in zip(texts, model.predict(texts), strict=True):
        fast_category, fast_margin, fast_lead = model.predict_one(text)
        # 1e-5: the sentence encoder's float32 arithmetic, batch against one text
        assert fast_category == category and abs(fast_margin - margin) < 1e-5, text
        assert abs(fast_lead - lead) < 1e-5 and lead >= 0.0, text


def test_a_flood_of_distinct_long_texts_keeps_the_cache_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile CSS sending pages of distinct text cannot grow the stage's memory."""
    import streams.absence

    monkeypatch.setattr(streams.absence, "CACHE_MAX", 1_000)  # the production bound, scaled down
    classifier = AbsenceClassifier.from_dir(MAPPINGS)
    for i in range(3_000):
        found = classifier.classify_text(f"{i} " + "malade " * 2000)
        assert found.category == "maladie"
    cache = classifier._cache  # the bound is what is under test
    assert len(cache) <= 1_000 and max(len(k) for k in cache) <= streams.absence.TEXT_MAX


def test_cross_validation_scores_each_line_by_a_model_that_never_saw_it(tmp_path: Path) -> None:
    corpus = tmp_path / "absence_corpus"
    lines = [
        f"{word} numero {i}\t{category}"
        for i in range(10)
        for word, category in (
            ("grippe", "maladie"),
            ("dentiste", "sante_rdv"),
            ("tempete", "transport_meteo"),
        )
    ]
    lines.append("zorglub\tvoyage")  # a concept no other line teaches: never right when scored
    corpus.mkdir()
    (corpus / "train.tsv").write_text("text\tcategory\n" + "\n".join(lines) + "\n", encoding="utf-8")
    right, wrong = cross_validate(tmp_path, folds=5)
    assert right == pytest.approx(30 / 31)
    assert wrong <= 1 / 31


def test_a_batchs_new_motifs_meet_the_model_together_with_the_same_answers(
    harmonizer: Harmonizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stage classifies each distinct motif of a raw batch in one pass of the sentence
    encoder (~0.4 ms a text, against ~1.7 ms alone): same answers as one by one."""
    model = harmonizer.absence._model  # the project's model; fresh caches below
    texts = [e.text for e in read_labelled(CORPUS / "heldout3.tsv")]
    alone = AbsenceClassifier({}, model)
    expected = [alone.classify_text(t) for t in texts]
    embedding = model.compiled.embedding
    assert embedding is not None
    calls: list[int] = []
    encode = embedding.encoder.encode
    monkeypatch.setattr(embedding.encoder, "encode", lambda texts, **kw: calls.append(len(texts)) or encode(texts, **kw))
    batched = AbsenceClassifier({}, model)
    batched.prepare("css", [(None, t) for t in texts + texts] + [("", None)])
    got = [batched.classify_text(t) for t in texts]
    assert [g.category for g in got] == [e.category for e in expected]
    by_model = {normalize(t) for t, e in zip(texts, expected, strict=True) if e.by == "model"}
    assert calls == [len(by_model)]  # once, each distinct text the rules leave to the model once


@pytest.mark.parametrize("keystrokes", ["xyzzy", "kjhkjh", "qsdfqsdf", "zxcvb", "wxcvbn", "lkjlkj", "sdfg hjkl"])
def test_keystrokes_are_never_a_reason(harmonizer: Harmonizer, keystrokes: str) -> None:
    """A careless CSS's keyboard mash: the sentence embedding gives it a vector near some reason
    (« xyzzy » was read as an illness) unless training shows such strings as ``inconnu``."""
    found = harmonizer.absence.classify_text(keystrokes)
    assert found.category == "inconnu" and not found.mapped
