"""The motif model scored from plain arrays and kept on disk: same answers as scikit-learn,
no scikit-learn import once a corpus has been trained, never a pickle, never a stale model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from streams.absence_compiled import Analyzer, CompiledModel
from streams.absence_corpus import read_labelled, training_examples
from streams.absence_model import TextModel, corpus_fingerprint, is_cached, load_model
from tests.corpus import copy_mappings
from vigie.settings import Settings

MAPPINGS = Settings().mappings_dir
CORPUS = MAPPINGS / "absence_corpus"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    lines = [e.text for e in training_examples(MAPPINGS)]
    lines += [e.text for e in read_labelled(CORPUS / "dev.tsv")]
    # Shapes the corpus may not hold: one letter, runs of spaces, tabs, accents, digits, emoji.
    return [*lines, "", "a", "  x  y ", "école\tfermée", "Ça  VA\u00a0pas 12h", "rdv 🦷 dentiste", "ÆØÅ ß"]


@pytest.mark.parametrize(
    "params",
    [
        {"analyzer": "char_wb", "ngram_range": (2, 5)},
        {"analyzer": "char_wb", "ngram_range": (1, 3), "strip_accents": "unicode"},
        {"analyzer": "char", "ngram_range": (1, 4)},
        {"analyzer": "word", "ngram_range": (1, 2)},
        {"analyzer": "word", "ngram_range": (2, 3), "lowercase": False},
        {"analyzer": "word", "ngram_range": (1, 1)},
    ],
)
def test_each_analyzer_cuts_text_exactly_like_scikit_learn(texts: list[str], params: dict[str, object]) -> None:
    reference = TfidfVectorizer(**params).build_analyzer()  # type: ignore[arg-type]
    low, high = params["ngram_range"]  # type: ignore[misc]
    ours = Analyzer(str(params["analyzer"]), low, high, bool(params.get("lowercase", True)),
                    params.get("strip_accents") == "unicode")  # fmt: skip
    for text in texts:
        assert ours(text) == reference(text), text


def test_the_compiled_model_scores_like_the_pipeline_and_survives_the_disk(texts: list[str], tmp_path: Path) -> None:
    trained = TextModel.train(copy_mappings(tmp_path / "mappings"))
    path = tmp_path / "m.npz"
    trained.compiled.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = CompiledModel.load(path, trained.fingerprint)
    assert loaded is not None and loaded.classes == trained.classes
    sample = texts[::7]
    reference = trained.predict(sample)  # scikit-learn's own decision_function
    for text, (category, margin, lead) in zip(sample, reference, strict=True):
        got = TextModel(loaded).predict_one(text)
        assert got[0] == category, text
        # the sentence encoder's float32 arithmetic differs in its last bits between a batch
        # and one text; the TF-IDF part agrees to 1e-12
        assert got[1:] == pytest.approx((margin, lead), abs=1e-5), text


def test_a_second_process_reads_the_model_without_importing_scikit_learn(tmp_path: Path) -> None:
    mappings = copy_mappings(tmp_path / "mappings")  # a corpus this process has not loaded yet
    cache = tmp_path / "models"
    assert not is_cached(mappings, cache)  # `vigie up` then trains before the worker's readiness wait
    first = load_model(mappings, cache)
    assert is_cached(mappings, cache)
    files = list(cache.glob("absence-*.npz"))
    assert [f.name for f in files] == [f"absence-{first.fingerprint}.npz"]
    probe = (
        "import sys; from pathlib import Path; from streams.absence_model import load_model; "
        f"m = load_model(Path({str(mappings)!r}), Path({str(cache)!r})); "
        "print('sklearn' in sys.modules, m.predict_one('gastro'), m.fingerprint)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False"  # scored from the cache alone
    assert out[-1] == first.fingerprint
    assert " ".join(out[1:-1]).startswith(f"('{first.predict_one('gastro')[0]}'")


def test_a_damaged_or_foreign_cache_file_is_ignored_and_replaced(tmp_path: Path) -> None:
    mappings = copy_mappings(tmp_path / "mappings")
    cache = tmp_path / "models"
    fingerprint = corpus_fingerprint(mappings)
    path = cache / f"absence-{fingerprint}.npz"
    cache.mkdir()
    # A pickle in disguise: an object array is refused by allow_pickle=False, never executed.
    np.savez(path, meta=np.array([{"format": 1}], dtype=object))
    assert CompiledModel.load(path, fingerprint) is None
    path.write_bytes(b"PK\x03\x04 truncated")
    assert CompiledModel.load(path, fingerprint) is None
    model = load_model(mappings, cache)  # trains again and writes a whole file
    assert CompiledModel.load(path, fingerprint) is not None
    assert model.predict_one("rendez-vous chez le dentiste")[0] == "sante_rdv"


def test_a_changed_corpus_never_reads_the_old_model(tmp_path: Path) -> None:
    mappings = copy_mappings(tmp_path / "mappings")
    cache = tmp_path / "models"
    before = load_model(mappings, cache).fingerprint
    with (mappings / "absence_corpus" / "train.tsv").open("a", encoding="utf-8") as f:
        f.write("kermesse de zorglub\tactivite_scolaire\n")
    after = load_model(mappings, cache)
    assert after.fingerprint != before
    assert len(list(cache.glob("absence-*.npz"))) == 2


def test_processes_missing_the_cache_at_once_train_it_once(tmp_path: Path) -> None:
    """A worker and its stage processes start together: the first trains, the others wait
    for its file and read it (none of them imports scikit-learn)."""
    mappings = copy_mappings(tmp_path / "mappings")
    cache = tmp_path / "models"
    probe = (
        "import sys; from pathlib import Path; from streams.absence_model import load_model; "
        f"m = load_model(Path({str(mappings)!r}), Path({str(cache)!r})); "
        "print('sklearn' in sys.modules, m.fingerprint)"
    )
    processes = [subprocess.Popen([sys.executable, "-c", probe], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120)[0].split() for p in processes]
    assert all(p.returncode == 0 for p in processes)
    assert sorted(trained for trained, _ in outputs) == ["False", "False", "True"]
    assert len({fingerprint for _, fingerprint in outputs}) == 1
    assert len(list(cache.glob("absence-*.npz"))) == 1
