"""A copy of the project's mappings whose model trains in a fraction of the time, for the tests
that retrain on every change (the stewards' loop, the model cache, re-harmonization)."""

from __future__ import annotations

import shutil
from pathlib import Path

from vigie.settings import Settings

TRAINING_SHARE = 10  # one training line in ten


def copy_mappings(dest: Path) -> Path:
    """Copy the mappings to ``dest``, keeping one line in ten of ``train.tsv``: the recipe,
    the rules and the files are the project's, and training costs ~11 s instead of ~90 (the
    sentence embedding). Its figures are not the project's: accuracy is measured on the whole
    corpus. Not less: trained on a twentieth, the model read « kermesse de Quiquinou », the
    stewards' tests' text no line speaks of, as an appointment instead of leaving it ``inconnu``."""
    shutil.copytree(Settings().mappings_dir, dest)
    train = dest / "absence_corpus" / "train.tsv"
    header, *lines = train.read_text(encoding="utf-8").splitlines()
    train.write_text("\n".join([header, *lines[::TRAINING_SHARE]]) + "\n", encoding="utf-8")
    return dest
