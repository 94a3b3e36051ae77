"""A copy of the project's mappings whose model trains in a fraction of the time, for the tests
that retrain on every change (the stewards' loop, the model cache, re-harmonization)."""

from __future__ import annotations

import shutil
from pathlib import Path

from vigie.settings import Settings

TRAINING_SHARE = 20  # one training line in twenty


def copy_mappings(dest: Path) -> Path:
    """Copy the mappings to ``dest``, keeping one line in twenty of ``train.tsv``: the recipe,
    the rules and the files are the project's, and training costs ~7 s instead of ~90 (the
    sentence embedding). Its figures are not the project's: accuracy is measured on the whole
    corpus, and a text no line speaks of may get any guess from it (« kermesse de Quiquinou »
    came out an appointment), so the tests built on it assert what the stewards' layers do,
    not what the model guesses."""
    shutil.copytree(Settings().mappings_dir, dest)
    train = dest / "absence_corpus" / "train.tsv"
    header, *lines = train.read_text(encoding="utf-8").splitlines()
    train.write_text("\n".join([header, *lines[::TRAINING_SHARE]]) + "\n", encoding="utf-8")
    return dest
