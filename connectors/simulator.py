"""A simulated school network: each CSS's local systems producing identified changes.

Deterministic for a seed. Each CSS keeps its own habits — its own absence code
list or free-text reasons (with typos and missing accents; English boards write
English), status codes, grade scale, HR job codes — and a few send malformed rows.
Volume scales with ``students_approx``. Batches go out through the real connector
path (``ConnectorPublisher``).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from connectors.calendar import school_date
from connectors.events import event_id, record_key
from schemas.contracts import Dataset
from schemas.organizations import Organization
from schemas.schools import default_schools, schools_by_kind

FIRST_NAMES = ("Léa", "Noah", "Emma", "William", "Olivia", "Liam", "Florence", "Thomas", "Alice",
               "Jacob", "Charlotte", "Nathan", "Zoé", "Félix", "Rosalie", "Édouard", "Maëlle",
               "Samuel", "Chloé", "Logan", "Ava", "Mohamed", "Amira", "Wei", "Sofia")  # fmt: skip
LAST_NAMES = ("Tremblay", "Gagnon", "Roy", "Côté", "Bouchard", "Gauthier", "Morin", "Lavoie",
              "Fortin", "Gagné", "Ouellet", "Pelletier", "Bélanger", "Lévesque", "Bergeron",
              "Smith", "Nguyen", "Haddad", "Diallo", "Papadopoulos")  # fmt: skip

TEXT_FR: dict[str, tuple[str, ...]] = {
    "maladie": ("malade", "absent pour maladie", "gastro", "Grippe", "fievre", "mal de ventre malade"),
    "sante_rdv": ("rdv médecin", "rdv dentiste", "chez le chiro", "rendez-vous optométriste", "méd.", "rdv medecin"),
    "famille": ("raison familiale", "urgence famille", "famile"),
    "deuil": ("deuil", "funérailles grand-père", "deces dans la famille"),
    "voyage": ("voyage", "vacances en famille", "voyage Mexique"),
    "transport_meteo": ("tempête", "autobus manqué", "neige"),
    "personnel": ("raison personnelle",),
    "non_motivee": ("non motivée", "sans motif"),
}  # fmt: skip
TEXT_EN: dict[str, tuple[str, ...]] = {
    "maladie": ("sick", "flu", "fever", "sick - stomach"),
    "sante_rdv": ("doctor appointment", "dentist", "orthodontist appt", "chiro"),
    "famille": ("family reasons", "family emergency"),
    "deuil": ("funeral", "bereavement"),
    "voyage": ("vacation", "family trip travel"),
    "transport_meteo": ("snow storm", "missed bus"),
    "non_motivee": ("unexcused",),
}  # fmt: skip
# The local code lists some CSS keep (the data stewards' mapping files hold the other side).
CODE_LISTS: dict[str, dict[str, str]] = {
    "montreal": {"maladie": "01", "sante_rdv": "02", "famille": "03", "deuil": "04", "voyage": "08",
                 "transport_meteo": "07", "non_motivee": "11", "personnel": "13X"},
    "capitale": {"maladie": "MAL", "sante_rdv": "RDV", "famille": "FAM", "deuil": "DEU", "voyage": "VOY",
                 "transport_meteo": "TEMP", "non_motivee": "NM", "personnel": "PER"},
    "english-montreal": {"maladie": "SICK", "sante_rdv": "MED", "famille": "FAM", "deuil": "BEREAV",
                         "voyage": "VAC", "transport_meteo": "WEATHER", "non_motivee": "UNEXC",
                         "personnel": "PERS"},
    "laval": {"maladie": "M1", "sante_rdv": "M2", "famille": "F1", "deuil": "F2", "voyage": "V1",
              "transport_meteo": "T1", "non_motivee": "N1", "personnel": "P1"},
}  # fmt: skip
REASON_WEIGHTS = {"maladie": 40, "sante_rdv": 20, "famille": 10, "deuil": 3, "voyage": 8,
                  "transport_meteo": 5, "personnel": 6, "non_motivee": 8}  # fmt: skip
STATUS_STYLES = (("P", "A", "R", "D"), ("PRES", "ABS", "RET", "DH"))
EN_STATUS = ("P", "A", "L", "E")
SUBJECTS = (("FRA", ("LIRE", "ECRIRE", "COMM")), ("MAT", ("RESOUDRE", "RAISONNER")),
            ("ANG", ("INTERACT", "REINVEST")), ("SCI", ("EXPLIQUER",)))  # fmt: skip
EN_SUBJECTS = (("ELA", ("READ", "WRITE", "TALK")), ("MATH", ("SOLVE", "REASON")),
               ("FSL", ("INTERACT", "REINVEST")), ("SCT", ("EXPLAIN",)))  # fmt: skip
MONTREAL_SUBJECTS = (("132", ("LIRE", "ECRIRE")), ("063", ("C1", "C2")), ("134", ("INTERACT",)),
                     ("055", ("EXPLIQUER",)), ("069", ("C1",)))  # fmt: skip
JOB_CODES = {"default": ("ENS", "ENS", "ENS", "SUP", "TES", "PNE", "CP", "SEC", "CONC", "DIR"),
             "en": ("TCH", "TCH", "TCH", "SUBT", "SPED", "PRIN", "SEC"),
             "montreal": ("4201", "4201", "4202", "4285", "5301", "DIR")}  # fmt: skip
MALFORMED_CSS = frozenset({"iles", "littoral", "chic-chocs"})


def last_school_day(today: date, back: int = 0) -> date:
    """The ``back``-th school day (Monday-Friday) before or on ``today``."""
    d = today
    while d.weekday() >= 5:
        d -= timedelta(days=1)
    while back:
        d -= timedelta(days=1)
        if d.weekday() < 5:
            back -= 1
    return d


def _rng(*parts: object) -> random.Random:
    return random.Random(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest())


@dataclass
class Student:
    local_id: str
    code_permanent: str
    first_name: str
    last_name: str
    birth_date: date
    sex: str
    postal_code: str
    intervention_plan: bool = False
    language_group: str = "francophone"
    immigration: str = "3"


@dataclass
class SimulatedCss:
    """One organization's local systems."""

    org: Organization
    seed: int
    groups: int = 0
    sheet_cursor: int = 0
    evaluation_seq: int = 0
    staff_seq: int = 0
    rosters: dict[int, list[Student]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.groups = max(4, self.org.students_approx // 25)
        self.rng = _rng(self.seed, self.org.code)
        self.english = self.org.language.startswith("en")
        self.codes = CODE_LISTS.get(self.org.code)
        self.statuses = EN_STATUS if self.english else STATUS_STYLES[self.rng.randrange(2)]
        self.scale = ("percent", "letter", "percent")[self.rng.randrange(3)]
        self.jobs = JOB_CODES.get(self.org.code) or JOB_CODES["en" if self.english else "default"]
        self.malformed = self.org.code in MALFORMED_CSS
        self.source_system = ("GPI", "Mozaïk", "Lumix")[self.rng.randrange(3)]
        # Montréal keeps numeric subject codes, one of them unknown to the mappings.
        self.subjects = (
            MONTREAL_SUBJECTS if self.org.code == "montreal" else EN_SUBJECTS if self.english else SUBJECTS
        )

    # -- rosters ---------------------------------------------------------------------------
    def roster(self, group: int) -> list[Student]:
        if group not in self.rosters:
            r = _rng(self.seed, self.org.code, "group", group)
            # A separate stream for the profile, so rosters drawn before it existed stay the same.
            p = _rng(self.seed, self.org.code, "profile", group)
            english = self.org.language == "en"
            age = 5 + group % 12
            students = []
            for seat in range(r.randint(18, 28)):
                first, last = r.choice(FIRST_NAMES), r.choice(LAST_NAMES)
                born = date(2026 - age, 1, 1) + timedelta(days=r.randrange(365))
                sex = r.choice("FM")
                cp = f"{last[:3].upper()}{first[0].upper()}{born:%d%m%y}{r.randint(10, 99)}"
                postal = f"{r.choice('GHJ')}{r.randint(0, 9)}{r.choice('ABCEGH')} {r.randint(0, 9)}A{r.randint(0, 9)}"
                language = p.choices(
                    ("fr", "en", "autre"), (0.1, 0.75, 0.15) if english else (0.75, 0.05, 0.2)
                )[0]
                immigration = p.choices(("1", "2", "3"), (0.1, 0.15, 0.75))[0]
                students.append(
                    Student(f"{self.org.code[:3]}{group:04d}{seat:02d}", cp, first, last, born, sex, postal,
                            p.random() < 0.2, language, immigration)
                )  # fmt: skip
            self.rosters[group] = students
        return self.rosters[group]

    def school_of(self, group: int) -> str:
        # Drawn from the schools reference: primary groups (group % 12 < 6) in primary schools.
        kinds = schools_by_kind(default_schools()[self.org.code])
        codes = kinds["primaire" if group % 12 < 6 else "secondaire"] or kinds["primaire"]
        return codes[(group // 12) % len(codes)]

    def _identity(self, s: Student) -> dict[str, Any]:
        return {"student_local_id": s.local_id, "code_permanent": s.code_permanent,
                "first_name": s.first_name, "last_name": s.last_name,
                "birth_date": s.birth_date, "postal_code": s.postal_code}  # fmt: skip

    def _ids(self, dataset: Dataset, key: str) -> dict[str, str]:
        return {
            "event_id": event_id(self.org.code, self.source_system, dataset.value, key, "1"),
            "record_key": record_key(self.org.code, self.source_system, dataset.value, key),
            "op": "upsert",
        }

    # -- batches ---------------------------------------------------------------------------
    def attendance_sheet(self, today: date, now: datetime) -> dict[str, Any]:
        """Next sheet in round-robin over groups; a wrap moves to the next period/day."""
        group = self.sheet_cursor % self.groups
        wraps = self.sheet_cursor // self.groups
        self.sheet_cursor += 1
        period, day = 1 + wraps % 6, last_school_day(today, wraps // 6)
        marks = []
        for s in self.roster(group):
            roll = self.rng.random()
            idx = 0 if roll < 0.88 else 1 if roll < 0.96 else 2 if roll < 0.99 else 3
            status = self.statuses[idx]
            code = text = None
            if idx == 1:
                reason = self.rng.choices(list(REASON_WEIGHTS), list(REASON_WEIGHTS.values()))[0]
                if self.codes is not None:
                    code = self.codes.get(reason)
                else:
                    texts = (TEXT_EN if self.english else TEXT_FR).get(reason) or ("absent",)
                    text = self.rng.choice(texts)
            if self.malformed and self.rng.random() < 0.01:
                status = "?"
            key = f"{group}/{day}/{period}/{s.local_id}"
            marks.append({**self._ids(Dataset.ATTENDANCE, key), **self._identity(s),
                          "status_code": status, "absence_code": code, "absence_text": text,
                          "occurred_at": now, "detected_at": now})  # fmt: skip
        return {"css": self.org.code, "source_system": self.source_system,
                "school_code": self.school_of(group), "group_code": f"G{group:04d}",
                "period": period, "sheet_date": day, "marks": marks}  # fmt: skip

    def evaluation(self, today: date, now: datetime) -> dict[str, Any]:
        seq = self.evaluation_seq
        self.evaluation_seq += 1
        group = self.rng.randrange(self.groups)
        subject, competencies = self.subjects[seq % len(self.subjects)]
        competency = competencies[seq % len(competencies)]
        results = []
        for s in self.roster(group):
            score = max(0.0, min(100.0, self.rng.gauss(72, 13)))
            if self.scale == "percent":
                result = f"{score:.0f}"
            else:
                result = next(g for g, floor in (("A", 90), ("B+", 82), ("B", 78), ("C+", 70), ("C", 66),
                                                 ("D+", 60), ("D", 55), ("E", 0)) if score >= floor)  # fmt: skip
            if self.malformed and self.rng.random() < 0.02:
                result = "abs?"
            key = f"ev{seq}/{s.local_id}"
            results.append({**self._ids(Dataset.GRADES, key), **self._identity(s),
                            "sex": s.sex, "intervention_plan": s.intervention_plan, "language_group": s.language_group,
                            "immigration": s.immigration, "result": result, "occurred_at": now, "detected_at": now})  # fmt: skip
        level = f"prim{1 + group % 6}" if group % 12 < 6 else f"sec{1 + group % 5}"
        return {"css": self.org.code, "source_system": self.source_system,
                "school_code": self.school_of(group), "group_code": f"G{group:04d}", "level": level,
                "subject_code": subject, "competency_code": competency, "etape": 1 if today.month >= 9 else 2,
                "evaluation_date": last_school_day(today), "scale": self.scale, "results": results}  # fmt: skip

    def staff_changes(self, today: date, now: datetime) -> dict[str, Any]:
        changes = []
        for _ in range(self.rng.randint(1, 5)):
            seq = self.staff_seq
            self.staff_seq += 1
            r = _rng(self.seed, self.org.code, "staff", seq % max(20, self.org.students_approx // 15))
            first, last = r.choice(FIRST_NAMES), r.choice(LAST_NAMES)
            kind = self.rng.choice(
                ("leave_start", "leave_start", "leave_end", "hire", "position_open", "departure")
            )
            job = r.choice(self.jobs)
            changes.append({
                **self._ids(Dataset.STAFF, f"chg{seq}"),
                "employee_number": f"E{seq % 5000:05d}", "first_name": first, "last_name": last,
                "birth_date": date(1960 + r.randrange(40), 1 + r.randrange(12), 1 + r.randrange(28)),
                "email": f"{first}.{last}@{self.org.code}.example".lower(), "phone": f"418-555-{r.randrange(10000):04d}",
                "job_code": job, "change_type": kind,
                "leave_type": self.rng.choice(("MAL", "MAT", "CNESST", "PERS")) if kind.startswith("leave") else None,
                "school_code": self.school_of(self.rng.randrange(self.groups)),
                "legally_qualified": (r.random() > 0.12) if job in ("ENS", "TCH", "4201", "SUP", "SUBT", "4202") else None,
                "effective_date": today, "occurred_at": now, "detected_at": now,
            })  # fmt: skip
        return {"css": self.org.code, "source_system": self.source_system, "changes": changes}

    def tick(
        self, number: int, rate: float, today: date | None = None
    ) -> list[tuple[Dataset, dict[str, Any]]]:
        """The batches this CSS's systems produce in one simulated second."""
        now = datetime.now(UTC)
        today = today or school_date(now)
        students = self.org.students_approx
        out: list[tuple[Dataset, dict[str, Any]]] = []
        sheets = max(1, round(students * rate / 8000))
        out += [(Dataset.ATTENDANCE, self.attendance_sheet(today, now)) for _ in range(sheets)]
        # Every CSS sends a first evaluation and change set at once, then at its own pace.
        if number == 0 or self.rng.random() < min(1.0, students * rate / 40000):
            out.append((Dataset.GRADES, self.evaluation(today, now)))
        if number == 0 or self.rng.random() < min(1.0, students * rate / 60000):
            out.append((Dataset.STAFF, self.staff_changes(today, now)))
        return out


def simulated_network(organizations: dict[str, Organization], seed: int) -> list[SimulatedCss]:
    return [SimulatedCss(org, seed) for org in organizations.values()]
