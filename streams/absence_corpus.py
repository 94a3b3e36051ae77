"""The labelled corpus of motifs d'absence the statistical layer learns from.

Files are tab-separated ``text<TAB>category`` with a header line, UTF-8:

- ``mappings/absence_corpus/train.tsv`` — what the model learns from;
- ``mappings/absence_corpus/dev.tsv`` — what thresholds and features were chosen on;
- ``mappings/absence_corpus/heldout*.tsv`` — each written before a change and scored once, never
  tuned on (README, "Motifs d'absence");
- ``mappings/absence_texts/<css>.tsv`` — the stewards' mappings, one file per CSS: exact
  for that CSS, and training data for every CSS;
- ``mappings/absence_keywords.csv`` — the former keyword lexicon, kept as training data;
- ``mappings/absence_context.tsv`` — neutral context (``text<TAB>position``, ``prefix`` or
  ``suffix``): what people type around a reason and that names none (« selon la mère: »,
  « retour prévu lundi »).

Training rows are augmented with seeded typos (a letter dropped, doubled, swapped or
replaced) and wrapped in neutral context, so the same corpus always gives the same model.
"""

from __future__ import annotations

import csv
import random
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CANONICAL_REASONS = (
    "maladie", "sante_rdv", "famille", "deuil", "activite_scolaire", "suspension",
    "transport_meteo", "voyage", "religieux_culturel", "personnel", "non_motivee", "inconnu",
)  # fmt: skip
UNKNOWN = "inconnu"
CORPUS_DIR = "absence_corpus"
STEWARD_DIR = "absence_texts"
HEADER = ("text", "category")
CONTEXT_FILE = "absence_context.tsv"
CONTEXT_HEADER = ("text", "position")
AUGMENT_SEED = 17
AUGMENT_COPIES = 2
# Seeded strings of random letters learned as ``inconnu``: keystrokes are no reason, and the
# sentence embedding gives every string a vector, near some reason's (« xyzzy » read as an
# illness without them).
KEYSTROKES = 600
# How secretaries wrap a reason: "absent - malade", "abs. grippe", "absente pour rdv".
# A reason wrapped this way is still that reason; alone, these words are ``inconnu``.
FILLERS = ("absent", "absente", "abs", "absent pour", "absente pour", "absence", "motif")
SUFFIXES = ("aujourd hui", "ce matin", "cet apres midi", "today", "am", "pm", "toute la journee")
_WORD = re.compile(r"[a-z0-9]+")


def normalize(text: str) -> str:
    """Casefold, strip accents, and keep words only ("Rendez-vous d'Éric!" → "rendez vous d eric")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join(_WORD.findall("".join(c for c in decomposed if not unicodedata.combining(c))))


class CorpusError(ValueError):
    """A labelled file that cannot be read: names the file, line and rule, never the text."""


@dataclass(frozen=True)
class Context:
    """Neutral context people type around a reason, normalized: before it and after it."""

    prefixes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()


NO_CONTEXT = Context()


def read_context(mappings_dir: Path) -> Context:
    """The neutral context phrases (``absence_context.tsv``); none when the file is absent.
    Raises ``CorpusError`` for a malformed file."""
    path = mappings_dir / CONTEXT_FILE
    if not path.exists():
        return NO_CONTEXT
    found: dict[str, list[str]] = {"prefix": [], "suffix": []}
    for number, line in enumerate(_lines_after_header(path, CONTEXT_HEADER), start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or parts[1].strip() not in found:
            raise CorpusError(f"{path}: line {number} must be 'text<TAB>prefix' or 'text<TAB>suffix'")
        if norm := normalize(parts[0]):
            found[parts[1].strip()].append(norm)
    return Context(tuple(found["prefix"]), tuple(found["suffix"]))


@dataclass(frozen=True)
class Example:
    """One labelled motif."""

    text: str
    category: str


def _lines_after_header(path: Path, header: tuple[str, str]) -> list[str]:
    """The lines of a UTF-8 TSV after its header, which must be ``header``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{path}: cannot read ({type(exc).__name__})") from None
    if not lines or tuple(c.strip().lower() for c in lines[0].split("\t")) != header:
        raise CorpusError(f"{path}: line 1 must be the header '{header[0]}<TAB>{header[1]}'")
    return lines[1:]


