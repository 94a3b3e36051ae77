"""Motif d'absence → one of the network's canonical reasons, in layers.

1. the CSS's own code table (``mappings/absence/<css>.csv``): exact;
2. the stewards' text mappings for that CSS (``mappings/absence_texts/<css>.tsv``): exact
   on the normalized text;
3. rules for what must be exact whatever the model thinks: a death beats family or a
   trip, a suspension is never a transport problem, a school trip is not a family trip;
4. the statistical model (``absence_model``) trained on the labelled corpus; below the
   confidence threshold, or when its best reason does not lead the runner-up by
   ``DEFAULT_MIN_LEAD``, the answer is ``inconnu`` and the text goes to the stewards' log.

Motifs repeat heavily, so each distinct text is classified once and cached (bounded).
Free text never leaves this module: only the category does.
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from streams.absence_corpus import (
    CANONICAL_REASONS,
    CORPUS_DIR,
    UNKNOWN,
    keyword_examples,
    normalize,
    read_context,
    read_labelled,
    steward_files,
)
from streams.absence_model import TextModel, load_model

__all__ = ["CANONICAL_REASONS", "UNKNOWN", "AbsenceClassifier", "Classification", "normalize"]

DEFAULT_THRESHOLD = 0.5
# The model's best category must lead the runner-up by this much (SVM margin units), or
# the answer is ``inconnu``: a text between two reasons is a steward's, not a guess.
# Chosen on dev.tsv and by cross-validation on train.tsv (README, "Motifs d'absence").
DEFAULT_MIN_LEAD = 0.35
CACHE_MAX = 50_000
# A motif is a line; a hostile or careless CSS may send pages. Only this much is read, so
# the cache's memory stays bounded (50,000 × 256 characters) whatever arrives.
TEXT_MAX = 256

# Exact rules on the normalized text, most specific first. Each is a reason a model must
# not be allowed to get wrong; the training corpus teaches the same, the rule guarantees it.
RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("deuil", re.compile(
        r"\b(deuil\w*|dueil|deces|dece|decede\w*|funera\w*|funeral\w*|funearl|fueneral|enterrement"
        r"|obseques|mortuaire|mise en terre|passed away|died|death|bereave\w*|shiva|janazah"
        r"|mort|morte|est mort|perte d un proche)\b")),
    ("suspension", re.compile(
        # « renvoyé(e)(s) », « renvoi(s) »: a sanction done; not the infinitive « renvoyer »,
        # which sends the student back as often as away (« avant de la renvoyer à l'école »)
        r"\b(suspen\w*|suspandu\w*|susp|expuls\w*|expelled|renvois?|renvoyee?s?)\b")),
    ("activite_scolaire", re.compile(
        r"\b(voyage|sortie|trip|visite)\b(\s+\w+){0,3}\s+(scolaire|de l ecole|avec l ecole"
        r"|avec la classe|de classe|etudiant\w*)\b"
        r"|\b(school|class|field|band|choir|exchange)\s+trip\b")),
)  # fmt: skip

# When the suspension rule must step aside for the model: « transport scolaire suspendu »
# in a storm is the service, not a sanction; « renvoyé à la maison par l'infirmière » is
# an illness. A sanction word keeps the rule (« suspendu pour bataille, jour de tempête »).
# Weather and the roads, as the transport category says them.
_NOT_A_SANCTION = re.compile(
    r"\b(tempete\w*|neige\w*|verglas\w*|meteo|storm\w*|snow\w*|blizzard|poudrerie|froid"
    r"|inondation\w*|flood\w*|intemperie\w*|glace\w*|glissant\w*|chaussee\w*|routes?|routier\w*"
    r"|pluie\w*|vent\w*|brouillard|crue\w*|ice|icy|freezing|road\w*|weather|wind\w*|fog)\b"
)
# A service suspended is no student suspended: « transport scolaire suspendu », « autobus
# suspendus », « classes suspended » (the noun before the verb), where « suspendu de
# l'autobus » and « bus suspension » are the student's.
_SERVICE_SUSPENDED = re.compile(
    r"\b(transport\w*|service\w*|circuits?|autobus|bus|buses|busses|cours|classes?|ecoles?"
    r"|navettes?|metro|trains?|traversier|ferry|trajets?|parcours)\b(\s+\w+){0,2}\s+(suspendu\w*|suspended)\b"
)
_SENT_HOME_SICK = re.compile(r"\b(infirmi\w*|nurse|malade\w*|fievre\w*|fever\w*|sick|vomi\w*)\b")
# « renvoyé(e) à la maison », « renvoyé chez lui »: sent home, sick or sanctioned.
_SENT_HOME = re.compile(r"\b(renvoi|renvoye\w*)\s+(a\s+la\s+maison|chez\s+(lui|elle|eux|soi|nous|vous))\b")
_SANCTION = re.compile(
    r"\b(comportement|discipl\w*|bataille|violence|intimidation|expuls\w*|expelled|fight\w*"
    r"|direction|principal|sanction\w*|behaviou?r|privil\w*)\b"
)
_SUSPENSION_PROPER = re.compile(r"\b(suspen\w*|suspandu\w*|susp|expuls\w*|expelled)\b")


# A medical appointment comes before a school activity (the labelling's order): « sortie
# scolaire et rdv médecin » is the model's to decide, which learned it from such lines.
_MEDICAL_APPOINTMENT = re.compile(
    r"\b(rdv|rendez vous|rv|appt|appointment|medecin|docteur|doctor|dr|dentiste?|clinique|clinic"
    r"|hopital|hospital|orthodontiste|pediatre)\b"
)


# « mort » that is no death: « batterie morte », « malade à mort », « mort de rire », and a
# machine that died (« notre auto est morte à cause du frette », « my car died on the 10 »).
_NOT_A_DEATH = re.compile(
    r"\b(batterie|pile|cellulaire|cell|phone|telephone|point|saison|auto|char|voiture|minivan|van"
    r"|camion|truck|car|moteur|engine|ordi|ordinateur|laptop|chargeur|reveil|cadran|alarm|fournaise"
    r"|furnace|chauffage|autobus|bus)\s+((est|etait|a|sont|is|has|just)\s+)?(mort\w*|died|dead)\b"
    r"|\ba\s+mort\b|\bmort\w*\s+de\s+(rire|fatigue|peur)\b"
)
# A student who left the school is no outing: « élève sortie de l'école sans permission ».
_LEFT_WITHOUT_LEAVE = re.compile(
    r"\b(sorti|sortie|sortis|sorties|parti|partie|quitte)\s+(de\s+l\s+ecole\s+)?sans\s+"
    r"(permission|autorisation|billet|avis|motif)\b"
)
# An eviction is not a sanction: « expulsés du logement » is a family matter.
_EVICTION = re.compile(
    r"\b(expuls\w*|evict\w*)\s+(du|de\s+leur|de\s+son|de\s+l)\s*(logement|appartement|appart|loyer)\b"
)


def _rule_applies(reason: str, norm: str) -> bool:
    """A rule's pattern matched; the death rule yields when its only word is a « mort » that
    is no death, the suspension rule (without a sanction word) to weather, a suspended
    service, an eviction and a « renvoi » that names no sanction, the school-trip rule to a
    medical appointment and to a student who left without leave."""
    if reason == "deuil":
        return bool(RULES[0][1].search(_NOT_A_DEATH.sub(" ", norm)))
    if reason == "activite_scolaire":
        return not (_MEDICAL_APPOINTMENT.search(norm) or _LEFT_WITHOUT_LEAVE.search(norm))
    if reason == "suspension" and _EVICTION.search(norm):
        return False
    if reason != "suspension" or _SANCTION.search(norm):
        return True
    if _NOT_A_SANCTION.search(norm) or _SERVICE_SUSPENDED.search(norm):
        return False
    if _SUSPENSION_PROPER.search(norm):
        return True  # « suspendu », « expulsé »: sanctions by themselves
    # A « renvoi » that sends the student home names no sanction: sick or sanctioned, the rest
    # of the text says which (« saignement de nez, renvoyée à la maison »), and the model,
    # which learned both, reads it. « renvoyé de l'école » stays the rule's.
    return not (_SENT_HOME_SICK.search(norm) or _SENT_HOME.search(norm))


@dataclass(frozen=True)
class Classification:
    """Outcome of mapping one motif d'absence; ``by`` names the layer that decided."""

    category: str
    confidence: float
    mapped: bool
    by: str = "none"


