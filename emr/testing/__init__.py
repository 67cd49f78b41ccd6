"""Hypothesis strategies for Vietnamese EMR data, for your own test suites.

Everything the valid strategies draw passes this project's profile checks
(``emr.fhir.validate_resource``); everything the invalid ones draw fails them::

    from hypothesis import given
    from emr.testing import lab_observations, patients

    @given(patients())
    def test_my_server_takes_any_patient(patient):
        ...

Strategies are functions: call them to build a strategy (the project's tables are
read then, not at import time).
"""

from emr.testing.invalid import (
    KINDS as DEFECT_KINDS,
    bad_search_values,
    broken,
    broken_references,
    impossible_dates,
    invalid_resources,
    malformed_json,
    malformed_national_ids,
    wrong_type_values,
)
from emr.testing.strategies import (
    Citizen,
    citizens,
    collection_times,
    diagnostic_reports,
    facility_codes,
    lab_observations,
    lab_tests,
    mrns,
    national_ids,
    patient_of,
    patients,
    result_value,
    service_requests,
    transaction_bundles,
)

__all__ = [
    "DEFECT_KINDS",
    "Citizen",
    "bad_search_values",
    "broken",
    "broken_references",
    "citizens",
    "collection_times",
    "diagnostic_reports",
    "facility_codes",
    "impossible_dates",
    "invalid_resources",
    "lab_observations",
    "lab_tests",
    "malformed_json",
    "malformed_national_ids",
    "mrns",
    "national_ids",
    "patient_of",
    "patients",
    "result_value",
    "service_requests",
    "transaction_bundles",
    "wrong_type_values",
]