def read_labelled(path: Path) -> list[Example]:
    """Read a labelled TSV (``text<TAB>category``, header first). Raises ``CorpusError``."""
    out = []
    for number, line in enumerate(_lines_after_header(path, HEADER), start=2):
        if not line.strip("\t"):
            continue  # a blank line, not an empty motif (those are written "<TAB>inconnu")
        parts = line.split("\t")
        if len(parts) != 2:
            raise CorpusError(f"{path}: line {number} must have exactly two tab-separated fields")
        category = parts[1].strip()
        if category not in CANONICAL_REASONS:
            raise CorpusError(f"{path}: line {number}: category is not one of the canonical reasons")
        out.append(Example(parts[0], category))
    return out


def read_any(path: Path) -> list[Example]:
    """A labelled TSV, or a CSV with ``text`` and ``category`` columns (the older test sets)."""
    if path.suffix.lower() != ".csv":
        return read_labelled(path)
    try:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if not {"text", "category"} <= set(reader.fieldnames or ()):
                raise CorpusError(f"{path}: a CSV needs the columns 'text' and 'category'")
            rows = [Example(r["text"] or "", (r["category"] or "").strip()) for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CorpusError(f"{path}: cannot read ({type(exc).__name__})") from None
    for number, row in enumerate(rows, start=2):
        if row.category not in CANONICAL_REASONS:
            raise CorpusError(f"{path}: line {number}: category is not one of the canonical reasons")
    return rows


def write_labelled(path: Path, examples: Iterable[Example]) -> None:
    """Write a labelled TSV; tabs and line breaks inside a text become spaces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = [" ".join(e.text.split()) + "\t" + e.category for e in examples]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(["\t".join(HEADER), *body]) + "\n", encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a file


def steward_files(mappings_dir: Path) -> dict[str, Path]:
    """The stewards' text mappings, by CSS code."""
    return {p.stem: p for p in sorted((mappings_dir / STEWARD_DIR).glob("*.tsv"))}


def keyword_examples(mappings_dir: Path) -> list[Example]:
    """The former keyword lexicon (``absence_keywords.csv``) as training examples."""
    path = mappings_dir / "absence_keywords.csv"
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as f:
        return [Example(r["keyword"], r["reason"].strip()) for r in csv.DictReader(f)]


def training_examples(mappings_dir: Path) -> list[Example]:
    """Everything the model learns from: the training set, the lexicon, the stewards' mappings.
    Never the dev or held-out sets."""
    rows = read_labelled(mappings_dir / CORPUS_DIR / "train.tsv") + keyword_examples(mappings_dir)
    for path in steward_files(mappings_dir).values():
        rows += read_labelled(path)
    return rows


def learned_texts(mappings_dir: Path) -> set[str]:
    """Every normalized text the model is shown: the training examples and the neutral
    context phrases (an evaluation line equal to one of them measures memory, not reading)."""
    context = read_context(mappings_dir)
    texts = {normalize(e.text) for e in training_examples(mappings_dir)}
    return texts | set(context.prefixes) | set(context.suffixes)


def training_files(mappings_dir: Path) -> list[Path]:
    """The files the model is trained from, for the mapping version."""
    files = [mappings_dir / CORPUS_DIR / "train.tsv", mappings_dir / "absence_keywords.csv",
             mappings_dir / CONTEXT_FILE]  # fmt: skip
    return [p for p in files if p.exists()] + list(steward_files(mappings_dir).values())


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word))
    op = rng.randrange(4)
    if op == 0:
        return word[:i] + word[i + 1 :]
    if op == 1 and i < len(word) - 1:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == 2:
        return word[:i] + word[i] + word[i:]
    return word[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + word[i + 1 :]


def augment(
    examples: Iterable[Example], copies: int = AUGMENT_COPIES, seed: int = AUGMENT_SEED,
    context: Context = NO_CONTEXT,
) -> list[tuple[str, str]]:  # fmt: skip
    """Normalized examples, ``copies`` seeded one-typo variants of each (words of 5+
    letters only: a typo in a short word makes another word), each reason once more
    behind a filler word ("absent - malade") and before one ("malade ce matin"), and,
    with ``context``, once more inside neutral context ("selon la mère: malade, retour
    lundi"); the context alone is ``inconnu``. People write a reason inside such words: a
    model that never saw them there reads the words as a reason of their own or loses its
    lead, and the text falls to ``inconnu``."""
    rng = random.Random(seed)
    out = []
    for example in examples:
        norm = normalize(example.text)
        out.append((norm, example.category))
        words = norm.split()
        long_words = [i for i, w in enumerate(words) if len(w) >= 5]
        for _ in range(copies if long_words else 0):
            variant = list(words)
            i = rng.choice(long_words)
            variant[i] = _typo(variant[i], rng)
            out.append((" ".join(variant), example.category))
        if example.category != UNKNOWN and norm:
            out.append((f"{rng.choice(FILLERS)} {norm}", example.category))
            out.append((f"{norm} {rng.choice(SUFFIXES)}", example.category))
            if context.prefixes or context.suffixes:
                out.append((_in_context(norm, context, rng), example.category))
    for _ in range(KEYSTROKES):  # after the examples: their rows are drawn as before
        mash = (_random_letters(rng) for _ in range(rng.choice((1, 1, 2))))
        out.append((" ".join(mash), UNKNOWN))
    for phrase in (*context.prefixes, *context.suffixes):
        out.append((phrase, UNKNOWN))
        if context.prefixes and context.suffixes:
            out.append((f"{rng.choice(context.prefixes)} {rng.choice(context.suffixes)}", UNKNOWN))
    return out


def _random_letters(rng: random.Random) -> str:
    """4 to 8 letters drawn alike: no word of French or English, no abbreviation (« rv », « dr »)."""
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 8)))


