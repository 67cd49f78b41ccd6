"""`emr import`: a facility's bulk NDJSON becomes searchable by national ID, all or nothing, once."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from emr.cli import app
from emr.errors import InvalidInput
from emr.fhir.builders import lab_observation, patient
from emr.hub import bulk
from emr.hub.db import PersonRow, ResourceRow, ResultFact
from emr.hub.packed import unpack
from emr.hub.searchparams import extract
from emr.identity import FACILITY_CODE_SYSTEM, NATIONAL_ID_SYSTEM
from tests.conftest import make_client
from tests.older_schema import with_row_keys

HDR = {"Content-Type": "application/fhir+json"}
HBA1C, GLUCOSE = "4548-4", "2345-7"
T0 = datetime(2025, 9, 1, 1, 0, tzinfo=timezone.utc)
NIDS = ("027085000101", "027085000102", "027085000103")


def facility_lines(nids: tuple[str, ...] = NIDS) -> list[dict]:
    """One Patient per national ID (source ids p0, p1, …) and two results each."""
    lines: list[dict] = []
    for n, nid in enumerate(nids):
        body = patient(facility_code="27001", mrn=f"MRN-{n}", national_id=nid, family="Nguyễn", given="Văn An",
                       gender="male", birth_date="1985-04-12")
        lines.append({**body, "id": f"p{n}"})
        for k, loinc in enumerate((HBA1C, GLUCOSE)):
            obs = lab_observation(patient_ref=f"Patient/p{n}", facility_code="27001", loinc=loinc, display=loinc,
                                  collected=(T0 + timedelta(hours=k)).isoformat())
            lines.append({**obs, "id": f"o{n}-{k}"})
    return lines


def write_ndjson(path: Path, lines: list[dict | str]) -> Path:
    path.write_bytes(b"".join((ln.encode() if isinstance(ln, str) else orjson.dumps(ln)) + b"\n" for ln in lines))
    return path


def act_as(client, facility: str) -> None:
    """Speak for ``facility`` in the searches that follow, on a hub that checks who asks
    (``tests.facility_clients.ActingFacility``): only it has a care relationship with
    the patients it imported."""
    auth = getattr(client, "auth", None)
    if hasattr(auth, "last"):
        auth.last = facility


def count(hub, table, **where) -> int:
    t = table.__table__
    query = select(func.count()).select_from(t)
    for column, value in where.items():
        query = query.where(t.c[column] == value)
    with hub.engine.connect() as conn:
        return conn.execute(query).scalar_one()


def test_imported_results_are_searchable_by_national_id(client, tmp_path):
    hub = client.app.state.hub
    result = bulk.import_files(hub, [write_ndjson(tmp_path / "f.ndjson", facility_lines())], source="27001")
    assert (result.created, result.types) == (9, {"Patient": 3, "Observation": 6})
    act_as(client, "27001")
    found = client.get(f"/fhir/Observation?patient.identifier={NATIONAL_ID_SYSTEM}|{NIDS[1]}").json()
    assert found["total"] == 2
    subject = found["entry"][0]["resource"]["subject"]["reference"]
    assert subject == f"Patient/{bulk.hub_id('27001', 'Patient', 'p1')}"
    person = client.get(f"/fhir/Person?identifier={NATIONAL_ID_SYSTEM}|{NIDS[1]}").json()
    assert [link["target"]["reference"] for link in person["entry"][0]["resource"]["link"]] == [subject]
    assert client.get("/fhir/Observation?performer=Organization/27001").json()["total"] == 6


def test_check_reuse_sees_imported_results(client, tmp_path):
    hub = client.app.state.hub
    bulk.import_files(hub, [write_ndjson(tmp_path / "f.ndjson", facility_lines())], source="27001")
    bach_mai = patient(facility_code="01001", mrn="BM-1", national_id=NIDS[0], family="Nguyễn", given="Văn An",
                       gender="male", birth_date="1985-04-12")  # the ordering hospital's own registration
    bulk.import_files(hub, [write_ndjson(tmp_path / "bm.ndjson", [{**bach_mai, "id": "bm1"}])], source="01001")
    person = client.get(f"/fhir/Person?identifier={NATIONAL_ID_SYSTEM}|{NIDS[0]}").json()["entry"][0]["resource"]
    assert len(person["link"]) == 2  # one Person links both facilities' registrations
    params = [{"name": "patient", "valueIdentifier": {"system": NATIONAL_ID_SYSTEM, "value": NIDS[0]}},
              {"name": "facility", "valueIdentifier": {"system": FACILITY_CODE_SYSTEM, "value": "01001"}},
              {"name": "at", "valueDateTime": (T0 + timedelta(days=10)).isoformat()},
              {"name": "code", "valueCoding": {"system": "http://loinc.org", "code": HBA1C}}]
    r = client.post("/fhir/$check-reuse", content=orjson.dumps({"resourceType": "Parameters", "parameter": params}),
                    headers=HDR)
    parts = {p["name"]: p for p in r.json()["parameter"][0]["part"]}
    assert parts["decision"]["valueCode"] == "reuse"
    assert parts["observation"]["valueReference"]["reference"] == f"Observation/{bulk.hub_id('27001', 'Observation', 'o0-0')}"


def test_importing_twice_stores_once_and_a_change_is_a_new_version(client, tmp_path):
    hub = client.app.state.hub
    lines = facility_lines()
    path = write_ndjson(tmp_path / "f.ndjson", lines)
    bulk.import_files(hub, [path], source="27001")
    before = (count(hub, ResourceRow), count(hub, ResultFact), count(hub, PersonRow))
    again = bulk.import_files(hub, [path], source="27001")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 9)
    assert (count(hub, ResourceRow), count(hub, ResultFact), count(hub, PersonRow)) == before
    lines[1] = {**lines[1], "status": "amended"}
    changed = bulk.import_files(hub, [write_ndjson(path, lines)], source="27001")
    assert (changed.created, changed.updated, changed.unchanged) == (0, 1, 8)
    act_as(client, "27001")
    obs = client.get(f"/fhir/Observation/{bulk.hub_id('27001', 'Observation', 'o0-0')}").json()
    assert (obs["status"], obs["meta"]["versionId"]) == ("amended", "2")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_later_import_refers_to_patients_an_earlier_one_stored(client, tmp_path, monkeypatch, workers):
    """Workers prepare the lines whose references stay inside the import; a line that names
    a resource of an earlier import comes back as it was and is mapped against the hub."""
    monkeypatch.setattr(bulk, "PARALLEL_FROM", 4)
    hub = client.app.state.hub
    lines = facility_lines()
    bulk.import_files(hub, [write_ndjson(tmp_path / "p.ndjson", [ln for ln in lines if ln["resourceType"] == "Patient"])],
                      source="27001", workers=workers)
    bulk.import_files(hub, [write_ndjson(tmp_path / "o.ndjson", [ln for ln in lines if ln["resourceType"] != "Patient"])],
                      source="27001", workers=workers)
    act_as(client, "27001")
    assert client.get(f"/fhir/Observation?patient.identifier={NATIONAL_ID_SYSTEM}|{NIDS[2]}").json()["total"] == 2
    assert count(hub, ResultFact, national_id=NIDS[2]) == 2


def test_one_bad_line_loads_nothing_and_every_bad_line_is_named(client, tmp_path):
    hub = client.app.state.hub
    lines: list[dict | str] = list(facility_lines())
    lines[2] = {k: v for k, v in lines[2].items() if k != "effectiveDateTime"}  # line 3
    lines.insert(4, "{not json")  # line 5
    path = write_ndjson(tmp_path / "f.ndjson", lines)
    resources_before = count(hub, ResourceRow)
    with pytest.raises(InvalidInput) as caught:
        bulk.import_files(hub, [path], source="27001")
    locations = [p.location for p in caught.value.problems]
    assert locations == ["f.ndjson line 3", "f.ndjson line 5"]
    assert "effectiveDateTime" in caught.value.problems[0].message
    assert "2 of 10 lines are bad; nothing was loaded" in str(caught.value)
    assert count(hub, ResourceRow) == resources_before


def test_lines_are_checked_in_parallel_with_the_same_answer(client, tmp_path, monkeypatch):
    """The pool checks and prepares lines while the load writes them: a bad line still loads
    nothing, even one whose date the index could not read, and every bad line is named."""
    monkeypatch.setattr(bulk, "PARALLEL_FROM", 4)
    hub = client.app.state.hub
    lines: list[dict | str] = list(facility_lines())
    lines[4] = {**lines[4], "effectiveDateTime": "last Tuesday"}
    lines[7] = {**lines[7], "status": "nonsense"}
    resources_before = count(hub, ResourceRow)
    with pytest.raises(InvalidInput) as caught:
        bulk.import_files(hub, [write_ndjson(tmp_path / "f.ndjson", lines)], source="27001", workers=2)
    assert [p.location for p in caught.value.problems] == ["f.ndjson line 5", "f.ndjson line 8"]
    assert count(hub, ResourceRow) == resources_before
    lines[4] = {**lines[4], "effectiveDateTime": lines[5]["effectiveDateTime"]}
    lines[7] = {**lines[7], "status": "final"}
    result = bulk.import_files(hub, [write_ndjson(tmp_path / "f.ndjson", lines)], source="27001", workers=2)
    assert result.created == 9


@pytest.mark.parametrize("source, message", [("2700", "5-digit"), ("99999", "not in the facility registry")])
def test_an_unknown_source_is_refused(sqlite_client, tmp_path, source, message):
    with pytest.raises(InvalidInput, match=message):
        bulk.import_files(sqlite_client.app.state.hub, [write_ndjson(tmp_path / "f.ndjson", [])], source=source)


def test_emr_import_command(sqlite_url, tmp_path):
    runner = CliRunner()
    good = write_ndjson(tmp_path / "good.ndjson", facility_lines())
    result = runner.invoke(app, ["import", str(good), "--source", "27001", "--db", sqlite_url])
    assert result.exit_code == 0, result.output
    assert "9 resources from 27001" in result.output and "9 new" in result.output
    bad = write_ndjson(tmp_path / "bad.ndjson", ['{"resourceType": "Patient"}'])
    result = runner.invoke(app, ["import", str(bad), "--source", "27001", "--db", sqlite_url])
    assert result.exit_code == 2
    assert "bad.ndjson line 1" in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_small_segments_and_batches_give_the_same_answer(client, tmp_path, monkeypatch, workers):
    """Lines are checked a segment at a time and written a batch at a time: blank lines
    keep the numbering, a bad line and a duplicate are named wherever their segment
    falls, and references cross batch boundaries."""
    monkeypatch.setattr(bulk, "PARALLEL_FROM", 4)
    monkeypatch.setattr(bulk, "SEGMENT", 3)
    monkeypatch.setattr(bulk, "WRITE_BATCH", 2)
    hub = client.app.state.hub
    lines: list[dict | str] = list(facility_lines())
    lines.insert(3, "")  # line 4 is blank
    lines[6] = {**lines[6], "status": "nonsense"}  # line 7
    lines.append(lines[1])  # line 11 repeats line 2
    path = write_ndjson(tmp_path / "f.ndjson", lines)
    with pytest.raises(InvalidInput) as caught:
        bulk.import_files(hub, [path], source="27001", workers=workers)
    assert [p.location for p in caught.value.problems] == ["f.ndjson line 7", "f.ndjson line 11"]
    assert "Observation/o0-0 is also on f.ndjson line 2" in caught.value.problems[1].message
    assert "2 of 10 lines are bad" in str(caught.value)
    lines[6] = {**lines[6], "status": "final"}
    result = bulk.import_files(hub, [write_ndjson(path, lines[:-1])], source="27001", workers=workers)
    assert (result.lines, result.created) == (9, 9)
    act_as(client, "27001")
    for nid in NIDS:
        assert client.get(f"/fhir/Observation?patient.identifier={NATIONAL_ID_SYSTEM}|{nid}").json()["total"] == 2


def test_postgresql_statistics_follow_the_import_as_it_grows(client, tmp_path, monkeypatch):
    """Inside the import's one transaction the planner's statistics are refreshed each time
    the rows loaded double (PostgreSQL only), and the import loads the same."""
    monkeypatch.setattr(bulk, "WRITE_BATCH", 2)
    monkeypatch.setattr(bulk.PlannerStatistics, "FIRST", 2)
    refreshed: list[int] = []
    keep_up = bulk.PlannerStatistics.keep_up

    def counting(self, loaded: int) -> None:
        before = self.next
        keep_up(self, loaded)
        if self.next != before:
            refreshed.append(loaded)
    monkeypatch.setattr(bulk.PlannerStatistics, "keep_up", counting)
    hub = client.app.state.hub
    result = bulk.import_files(hub, [write_ndjson(tmp_path / "f.ndjson", facility_lines())], source="27001")
    assert result.created == 9
    assert refreshed == ([2, 4, 8] if hub.engine.dialect.name == "postgresql" else [])
    for nid in NIDS:
        assert count(hub, ResultFact, national_id=nid) == 2


def test_a_file_that_changes_during_the_import_loads_nothing(client, tmp_path, monkeypatch):
    """The checks and the load each read the file; if it changes between them, nothing is loaded."""
    monkeypatch.setattr(bulk, "WRITE_BATCH", 2)
    hub = client.app.state.hub
    path = write_ndjson(tmp_path / "f.ndjson", facility_lines())
    load_batch = bulk.Batches.load

    def load_then_append(self, *args, **kwargs):
        load_batch(self, *args, **kwargs)
        with path.open("ab") as handle:
            handle.write(b"\n")
    monkeypatch.setattr(bulk.Batches, "load", load_then_append)
    resources_before = count(hub, ResourceRow)
    with pytest.raises(InvalidInput, match="changed while it was being imported; nothing was loaded"):
        bulk.import_files(hub, [path], source="27001")
    assert count(hub, ResourceRow) == resources_before


@pytest.mark.parametrize("order", ["results before their patients", "patients first"])
def test_patients_load_before_the_results_that_name_them_whatever_the_file_order(client, tmp_path, monkeypatch,
                                                                                  order):
    """A result's national ID comes from its Patient, so Patients are written first:
    in one pass when the file already has them first, in a pass per group otherwise."""
    monkeypatch.setattr(bulk, "WRITE_BATCH", 2)
    hub = client.app.state.hub
    lines = facility_lines()
    lines = lines[::-1] if order.startswith("results") else sorted(lines, key=lambda ln: ln["resourceType"] != "Patient")
    bulk.import_files(hub, [write_ndjson(tmp_path / "f.ndjson", lines)], source="27001")
    for nid in NIDS:
        assert count(hub, ResultFact, national_id=nid) == 2


def test_a_database_whose_index_tables_have_row_keys_still_takes_writes(database_url, tmp_path):
    """Earlier hubs gave each index row a surrogate ``row`` key. Such a database takes
    resources one at a time and by import, and finds them by national ID."""
    with_row_keys(database_url)
    with make_client(database_url) as client:
        bulk.import_files(client.app.state.hub, [write_ndjson(tmp_path / "f.ndjson", facility_lines(NIDS[:2]))],
                          source="27001")
        act_as(client, "27001")
        one = patient(facility_code="27001", mrn="MRN-9", national_id=NIDS[2], family="Lê", given="Bình",
                      gender="male", birth_date="1985")
        assert client.post("/fhir/Patient", content=orjson.dumps(one), headers=HDR).status_code == 201
        for nid in NIDS:
            found = client.get(f"/fhir/Patient?identifier={NATIONAL_ID_SYSTEM}|{nid}").json()
            assert found["total"] == 1, nid
        assert client.get(f"/fhir/Observation?patient.identifier={NATIONAL_ID_SYSTEM}|{NIDS[1]}").json()["total"] == 2
        with client.app.state.hub.engine.connect() as conn:
            unnumbered = conn.exec_driver_sql('SELECT count(*) FROM ix_token WHERE "row" IS NULL').scalar_one()
        client.app.state.hub.engine.dispose()
    assert unnumbered == 0


def test_a_prepared_line_crosses_to_the_loading_process_unchanged(tmp_path):
    """What a worker hands the load (resource, packed content, index entries) survives pickling
    as bytes and tuples, equal to what the load would have built itself."""
    found = bulk.scan([write_ndjson(tmp_path / "f.ndjson", facility_lines())], "27001")
    preparing = bulk.Preparing("27001", found.places, T0)
    work = bulk.prepare_segment(found.segments[0], None, preparing)
    assert not work.problems and len(work.lines) == 9
    for item in work.lines:
        again = pickle.loads(pickle.dumps(item))
        assert again.resource == item.resource and again.content == item.content
        assert again.extracted == extract(item.resource)
        assert unpack(again.content) == again.json.decode()
        assert again.resource["meta"]["lastUpdated"].startswith("2025-09-01T01:00:00")
