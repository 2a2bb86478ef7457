"""Interoperability: the `fhirpy` client (written by others) drives the server.

With fhirpy's SyncFHIRClient, on every backend:
  create a Patient and an Observation that references it; read both back, and follow the
  Observation's subject reference to the Patient; update the Patient (the version must go up and
  the old version stay readable); read the Patient's history (newest first, one entry per
  version); delete both and see fhirpy refuse to read them (ResourceNotFound), the server
  answering 410 Gone.

fhirpy sends `Content-Type: application/json` and `Accept: application/fhir+json`, as many
clients do, and expects the created/updated resource in the response body (the server's default
for `Prefer: return=representation`).
"""

from __future__ import annotations

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

from support import INSTANT_RE


def version_of(resource) -> str:
    meta = resource.get("meta") or {}
    version = meta.get("versionId")
    assert isinstance(version, str) and version, f"no meta.versionId in {dict(resource)!r}"
    updated = meta.get("lastUpdated")
    assert isinstance(updated, str) and INSTANT_RE.match(updated), (
        f"meta.lastUpdated {updated!r} is not a FHIR instant"
    )
    return version


def assert_went_up(old: str, new: str, what: str) -> None:
    assert new != old, f"{what}: the version stayed {old!r} after an update"
    if old.isdigit() and new.isdigit():
        assert int(new) == int(old) + 1, f"{what}: version went from {old} to {new}, expected {int(old) + 1}"


@pytest.fixture
def client(server):
    # Locations and links carry the server's public base (--base-url); map it to where it listens.
    return SyncFHIRClient(
        server.base_url, url_aliases=[server.public_base], authorization=f"Bearer {server.token}"
    )


def test_fhirpy_create_read_update_history_delete(server, fhir, client):
    # -- create -----------------------------------------------------------------------------
    patient = client.resource(
        "Patient",
        name=[{"family": "Fhirpy", "given": ["Conformance"]}],
        gender="female",
        birthDate="1980-02-29",
        active=True,
    )
    patient.save()
    assert patient.id, (
        "fhirpy got no id back from POST /Patient: the server must answer a create with the "
        f"resource by default; fhirpy holds {dict(patient)!r}"
    )
    v1 = version_of(patient)

    observation = client.resource(
        "Observation",
        status="final",
        code={"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
        subject=patient.to_reference(),
        effectiveDateTime="2024-05-01T08:30:00+02:00",
        valueQuantity={"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    )
    observation.save()
    assert observation.id, f"no id after creating the Observation: {dict(observation)!r}"

    # -- read -------------------------------------------------------------------------------
    read_patient = client.reference("Patient", patient.id).to_resource()
    assert read_patient.id == patient.id
    assert read_patient["name"] == [{"family": "Fhirpy", "given": ["Conformance"]}]
    assert read_patient["gender"] == "female"
    assert read_patient["birthDate"] == "1980-02-29"
    assert version_of(read_patient) == v1

    read_obs = client.reference("Observation", observation.id).to_resource()
    assert read_obs["status"] == "final"
    assert read_obs["subject"]["reference"] == f"Patient/{patient.id}"
    assert read_obs["valueQuantity"]["value"] == 72.5
    subject = read_obs["subject"].to_resource()  # fhirpy follows the reference
    assert subject.id == patient.id and subject["name"] == read_patient["name"]

    # -- update -----------------------------------------------------------------------------
    read_patient["gender"] = "other"
    read_patient["telecom"] = [{"system": "phone", "value": "+33 1 23 45 67 89", "use": "mobile"}]
    read_patient.save()
    v2 = version_of(read_patient)
    assert_went_up(v1, v2, "Patient update through fhirpy")
    again = client.reference("Patient", patient.id).to_resource()
    assert again["gender"] == "other" and again["telecom"][0]["value"] == "+33 1 23 45 67 89"
    assert version_of(again) == v2

    old = client.execute(f"Patient/{patient.id}/_history/{v1}", method="get")
    assert old["gender"] == "female" and "telecom" not in old, f"vread of version {v1}: {dict(old)!r}"
    assert version_of(old) == v1

    # -- history ----------------------------------------------------------------------------
    history = client.execute(f"Patient/{patient.id}/_history", method="get")
    assert history["resourceType"] == "Bundle" and history["type"] == "history", dict(history)
    entries = history.get("entry") or []
    versions = [e["resource"]["meta"]["versionId"] for e in entries]
    assert versions == [v2, v1], f"history of Patient/{patient.id}: versions {versions}, expected [{v2!r}, {v1!r}]"
    methods = [e.get("request", {}).get("method") for e in entries]
    assert methods == ["PUT", "POST"], f"history entries' request.method: {methods}"
    assert entries[1]["resource"]["gender"] == "female" and entries[0]["resource"]["gender"] == "other"
    if "total" in history:
        assert history["total"] == 2, f"history total {history['total']}, expected 2"

    # -- delete -----------------------------------------------------------------------------
    client.delete("Observation", observation.id)
    client.delete("Patient", patient.id)
    for rtype, rid in (("Patient", patient.id), ("Observation", observation.id)):
        with pytest.raises(ResourceNotFound):
            client.reference(rtype, rid).to_resource()
        gone = fhir.get(f"{rtype}/{rid}")
        assert gone.status_code == 410, f"GET {rtype}/{rid} after DELETE -> {gone.status_code}, expected 410"

    after = client.execute(f"Patient/{patient.id}/_history", method="get")
    entries = after.get("entry") or []
    methods = [e.get("request", {}).get("method") for e in entries]
    assert methods == ["DELETE", "PUT", "POST"], f"history after delete: request.method {methods}"
    # The old versions stay readable after a delete.
    assert client.execute(f"Patient/{patient.id}/_history/{v2}", method="get")["gender"] == "other"
