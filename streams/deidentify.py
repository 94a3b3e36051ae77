"""De-identify: the only fields about a person that leave the stream stage.

Direct identifiers (names, code permanent, postal code, e-mail, phone, local ids)
are never copied: the curated record is built from an allow-list, and the person
appears only as a keyed pseudonym with its key id and an age band.
"""

from __future__ import annotations

from typing import Any

from streams.pseudonymize import STAFF_AGE_BANDS, STUDENT_AGE_BANDS, Pseudonymizer, age_band_days


def student_identity(css: str, rec: dict[str, Any], on: int, p: Pseudonymizer) -> dict[str, Any]:
    """Pseudonym, key id and age band on day ``on`` (days since 1970-01-01) of the student a
    plain raw record is about."""
    return {
        "student_pseudonym": p.pseudonym(css, "student", rec["student_local_id"]),
        "key_id": p.key_id,
        "age_band": age_band_days(rec["birth_date"], on, STUDENT_AGE_BANDS, "18+"),
    }


def staff_identity(css: str, rec: dict[str, Any], on: int, p: Pseudonymizer) -> dict[str, Any]:
    """Pseudonym, key id and age band on day ``on`` (days since 1970-01-01) of the employee a
    plain raw record is about."""
    return {
        "staff_pseudonym": p.pseudonym(css, "staff", rec["employee_number"]),
        "key_id": p.key_id,
        "age_band": age_band_days(rec["birth_date"], on, STAFF_AGE_BANDS, "55+"),
    }