def _in_context(norm: str, context: Context, rng: random.Random) -> str:
    """``norm`` after a prefix, before a suffix, or both (a third each; one side when the
    context has only that side)."""
    where = rng.randrange(3)
    if not context.suffixes:
        where = 0
    elif not context.prefixes:
        where = 1
    before = rng.choice(context.prefixes) + " " if where != 1 else ""
    after = " " + rng.choice(context.suffixes) if where != 0 else ""
    return f"{before}{norm}{after}"


STEWARD_TEXT_MAX = 200
_CODE = re.compile(r"^[A-Za-z0-9._-]{1,16}$")


def set_text_mapping(mappings_dir: Path, css: str, text: str, category: str) -> bool:
    """A steward's decision: ``text`` means ``category`` for ``css``. It becomes exact for that
    CSS and training data for every CSS. Returns False when it was already so."""
    if category not in CANONICAL_REASONS:
        raise CorpusError("category is not one of the canonical reasons")
    clean = " ".join(text.split())
    if not normalize(clean):
        raise CorpusError("the text has no letter or digit to map")
    if len(clean) > STEWARD_TEXT_MAX:
        raise CorpusError(f"the text is longer than {STEWARD_TEXT_MAX} characters")
    path = mappings_dir / STEWARD_DIR / f"{css}.tsv"
    rows = read_labelled(path) if path.exists() else []
    key = normalize(clean)
    if any(normalize(r.text) == key and r.category == category for r in rows):
        return False
    rows = [r for r in rows if normalize(r.text) != key] + [Example(clean, category)]
    write_labelled(path, rows)
    return True


def set_code_mapping(mappings_dir: Path, css: str, code: str, category: str) -> bool:
    """A steward's decision: the CSS's local code ``code`` means ``category`` (its code table).
    Returns False when it was already so."""
    if category not in CANONICAL_REASONS:
        raise CorpusError("category is not one of the canonical reasons")
    code = code.strip().upper()
    if not _CODE.match(code):
        raise CorpusError("a local code is 1 to 16 letters, digits, '.', '_' or '-'")
    path = mappings_dir / "absence" / f"{css}.csv"
    table: dict[str, str] = {}
    if path.exists():
        with path.open(encoding="utf-8", newline="") as f:
            table = {r["local_code"].strip().upper(): r["reason"].strip() for r in csv.DictReader(f)}
    if table.get(code) == category:
        return False
    table[code] = category
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("local_code", "reason"))
        writer.writerows(sorted(table.items()))
    tmp.replace(path)
    return True
