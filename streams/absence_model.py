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
import math
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline, make_pipeline, make_union
from sklearn.svm import LinearSVC

from streams.absence_corpus import Example, augment, training_examples, training_files

MODEL_VERSION = "svm-charwb25-word12-c1-aug2-fill2-lead"  # change when the recipe changes


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
        # The same arithmetic as the pipeline, for one text at a time without sklearn's
        # per-call validation (1.7 ms → tens of µs; equal to the pipeline, see the tests).
        union, svm = pipeline.steps[0][1], pipeline.steps[1][1]
        self._parts: list[tuple[Callable[[str], list[str]], dict[str, int], np.ndarray, int]] = []
        offset = 0
        for _name, vectorizer in union.transformer_list:
            vocabulary = {str(k): int(v) for k, v in vectorizer.vocabulary_.items()}
            self._parts.append((vectorizer.build_analyzer(), vocabulary, vectorizer.idf_, offset))
            offset += len(vocabulary)
        self._coef_t = np.ascontiguousarray(svm.coef_.T)
        self._intercept = svm.intercept_.copy()

    @classmethod
    def train(cls, mappings_dir: Path) -> TextModel:
        """Train from the corpus in ``mappings_dir`` (deterministic: fixed seeds, no shuffling)."""
        return cls.fit(training_examples(mappings_dir), corpus_fingerprint(mappings_dir))

    @classmethod
    def fit(cls, examples: Sequence[Example], fingerprint: str) -> TextModel:
        """Train from labelled examples (the cross-validation trains on part of the corpus)."""
        rows = augment(examples)
        pipeline = make_pipeline(
            make_union(
                TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
                TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True),
            ),
            LinearSVC(C=1.0, random_state=0),
        )
        pipeline.fit([t for t, _ in rows], [c for _, c in rows])
        return cls(pipeline, fingerprint)

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float, float]]:
        """Best category, its margin and its lead over the runner-up for each normalized text."""
        if not texts:
            return []
        scores = self._pipeline.decision_function(list(texts))
        return [self._best(row) for row in scores]

    def predict_one(self, text: str) -> tuple[str, float, float]:
        """Best category, its margin and its lead over the runner-up for one normalized text
        (same result as ``predict``)."""
        scores = self._intercept.copy()
        for analyze, vocabulary, idf, offset in self._parts:
            counts = Counter(g for g in analyze(text) if g in vocabulary)
            if not counts:
                continue
            columns = [vocabulary[g] for g in counts]
            tf = [1.0 + math.log(n) for n in counts.values()]  # sublinear_tf
            weights = np.array([t * idf[c] for c, t in zip(columns, tf, strict=True)])
            weights /= math.sqrt(float(weights @ weights))  # each vectorizer is l2-normalized
            scores += weights @ self._coef_t[[offset + c for c in columns]]
        return self._best(scores)

    def _best(self, scores: np.ndarray) -> tuple[str, float, float]:
        """The best class of one row of SVM scores, its margin, and its lead over the second."""
        second, best = (int(k) for k in np.argsort(scores, kind="stable")[-2:])
        return self.classes[best], float(scores[best]), float(scores[best] - scores[second])


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
