"""A trained motif model as plain arrays: scored without scikit-learn, kept on disk.

Importing scikit-learn costs about 2.6 s of CPU per process (it pulls in scipy.stats) and
training about 0.5–1.7 s more; the worker and each of its stage processes paid both at
every start, and so did every `vigie` command that builds the stage. What scoring needs
is small: the vocabularies, the idf weights, the linear model's coefficients. This module
holds them, scores with the same arithmetic as the scikit-learn pipeline (the tests
compare the two on every corpus line), and keeps them in one file per corpus fingerprint
so that scikit-learn is imported only when a corpus is seen for the first time.

The file is read with ``allow_pickle=False``: a cache file is data, never code.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streams.absence_embedding import DIMENSION, ENCODER, SentenceEncoder, shared_encoder

FORMAT = 2  # change when the file's layout changes: older files are then ignored
_WHITE_SPACES = re.compile(r"\s\s+")
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token_pattern


class UnsupportedPipeline(ValueError):
    """The pipeline uses a feature this module does not reproduce (then train in process)."""


def _strip_accents_unicode(text: str) -> str:
    # scikit-learn's strip_accents_unicode, reproduced: ASCII text is returned as is.
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


@dataclass(frozen=True)
class Analyzer:
    """scikit-learn's ``char``, ``char_wb`` and ``word`` analyzers with default preprocessing."""

    kind: str  # "char", "char_wb" or "word"
    min_n: int
    max_n: int
    lowercase: bool = True
    strip_accents: bool = False

    def __call__(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        if self.strip_accents:
            text = _strip_accents_unicode(text)
        if self.kind == "word":
            return self._words(_TOKEN.findall(text))
        text = _WHITE_SPACES.sub(" ", text)
        return self._chars_wb(text) if self.kind == "char_wb" else self._chars(text)

    def _words(self, tokens: list[str]) -> list[str]:
        grams = list(tokens) if self.min_n == 1 else []
        for n in range(max(self.min_n, 2), min(self.max_n, len(tokens)) + 1):
            grams += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        return grams

    def _chars(self, text: str) -> list[str]:
        grams: list[str] = []
        for n in range(self.min_n, min(self.max_n + 1, len(text) + 1)):
            grams += [text[i : i + n] for i in range(len(text) - n + 1)]
        return grams

    def _chars_wb(self, text: str) -> list[str]:
        grams: list[str] = []
        for word in text.split():
            padded = f" {word} "
            for n in range(self.min_n, self.max_n + 1):
                offset = 0
                grams.append(padded[offset : offset + n])
                while offset + n < len(padded):
                    offset += 1
                    grams.append(padded[offset : offset + n])
                if offset == 0:  # a word shorter than n counts once, as in scikit-learn
                    break
        return grams

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "min_n": self.min_n, "max_n": self.max_n,
                "lowercase": self.lowercase, "strip_accents": self.strip_accents}  # fmt: skip


@dataclass(frozen=True)
class FeatureBlock:
    """One TF-IDF vectorizer of the union: its analyzer, vocabulary, idf and column offset."""

    analyzer: Analyzer
    vocabulary: dict[str, int]
    idf: np.ndarray
    offset: int
    sublinear_tf: bool


def _analyzer_of(vectorizer: Any) -> Analyzer:
    """The analyzer a fitted TfidfVectorizer uses, if this module reproduces it exactly."""
    p = vectorizer.get_params()
    supported = (
        p["analyzer"] in ("char", "char_wb", "word")
        and p["preprocessor"] is None and p["tokenizer"] is None and p["stop_words"] is None
        and p["strip_accents"] in (None, "unicode")
        and (p["analyzer"] != "word" or p["token_pattern"] == _TOKEN.pattern)
        and p["norm"] == "l2" and p["use_idf"] and not p["binary"] and p["input"] == "content"
    )  # fmt: skip
    if not supported:
        raise UnsupportedPipeline(f"vectorizer parameters not reproduced: {p}")
    low, high = p["ngram_range"]
    return Analyzer(p["analyzer"], int(low), int(high), bool(p["lowercase"]), p["strip_accents"] == "unicode")


@dataclass(frozen=True)
class EmbeddingBlock:
    """The sentence embedding's columns: ``weight`` × the encoder's vector, after the TF-IDF blocks."""

    encoder: SentenceEncoder
    weight: float
    offset: int


