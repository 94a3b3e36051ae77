"""Every word a ministry reader sees, in French and English, from one table.

Canonical codes (``sante_rdv``), column names (``absence_rate_pct``) and chart states are
stored as codes; dashboards and the report show them through this table: Grafana's SQL
turns codes into labels with ``transform`` (``label_sql``), the report with ``label``.
French is the default (Charte de la langue française); the English school boards read
English. A code missing here is shown as is, and a test lists every vocabulary the
pipeline can emit so that none is missing.
"""

from __future__ import annotations

from typing import Literal

Language = Literal["fr", "en"]
LANGUAGES: tuple[Language, ...] = ("fr", "en")
TIMEZONE = "America/Toronto"  # Québec's time, with DST: every date and time shown is in it

# Shown where a count (and what derives from it) was withheld by small-cell suppression.
WITHHELD = "x"
# The network status grid's states and their colours (Grafana and the report).
STATE_COLOURS = {"live": "green", "late": "orange", "silent": "red", "no_consent": "#8e8e8e"}

_VALUES: dict[str, tuple[str, str]] = {
    # datasets and states of the network status grid
    "attendance": ("Présences", "Attendance"),
    "grades": ("Résultats scolaires", "Grades"),
    "staff": ("Personnel", "Staff"),
    "live": ("À jour", "Live"),
    "late": ("En retard", "Late"),
    "silent": ("Silencieux", "Silent"),
    "no_consent": ("Sans consentement", "No consent"),
    # motifs d'absence (streams/absence.py CANONICAL_REASONS)
    "maladie": ("Maladie", "Illness"),
    "sante_rdv": ("Rendez-vous de santé", "Health appointment"),
    "famille": ("Raison familiale", "Family reason"),
    "deuil": ("Deuil", "Bereavement"),
    "activite_scolaire": ("Activité scolaire", "School activity"),
    "suspension": ("Suspension", "Suspension"),
    "transport_meteo": ("Transport ou météo", "Transport or weather"),
    "voyage": ("Voyage", "Travel"),
    "religieux_culturel": ("Fête religieuse ou culturelle", "Religious or cultural holiday"),
    "personnel": ("Raison personnelle", "Personal reason"),
    "non_motivee": ("Absence non motivée", "Unexcused absence"),
    "inconnu": ("Non classé", "Unclassified"),
    # result bands
    "0-60": ("0 à 60 %", "0 to 60%"),
    "61-74": ("61 à 74 %", "61 to 74%"),
    "75-100": ("75 à 100 %", "75 to 100%"),
    # sex, plan d'intervention, language group, immigration generation
    "F": ("Filles", "Girls"),
    "M": ("Garçons", "Boys"),
    "X": ("Non binaire", "Non-binary"),
    "non_declare": ("Non déclaré", "Not reported"),
    "avec_pi": ("Avec plan d'intervention", "With an intervention plan"),
    "sans_pi": ("Sans plan d'intervention", "Without an intervention plan"),
    "francophone": ("Francophones", "French-speaking"),
    "anglophone": ("Anglophones", "English-speaking"),
    "allophone": ("Allophones", "Other languages"),
    "1re": ("1re génération", "1st generation"),
    "2e": ("2e génération", "2nd generation"),
    "3e+": ("3e génération ou plus", "3rd generation or more"),
    # subjects and competencies (streams/mappings)
    "francais": ("Français", "French"),
    "francais_langue_seconde": ("Français langue seconde", "French as a second language"),
    "anglais_langue_seconde": ("Anglais langue seconde", "English as a second language"),
    "english_language_arts": ("English Language Arts", "English Language Arts"),
    "mathematique": ("Mathématique", "Mathematics"),
    "science_technologie": ("Science et technologie", "Science and technology"),
    "univers_social": ("Univers social", "Social sciences"),
    "lire": ("Lire", "Reading"),
    "ecrire": ("Écrire", "Writing"),
    "communiquer_oralement": ("Communiquer oralement", "Oral communication"),
    "resoudre": ("Résoudre", "Problem solving"),
    "raisonner": ("Raisonner", "Reasoning"),
    "interagir": ("Interagir", "Interacting"),
    "reinvestir": ("Réinvestir", "Reinvesting"),
    "expliquer": ("Expliquer", "Explaining"),
    # levels
    **{f"prim{n}": (f"{n}{'re' if n == 1 else 'e'} primaire", f"Elementary {n}") for n in range(1, 7)},
    **{f"sec{n}": (f"{n}{'re' if n == 1 else 'e'} secondaire", f"Secondary {n}") for n in range(1, 6)},
    # job classes and leave types
    "enseignant": ("Enseignants", "Teachers"),
    "suppleant": ("Suppléants", "Substitute teachers"),
    "technicien_education_specialisee": (
        "Techniciens en éducation spécialisée",
        "Special education technicians",
    ),
    "prepose_eleves_handicapes": (
        "Préposés aux élèves handicapés",
        "Attendants for students with disabilities",
    ),
    "conseiller_pedagogique": ("Conseillers pédagogiques", "Educational consultants"),
    "secretariat": ("Secrétariat", "Office staff"),
    "conciergerie": ("Conciergerie", "Custodians"),
    "direction": ("Direction", "Principals"),
    "parental": ("Congé parental", "Parental leave"),
    "accident_travail": ("Accident du travail", "Work injury"),
    "formation": ("Formation", "Training"),
    "autre": ("Autre", "Other"),
    # absence episode durations
    "1j": ("1 jour", "1 day"),
    "2-3j": ("2 ou 3 jours", "2 or 3 days"),
    "4-5j": ("4 ou 5 jours", "4 or 5 days"),
    "6j+": ("6 jours ou plus", "6 days or more"),
    "others": ("Autres", "Others"),
}
_COLUMNS: dict[str, tuple[str, str]] = {
    "region": ("Région", "Region"),
    "css": ("Centre de services scolaire", "School service centre"),
    "school": ("École", "School"),
    "organization": ("Organisme", "Organization"),
    "dataset": ("Jeu de données", "Dataset"),
    "state": ("État", "State"),
    "time": ("Date", "Date"),
    "day": ("Jour", "Day"),
    "week": ("Semaine (ISO)", "Week (ISO)"),
    "events": ("Enregistrements", "Records"),
    "unmapped": ("Non classés", "Unmapped"),
    "unmapped_pct": ("Non classés (%)", "Unmapped (%)"),
    "dead_letters": ("Rejets", "Dead letters"),
    "students": ("Élèves", "Students"),
    "staff_count": ("Membres du personnel", "Staff members"),
    "absence_rate_pct": ("Taux d'absence (%)", "Absence rate (%)"),
    "reason": ("Motif d'absence", "Absence reason"),
    "chronic_students": ("Élèves en absentéisme chronique", "Chronically absent students"),
    "chronic_pct": ("Absentéisme chronique (%)", "Chronic absenteeism (%)"),
    "schools_reported": ("Écoles ayant transmis", "Schools reporting"),
    "schools_expected": ("Écoles attendues", "Schools expected"),
    "completeness_pct": ("Complétude (%)", "Completeness (%)"),
    "minutes_since_last": ("Minutes depuis le dernier envoi", "Minutes since last record"),
    "subject": ("Matière", "Subject"),
    "level": ("Niveau", "Level"),
    "band": ("Tranche de résultat", "Result band"),
    "competency": ("Compétence", "Competency"),
    "sex": ("Sexe", "Sex"),
    "plan": ("Plan d'intervention", "Intervention plan"),
    "language_group": ("Groupe linguistique", "Language group"),
    "immigration": ("Génération d'immigration", "Immigration generation"),
    "job_class": ("Corps d'emploi", "Job class"),
    "positions_opened": ("Postes ouverts", "Positions opened"),
    "unqualified_teachers": ("Enseignants non légalement qualifiés", "Teachers without legal qualification"),
    "teachers": ("Enseignants", "Teachers"),
    "episodes": ("Épisodes d'absence", "Absence episodes"),
    "duration": ("Durée", "Duration"),
    "mean_days": ("Durée moyenne (jours)", "Mean duration (days)"),
    "at_risk": ("Élèves à risque", "Students at risk"),
    "at_risk_pct": ("Élèves à risque (%)", "Students at risk (%)"),
    "absences_started": ("Absences commencées", "Absences started"),
    "attendance_state": ("Présences", "Attendance"),
    "grades_state": ("Résultats scolaires", "Grades"),
    "staff_state": ("Personnel", "Staff"),
}
LABELS: dict[str, tuple[str, str]] = {**_VALUES, **_COLUMNS}


def label(code: object, lang: Language = "fr") -> str:
    """The reader's word for a code or column name (the code itself when it has none)."""
    text = "" if code is None else str(code)
    pair = LABELS.get(text)
    return text if pair is None else pair[LANGUAGES.index(lang)]


def label_sql(expression: str) -> str:
    """A ClickHouse expression showing ``expression``'s codes (values, not column names) as
    labels in the language of the Grafana variable ``$lang`` (French unless it says
    ``en``); other values unchanged."""
    codes = ", ".join(_quote(c) for c in _VALUES)
    french = ", ".join(_quote(fr) for fr, _ in _VALUES.values())
    english = ", ".join(_quote(en) for _, en in _VALUES.values())
    value = f"toString({expression})"
    return f"transform({value}, [{codes}], if('${{lang}}' = 'en', [{english}], [{french}]), {value})"


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
