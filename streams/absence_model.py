"""The statistical layer: TF-IDF on character and word n-grams, then a linear SVM.

Chosen by measurement on the dev set (README, "Motifs d'absence"): logistic regression
scored the same but took 5 s to train against 0.2 s here, which lets every process train
its model at load from the corpus in the repository instead of shipping a binary
artefact. Character n-grams within words carry typos and word forms; word n-grams carry
the phrases. The score of a text is the SVM's margin for the category it picks: below
the threshold the answer is ``inconnu``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline, make_pipeline, make_union
from sklearn.svm import LinearSVC

from streams.absence_corpus import augment, training_examples, training_files

MODEL_VERSION = "svm-charwb25-word12-c1-aug2-fill2"  # change when the recipe changes


def corpus_fingerprint(mappings_dir: Path) -> str:
    """Hash of what the model is trained from and how: the same fingerprint, the same model."""
    digest = hashlib.sha256(f"{MODEL_VERSION}|sklearn {sklearn.__version__}".encode())
    for path in training_files(mappings_dir):
        digest.update(path.relative_to(mappings_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class TextModel:
    """A trained classifier of normalized motifs."""

    def __init__(self, pipeline: Pipeline, fingerprint: str) -> None:
        self._pipeline = pipeline
        self.fingerprint = fingerprint
        self.classes: tuple[str, ...] = tuple(str(c) for c in pipeline.classes_)

    @classmethod
    def train(cls, mappings_dir: Path) -> TextModel:
        """Train from the corpus in ``mappings_dir`` (deterministic: fixed seeds, no shuffling)."""
        rows = augment(training_examples(mappings_dir))
        pipeline = make_pipeline(
            make_union(
                TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
                TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True),
            ),
            LinearSVC(C=1.0, random_state=0),
        )
        pipeline.fit([t for t, _ in rows], [c for _, c in rows])
        return cls(pipeline, corpus_fingerprint(mappings_dir))

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """Best category and its margin for each normalized text."""
        if not texts:
            return []
        scores = self._pipeline.decision_function(list(texts))
        best = scores.argmax(axis=1)
        return [(self.classes[int(k)], float(row[k])) for row, k in zip(scores, best, strict=True)]


_MODELS: dict[tuple[str, str], TextModel] = {}
_LOCK = threading.Lock()


def load_model(mappings_dir: Path) -> TextModel:
    """The model for this corpus, trained once per process (about 0.3 s) and kept."""
    key = (str(mappings_dir.resolve()), corpus_fingerprint(mappings_dir))
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = _MODELS[key] = TextModel.train(mappings_dir)
        return model