class CompiledModel:
    """The scoring half of a TF-IDF union (and a sentence embedding) + linear model, in plain arrays."""

    def __init__(
        self,
        blocks: Sequence[FeatureBlock],
        coef_t: np.ndarray,
        intercept: np.ndarray,
        classes: Sequence[str],
        fingerprint: str,
        embedding: EmbeddingBlock | None = None,
    ) -> None:
        self.blocks = tuple(blocks)
        self.coef_t = np.ascontiguousarray(coef_t, dtype=np.float64)
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.classes = tuple(classes)
        self.fingerprint = fingerprint
        self.embedding = embedding
        columns = sum(len(b.vocabulary) for b in self.blocks) + (DIMENSION if embedding else 0)
        if self.coef_t.shape != (columns, len(self.classes)):
            raise ValueError("coefficients do not match the vocabularies and classes")

    @classmethod
    def from_pipeline(cls, pipeline: Any, fingerprint: str) -> CompiledModel:
        """From a fitted ``make_pipeline(make_union(TfidfVectorizer…), linear model)``."""
        union, linear = pipeline.steps[0][1], pipeline.steps[-1][1]
        if len(pipeline.steps) != 2 or not hasattr(union, "transformer_list"):
            raise UnsupportedPipeline("expected a feature union followed by a linear model")
        if getattr(union, "transformer_weights", None):
            raise UnsupportedPipeline("weighted feature unions are not reproduced")
        blocks, offset, embedding = [], 0, None
        for _name, vectorizer in union.transformer_list:
            if hasattr(vectorizer, "encoder"):  # absence_model.SentenceFeatures
                if embedding is not None or _name != union.transformer_list[-1][0]:
                    raise UnsupportedPipeline("the sentence embedding comes once, last")
                embedding = EmbeddingBlock(vectorizer.encoder, float(vectorizer.weight), offset)
                continue
            vocabulary = {str(k): int(v) for k, v in vectorizer.vocabulary_.items()}
            blocks.append(FeatureBlock(_analyzer_of(vectorizer), vocabulary, np.asarray(vectorizer.idf_),
                                       offset, bool(vectorizer.sublinear_tf)))  # fmt: skip
            offset += len(vocabulary)
        coef = np.asarray(linear.coef_)
        if coef.shape[0] != len(linear.classes_):
            raise UnsupportedPipeline("a two-class model keeps one row of coefficients")
        classes = [str(c) for c in linear.classes_]
        return cls(blocks, coef.T, linear.intercept_, classes, fingerprint, embedding)

    def scores(self, text: str) -> np.ndarray:
        """The linear model's decision value for each class."""
        return self.scores_many([text])[0]

    def scores_many(self, texts: Sequence[str]) -> np.ndarray:
        """``scores`` of each text (one row each), the sentence encoder run once over them all."""
        rows = np.array([self._tfidf_scores(text) for text in texts]).reshape(len(texts), len(self.classes))
        if self.embedding is not None and texts:
            e = self.embedding
            vectors = e.encoder.encode(list(texts)).astype(np.float64)
            rows += e.weight * (vectors @ self.coef_t[e.offset : e.offset + DIMENSION])
        return rows

    def _tfidf_scores(self, text: str) -> np.ndarray:
        scores = self.intercept.copy()
        for block in self.blocks:
            counts = Counter(g for g in block.analyzer(text) if g in block.vocabulary)
            if not counts:
                continue
            columns = [block.vocabulary[g] for g in counts]
            tf = [1.0 + math.log(n) if block.sublinear_tf else float(n) for n in counts.values()]
            weights = np.array([t * block.idf[c] for c, t in zip(columns, tf, strict=True)])
            weights /= math.sqrt(float(weights @ weights))  # each vectorizer is l2-normalized
            scores += weights @ self.coef_t[[block.offset + c for c in columns]]
        return scores

    # -- on disk ---------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write atomically (a reader never sees half a file), private to the owner."""
        embedding = self.embedding
        meta = {"format": FORMAT, "fingerprint": self.fingerprint, "classes": list(self.classes),
                "blocks": [{"analyzer": b.analyzer.to_json(), "offset": b.offset,
                            "sublinear_tf": b.sublinear_tf} for b in self.blocks],
                "embedding": embedding and {"encoder": ENCODER, "weight": embedding.weight,
                                            "offset": embedding.offset}}  # fmt: skip
        arrays: dict[str, np.ndarray] = {
            "meta": _json_bytes(meta), "coef_t": self.coef_t, "intercept": self.intercept
        }
        for i, block in enumerate(self.blocks):
            terms = sorted(block.vocabulary, key=block.vocabulary.__getitem__)
            arrays[f"terms_{i}"] = _json_bytes(terms)
            arrays[f"idf_{i}"] = block.idf
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".model-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)  # type: ignore[arg-type]
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(
        cls, path: Path, fingerprint: str, encoder: SentenceEncoder | None = None
    ) -> CompiledModel | None:
        """The model in ``path`` if it is whole, of this fingerprint and, when it has a sentence
        embedding, of this ``encoder`` (the process's shared one when not given), else None."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(data["meta"].tobytes())
                if meta.get("format") != FORMAT or meta.get("fingerprint") != fingerprint:
                    return None
                blocks = []
                for i, b in enumerate(meta["blocks"]):
                    terms = json.loads(data[f"terms_{i}"].tobytes())
                    vocabulary = {t: j for j, t in enumerate(terms)}
                    analyzer, offset = Analyzer(**b["analyzer"]), int(b["offset"])
                    blocks.append(
                        FeatureBlock(analyzer, vocabulary, data[f"idf_{i}"], offset, bool(b["sublinear_tf"]))
                    )
                embedding = None
                if (e := meta.get("embedding")) is not None:
                    if e["encoder"] != ENCODER:
                        return None
                    encoder = encoder or shared_encoder(None)
                    embedding = EmbeddingBlock(encoder, float(e["weight"]), int(e["offset"]))
                return cls(blocks, data["coef_t"], data["intercept"], meta["classes"], fingerprint, embedding)
        except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
            return None  # absent, truncated or foreign: the caller trains again


def _json_bytes(value: object) -> np.ndarray:
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode(), dtype=np.uint8)