UNMAPPED = Classification(UNKNOWN, 0.0, False)


def _confidence(margin: float) -> float:
    """The SVM margin on 0..1 (margin 0 → 0.5): a score to threshold, not a probability."""
    return round(min(1.0, max(0.0, (margin + 1.0) / 2.0)), 3)


class AbsenceClassifier:
    """Maps a CSS's local absence code, or free text, to a canonical reason."""

    def __init__(
        self,
        local_codes: dict[str, dict[str, str]],
        model: TextModel,
        steward_texts: dict[str, dict[str, str]] | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        min_lead: float = DEFAULT_MIN_LEAD,
    ) -> None:
        steward_texts = steward_texts or {}
        tables = [*local_codes.values(), *steward_texts.values()]
        unknown = {r for table in tables for r in table.values()} - set(CANONICAL_REASONS)
        if unknown:
            raise ValueError(f"absence mappings use non-canonical reasons: {sorted(unknown)}")
        self._local_codes = local_codes
        self._steward = steward_texts
        self._model = model
        self.threshold = threshold
        self.min_lead = min_lead
        self._cache: dict[str, Classification] = {}  # by raw text (and CSS where it has stewards' texts)
        self._by_norm: dict[str, Classification] = {}  # by normalized text
        digest = hashlib.sha256(model.fingerprint.encode())
        digest.update(repr(sorted((c, sorted(t.items())) for c, t in steward_texts.items())).encode())
        digest.update(f"threshold={threshold}|min_lead={min_lead}".encode())
        digest.update(Path(__file__).read_bytes())  # the rules: a changed rule is a new mapping version
        self.fingerprint = digest.hexdigest()[:16]

    @classmethod
    def from_dir(
        cls, mappings_dir: Path, threshold: float = DEFAULT_THRESHOLD, model_cache: Path | None = None
    ) -> AbsenceClassifier:
        """Load ``absence/<css>.csv`` code lists, the stewards' texts and the model (read from
        ``model_cache`` when it holds this corpus's model)."""
        local: dict[str, dict[str, str]] = {}
        for path in sorted((mappings_dir / "absence").glob("*.csv")):
            with path.open(encoding="utf-8", newline="") as f:
                local[path.stem] = {
                    r["local_code"].strip().upper(): r["reason"].strip() for r in csv.DictReader(f)
                }
        steward = {
            css: {normalize(e.text): e.category for e in read_labelled(path)}
            for css, path in steward_files(mappings_dir).items()
        }
        model = load_model(mappings_dir, model_cache)
        model.warm()
        return cls(local, model, steward, threshold)

    def knows_css(self, css: str) -> bool:
        """True when the CSS has a local code list."""
        return css in self._local_codes

    def classify_code(self, css: str, code: str) -> Classification:
        """The CSS's own code table, exact (case and surrounding spaces ignored)."""
        reason = self._local_codes.get(css, {}).get(code.strip().upper())
        return UNMAPPED if reason is None else Classification(reason, 1.0, True, "local_code")

    def classify_text(self, text: str, css: str | None = None) -> Classification:
        """Classify free text; never raises: unknown or empty text gives ``inconnu``."""
        text = text[:TEXT_MAX]
        key = self._cache_key(text, css)
        found = self._cache.get(key)
        if found is None:
            found = self._classify_uncached(text, css)
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()  # a bounded memory; motifs repeat, it refills with the common ones
            self._cache[key] = found
        return found

    def _cache_key(self, text: str, css: str | None) -> str:
        """By raw text, and CSS where it has stewards' texts (their mapping is per CSS)."""
        return f"{css}\x00{text}" if css in self._steward else text

    def _classify_uncached(self, text: str, css: str | None) -> Classification:
        norm = normalize(text)
        if not norm:
            return UNMAPPED
        if css is not None:
            reason = self._steward.get(css, {}).get(norm)
            if reason is not None:
                return Classification(reason, 1.0, reason != UNKNOWN, "steward")
        found = self._by_norm.get(norm)
        if found is None:
            # Each distinct normalized text meets the rules and the model once ("Malade",
            # "malade!" and "MALADE" are one text); bounded like the raw-text cache.
            found = self._by_rules_or_model(norm)
            if len(self._by_norm) >= CACHE_MAX:
                self._by_norm.clear()
            self._by_norm[norm] = found
        return found

    def prepare(self, css: str | None, motifs: Iterable[tuple[str | None, str | None]]) -> None:
        """Classify a batch's motifs (code, text) ahead of ``classify``: the distinct texts
        that no cache, code, steward's mapping or rule decides meet the model together, whose
        sentence encoder costs ~0.4 ms a text in a batch against ~1.7 ms alone. Changes no
        answer: ``classify`` then finds them in the cache."""
        pending: dict[str, None] = {}
        steward = self._steward.get(css, {}) if css else {}
        for code, text in motifs:
            if not text:
                continue
            text = text[:TEXT_MAX]
            if self._cache_key(text, css) in self._cache:
                continue  # seen before, as most motifs are: no normalizing on the hot path
            if css and code and code.strip() and self.classify_code(css, code).mapped:
                continue
            norm = normalize(text)
            if norm and norm not in self._by_norm and norm not in steward and self._by_rules(norm) is None:
                pending[norm] = None
        if len(pending) < 2:
            return  # one text costs the same either way
        if len(self._by_norm) + len(pending) >= CACHE_MAX:
            self._by_norm.clear()
        for norm, scored in zip(pending, self._model.predict_many(list(pending)), strict=True):
            self._by_norm[norm] = self._decide(*scored)

    def _by_rules(self, norm: str) -> Classification | None:
        """What decides before the model: keystrokes are ``inconnu``, then the rules."""
        if not any(len(word) > 1 for word in norm.split()):
            return UNMAPPED  # « s.o. », « a m », « x »: initials and keystrokes, never a reason
        for reason, pattern in RULES:
            if pattern.search(norm) and _rule_applies(reason, norm):
                return Classification(reason, 1.0, True, "rule")
        return None

    def _by_rules_or_model(self, norm: str) -> Classification:
        found = self._by_rules(norm)
        return found if found is not None else self._decide(*self._model.predict_one(norm))

    def _decide(self, category: str, margin: float, lead: float) -> Classification:
        """The model's answer, or ``inconnu`` below the threshold or the lead."""
        confidence = _confidence(margin)
        if category == UNKNOWN or confidence < self.threshold or lead < self.min_lead:
            return Classification(UNKNOWN, confidence, False, "model")
        return Classification(category, confidence, True, "model")

    def classify(self, css: str, code: str | None, text: str | None) -> Classification:
        """Local code first, then free text."""
        if code and code.strip():
            by_code = self.classify_code(css, code)
            if by_code.mapped or not text:
                return by_code
        if text:
            return self.classify_text(text, css)
        return UNMAPPED


