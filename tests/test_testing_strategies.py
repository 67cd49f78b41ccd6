"""`emr.testing`: what the valid strategies draw passes the project's profile checks, what the invalid ones draw fails them."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emr.config import PROJECT_ROOT
from emr.errors import EmrError, InvalidNationalId
from emr.fhir import validate_resource
from emr.identity import demographic_conflicts, parse_national_id
from emr.testing import (
    DEFECT_KINDS,
    Citizen,
    broken,
    citizens,
    diagnostic_reports,
    invalid_resources,
    lab_observations,
    malformed_national_ids,
    patients,
    service_requests,
    transaction_bundles,
)
from emr.testing.invalid import kinds_for

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


@given(st.one_of(patients(), lab_observations(), diagnostic_reports(), service_requests()))
def test_every_drawn_resource_passes_the_profiles(resource):
    validate_resource(resource)


@given(transaction_bundles())
@settings(max_examples=20)
def test_transaction_bundles_hold_valid_resources_linked_by_urn_uuid(bundle):
    entries = bundle["entry"]
    for entry in entries:
        validate_resource(entry["resource"])
    patient_url = entries[0]["fullUrl"]
    assert {e["resource"]["subject"]["reference"] for e in entries[1:]} == {patient_url}
    assert entries[-1]["resource"]["result"] == [{"reference": e["fullUrl"]} for e in entries[1:-1]]


@given(citizens())
def test_a_citizens_number_agrees_with_sex_and_birth_year(citizen: Citizen):
    number = parse_national_id(citizen.national_id)
    assert number.province.code == citizen.province_code
    assert demographic_conflicts(number, birth_date=citizen.birth_date, gender=citizen.gender) == []


@given(malformed_national_ids())
def test_malformed_national_ids_are_refused(value):
    with pytest.raises(InvalidNationalId):
        parse_national_id(value)


@given(invalid_resources())
@settings(max_examples=100)
def test_every_invalid_resource_fails_the_profiles(resource):
    with pytest.raises(EmrError):
        validate_resource(resource)


@pytest.mark.parametrize("kind", DEFECT_KINDS)
@given(data=st.data())
@settings(max_examples=10)
def test_each_kind_of_defect_is_refused_on_its_own(kind, data):
    valid = data.draw(st.one_of(patients(), lab_observations(), service_requests())
                      .filter(lambda r: kind in kinds_for(r)))
    with pytest.raises(EmrError):
        validate_resource(data.draw(broken(valid, kinds=(kind,))))


def test_the_readme_example_runs(tmp_path):
    """The README's example of using the strategies in one's own suite passes as written."""
    section = README.split("### Hypothesis strategies for your own tests", 1)[1]
    (tmp_path / "test_readme_example.py").write_text(re.search(r"```python\n(.*?)```", section, re.S).group(1))
    (tmp_path / "conftest.py").write_text("from hypothesis import settings\n"
                                          "settings.register_profile('few', max_examples=10)\n"
                                          "settings.load_profile('few')\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout + done.stderr
