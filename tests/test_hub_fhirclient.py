"""SMART's Python client (fhirclient, R4 models) registers, publishes and searches against the hub served on 127.0.0.1.

A client written elsewhere parses every answer into its own strict models, so a Bundle,
Person or Observation the hub serves that R4 does not accept fails here. (fhirpy, the
other client, is exercised in test_hub_concurrency.)
"""

from __future__ import annotations

from emr.fhir.builders import lab_observation, patient
from emr.identity import NATIONAL_ID_SYSTEM, mrn_system
from tests.serving import served_hub

NID = "027185004321"  # Bắc Ninh, female, 1985


def test_fhirclient_registers_at_two_facilities_and_finds_the_results_by_national_id(sqlite_url):
    from fhirclient import client
    from fhirclient.models.observation import Observation
    from fhirclient.models.patient import Patient
    from fhirclient.models.person import Person

    with served_hub(sqlite_url, auth_required=False) as base:
        smart = client.FHIRClient(settings={"app_id": "emr-tests", "api_base": base})
        ids = {}
        for code in ("27001", "01001"):
            body = patient(facility_code=code, mrn=f"SMART-{code}", national_id=NID, family="Trần", given="Thị Mai",
                           gender="female", birth_date="1985-06-02")
            ids[code] = Patient(body).create(smart.server)["id"]
        read = Patient.read(ids["27001"], smart.server)
        assert [(i.system, i.value) for i in read.identifier] == [(mrn_system("27001"), "SMART-27001"),
                                                                   (NATIONAL_ID_SYSTEM, NID)]
        result = Observation(lab_observation(patient_ref=f"Patient/{ids['27001']}", facility_code="27001",
                                             loinc="4548-4", display="HbA1c", collected="2025-09-20T08:00:00+07:00",
                                             value={"valueQuantity": {"value": 7.2, "unit": "%"}}))
        created = result.create(smart.server)
        search = Observation.where(struct={"patient.identifier": f"{NATIONAL_ID_SYSTEM}|{NID}"})
        found = list(search.perform_resources_iter(smart.server))
        assert [o.id for o in found] == [created["id"]] and found[0].valueQuantity.value == 7.2
        persons = list(Person.where(struct={"identifier": f"{NATIONAL_ID_SYSTEM}|{NID}"})
                       .perform_resources_iter(smart.server))
        assert len(persons) == 1
        assert sorted(link.target.reference for link in persons[0].link) == sorted(f"Patient/{i}" for i in ids.values())
