"""Scoring the motif classifier on a labelled set: accuracy, wrong-category rate,
per-category precision and recall, and the confusions.

A miss that comes back ``inconnu`` is not the same failure as a wrong category: a
steward still sees the first; nobody sees the second. The report keeps them apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from streams.absence_corpus import CANONICAL_REASONS, UNKNOWN, Example


@dataclass(frozen=True)
class CategoryScore:
    """Precision and recall of one category (None when undefined: nothing predicted / expected)."""

    category: str
    expected: int
    predicted: int
    right: int

    @property
    def precision(self) -> float | None:
        return self.right / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.right / self.expected if self.expected else None

    def as_dict(self) -> dict[str, object]:
        return {"expected": self.expected, "predicted": self.predicted, "right": self.right,
                "precision": self.precision, "recall": self.recall}  # fmt: skip


@dataclass
class Evaluation:
    """The scores of one labelled set."""

    total: int = 0
    right: int = 0
    wrong_category: int = 0  # a canonical reason other than the label (not inconnu)
    missed: int = 0  # came back inconnu, label was a reason
    confusions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (expected, predicted)
    per_category: list[CategoryScore] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.right / self.total if self.total else 0.0

    @property
    def wrong_rate(self) -> float:
        return self.wrong_category / self.total if self.total else 0.0

    @property
    def missed_rate(self) -> float:
        return self.missed / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary (texts are not included: counts and categories only)."""
        return {
            "total": self.total,
            "right": self.right,
            "accuracy": round(self.accuracy, 4),
            "wrong_category": self.wrong_category,
            "wrong_category_rate": round(self.wrong_rate, 4),
            "missed_as_inconnu": self.missed,
            "per_category": {s.category: s.as_dict() for s in self.per_category},
            "confusions": [
                {"expected": e, "predicted": p, "count": n} for (e, p), n in self.confusions.most_common()
            ],
        }


def evaluate(examples: Sequence[Example], classify: Callable[[str], str]) -> Evaluation:
    """Score ``classify`` (text → category) on labelled examples."""
    result = Evaluation(total=len(examples))
    expected: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    right: Counter[str] = Counter()
    for example in examples:
        got = classify(example.text)
        expected[example.category] += 1
        predicted[got] += 1
        if got == example.category:
            result.right += 1
            right[got] += 1
            continue
        result.confusions[(example.category, got)] += 1
        if got == UNKNOWN:
            result.missed += 1
        else:
            result.wrong_category += 1
    result.per_category = [
        CategoryScore(c, expected[c], predicted[c], right[c])
        for c in CANONICAL_REASONS
        if expected[c] or predicted[c]
    ]
    return result