def cross_validate(
    mappings_dir: Path, folds: int = 5, seed: int = 0,
    threshold: float = DEFAULT_THRESHOLD, min_lead: float = DEFAULT_MIN_LEAD,
) -> tuple[float, float]:  # fmt: skip
    """Accuracy and wrong-category rate of the whole classifier (rules, then the model) on
    ``train.tsv`` itself, each fold scored by a model trained on the others (and the
    keyword lexicon), typos and fillers added to the training folds only. Harsher than a
    held-out set: most lines are the only example of their word, so a fold removes whole
    concepts. A measure to choose the decision rule on without touching the held-out sets."""
    rows = read_labelled(mappings_dir / CORPUS_DIR / "train.tsv")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)  # train.tsv is written category by category
    right = wrong = 0
    for fold in range(folds):
        scored = set(order[fold::folds])
        model = TextModel.fit(
            [rows[i] for i in order if i not in scored] + keyword_examples(mappings_dir), f"fold{fold}",
            read_context(mappings_dir),
        )
        classifier = AbsenceClassifier({}, model, threshold=threshold, min_lead=min_lead)
        for i in scored:
            found = classifier.classify_text(rows[i].text).category
            right += found == rows[i].category
            wrong += found not in (rows[i].category, UNKNOWN)
    return right / len(rows), wrong / len(rows)
