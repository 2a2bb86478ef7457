"""The REST interactions of FHIR R4 (http.html) over raw HTTP, on every backend.

create / read / vread / update / update-as-create / delete / history (instance, type, system,
_since, _count, paging) / JSON Patch; the headers that go with them (Location, ETag,
Last-Modified, If-Match, Prefer); content negotiation that must succeed; the
CapabilityStatement. Failures name the request and show the response.
"""

from __future__ import annotations

import base64
import copy
import gzip
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime

import pytest

from support import (
    FHIR_JSON,
    Fhir,
    INSTANT_RE,
    JSON_PATCH,
    SERVED_TYPES,
    Num,
    body_json,
    describe,
    dumps_exact,
    error_issues,
    loads_exact,
    without_server_meta,
)


def new_id(prefix: str = "rest") -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def patient(family: str = "Durand", **extra) -> dict:
    res = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "2800512345678"}],
        "name": [{"family": family, "given": ["Léa", "Marie"]}],
        "gender": "female",
        "birthDate": "1980-05-12",
    }
    res.update(extra)
    return res


def observation(subject: str, value: str = "72.50") -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2026-01-02T08:00:00+01:00",
        "valueQuantity": {"value": Num(value), "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    }


def expect(resp, *statuses: int):
    assert resp.status_code in statuses, f"expected {' or '.join(map(str, statuses))}: {describe(resp)}"
    return resp


def version(res: dict) -> str:
    v = (res.get("meta") or {}).get("versionId")
    assert isinstance(v, str) and v, f"no meta.versionId in {dumps_exact(res)[:300]}"
    return v


def assert_outcome(resp) -> None:
    body = body_json(resp)
    assert error_issues(body), f"expected an OperationOutcome with an error issue: {describe(resp)}"


def local(server, url: str) -> str:
    """A link as the server writes it (public base) -> where this test can reach it."""
    assert url.startswith(server.public_base + "/"), (
        f"link {url!r} does not start with the public base {server.public_base!r} (--base-url)"
    )
    return server.base_url + url[len(server.public_base):]


def check_history_bundle(bundle: dict, what: str) -> list[dict]:
    assert bundle.get("resourceType") == "Bundle" and bundle.get("type") == "history", (
        f"{what}: not a history Bundle: {dumps_exact(bundle)[:300]}"
    )
    entries = bundle.get("entry") or []
    for i, e in enumerate(entries):
        req, resp = e.get("request"), e.get("response")
        assert isinstance(req, dict) and req.get("method") and req.get("url"), (
            f"{what}: entry[{i}].request must give method and url (bdl-3): {dumps_exact(e)[:300]}"
        )
        assert isinstance(resp, dict) and isinstance(resp.get("status"), str), (
            f"{what}: entry[{i}].response.status is required in a history (bdl-4): {dumps_exact(e)[:300]}"
        )
        assert "/_history/" not in (e.get("fullUrl") or ""), f"{what}: entry[{i}].fullUrl is versioned (bdl-8)"
    return entries


# ----------------------------------------------------------------------------------------------
# create, read, vread
# ----------------------------------------------------------------------------------------------


def test_create_assigns_id_and_returns_headers(server, fhir):
    sent = patient("Martin", id="client-chosen",
                   meta={"versionId": "99", "lastUpdated": "2001-01-01T00:00:00Z",
                         "profile": ["http://example.org/StructureDefinition/p"],
                         "tag": [{"system": "http://example.org/tags", "code": "t1"}]})
    resp = expect(fhir.post("Patient", sent), 201)
    body = body_json(resp)
    rid = body.get("id")
    assert rid and rid != "client-chosen", f"a create SHALL ignore the id in the body; got id {rid!r}"
    v = version(body)
    assert v != "99", "meta.versionId is the server's, not the client's"
    assert body["meta"].get("lastUpdated") != "2001-01-01T00:00:00Z", "meta.lastUpdated is the server's"
    assert INSTANT_RE.match(body["meta"]["lastUpdated"]), body["meta"]["lastUpdated"]
    assert body["meta"].get("profile") == sent["meta"]["profile"], "meta.profile must be kept"
    assert body["meta"].get("tag") == sent["meta"]["tag"], "meta.tag must be kept"
    assert resp.headers.get("Location") == f"{server.public_base}/Patient/{rid}/_history/{v}", (
        f"Location {resp.headers.get('Location')!r}, expected [base]/Patient/{rid}/_history/{v} "
        f"with the public base {server.public_base}"
    )
    assert resp.headers.get("ETag") == f'W/"{v}"', f"ETag {resp.headers.get('ETag')!r}"
    assert resp.headers.get("Content-Type", "").startswith(FHIR_JSON), resp.headers.get("Content-Type")
    lm = resp.headers.get("Last-Modified")
    assert lm and parsedate_to_datetime(lm), f"Last-Modified {lm!r} is not an HTTP date"

    expected = copy.deepcopy(sent)
    expected["id"] = rid
    assert without_server_meta(body) == without_server_meta(loads_exact(dumps_exact(expected)))

    read = expect(fhir.get(f"Patient/{rid}"), 200)
    assert body_json(read) == body, "read differs from the create response"
    assert read.headers.get("ETag") == f'W/"{v}"'
    assert read.headers.get("Content-Type", "").startswith(FHIR_JSON), read.headers.get("Content-Type")
    vread = expect(fhir.get(f"Patient/{rid}/_history/{v}"), 200)
    assert body_json(vread) == body, "vread of the only version differs from read"


def test_read_and_vread_of_unknown(server, fhir):
    rid = new_id()
    assert_outcome(expect(fhir.get(f"Patient/{rid}"), 404))
    assert_outcome(expect(fhir.get(f"Patient/{rid}/_history/1"), 404))
    created = body_json(expect(fhir.put(f"Patient/{rid}", patient(id=rid)), 201))
    assert_outcome(expect(fhir.get(f"Patient/{rid}/_history/{version(created)}999"), 404))
    assert_outcome(expect(fhir.get(f"Observation/{rid}"), 404))  # ids are per type


def test_decimals_and_unicode_kept_exactly(server, fhir):
    pid = new_id()
    p = patient("Ñúñez-Ørsted 😀", id=pid)
    p["name"][0]["given"] = ["Zoë", "\u2028line\u2029sep", 'quote " and \\ back']
    expect(fhir.put(f"Patient/{pid}", p), 201)
    assert without_server_meta(body_json(fhir.get(f"Patient/{pid}"))) == loads_exact(dumps_exact(p))
    # The same characters sent as \u escapes are the same strings.
    escaped = '{"resourceType":"Patient","id":"%s","name":[{"family":"\\u00c9lo\\u00efse \\ud83d\\ude00"}]}' % pid
    expect(fhir.request("PUT", f"Patient/{pid}", body=escaped), 200)
    back = body_json(fhir.get(f"Patient/{pid}"))
    assert back["name"][0]["family"] == "Éloïse 😀", back["name"]

    for value in ("1.50", "0.0000001000", "-0", "100", "72.0", "123456789012345678901234567890.1234567890"):
        oid = new_id("dec")
        expect(fhir.put(f"Observation/{oid}", dict(observation(f"Patient/{pid}", value), id=oid)), 201)
        got = body_json(fhir.get(f"Observation/{oid}"))["valueQuantity"]["value"]
        assert got == Num(value), f"decimal {value} read back as {got!r}"


def test_meta_from_client_is_overridden_on_update(server, fhir):
    pid = new_id()
    v1 = version(body_json(expect(fhir.put(f"Patient/{pid}", patient(id=pid)), 201)))
    sent = patient(id=pid, meta={"versionId": "42", "lastUpdated": "1999-01-01T00:00:00Z"})
    body = body_json(expect(fhir.put(f"Patient/{pid}", sent), 200))
    assert version(body) not in ("42", v1), f"versionId after an update: {version(body)}"
    assert body["meta"]["lastUpdated"] != "1999-01-01T00:00:00Z"


# ----------------------------------------------------------------------------------------------
# update, If-Match, Prefer
# ----------------------------------------------------------------------------------------------


def test_update_as_create_then_update(server, fhir):
    pid = new_id()
    r1 = expect(fhir.put(f"Patient/{pid}", patient(id=pid)), 201)
    v1 = version(body_json(r1))
    assert r1.headers.get("ETag") == f'W/"{v1}"'
    r2 = expect(fhir.put(f"Patient/{pid}", patient("Dupont", id=pid)), 200)
    b2 = body_json(r2)
    v2 = version(b2)
    assert v2 != v1 and (not (v1.isdigit() and v2.isdigit()) or int(v2) == int(v1) + 1), (v1, v2)
    assert r2.headers.get("ETag") == f'W/"{v2}"'
    assert b2["name"][0]["family"] == "Dupont"
    assert body_json(fhir.get(f"Patient/{pid}/_history/{v1}"))["name"][0]["family"] == "Durand"
    assert body_json(fhir.get(f"Patient/{pid}"))["name"][0]["family"] == "Dupont"


def test_if_match(server, fhir):
    pid = new_id()
    v1 = version(body_json(expect(fhir.put(f"Patient/{pid}", patient(id=pid)), 201)))
    v2 = version(body_json(expect(fhir.put(f"Patient/{pid}", patient("B", id=pid),
                                           headers={"If-Match": f'W/"{v1}"'}), 200)))
    # Stale version: 412, nothing stored.
    stale = expect(fhir.put(f"Patient/{pid}", patient("C", id=pid), headers={"If-Match": f'W/"{v1}"'}), 412)
    assert_outcome(stale)
    current = body_json(fhir.get(f"Patient/{pid}"))
    assert version(current) == v2 and current["name"][0]["family"] == "B", "a 412 update stored something"
    hist = body_json(fhir.get(f"Patient/{pid}/_history"))
    assert len(hist.get("entry") or []) == 2, "a 412 update added a version"
    # Stale PATCH: 412 too.
    patch = [{"op": "replace", "path": "/gender", "value": "other"}]
    stale = fhir.request("PATCH", f"Patient/{pid}", body=dumps_exact(patch),
                         headers={"Content-Type": JSON_PATCH, "If-Match": f'W/"{v1}"'})
    assert_outcome(expect(stale, 412))
    assert body_json(fhir.get(f"Patient/{pid}"))["gender"] == "female", "a 412 patch was applied"
    ok = fhir.request("PATCH", f"Patient/{pid}", body=dumps_exact(patch),
                      headers={"Content-Type": JSON_PATCH, "If-Match": f'W/"{v2}"'})
    assert body_json(expect(ok, 200))["gender"] == "other"


def test_prefer_return(server, fhir):
    pid = new_id()
    minimal = expect(fhir.put(f"Patient/{pid}", patient(id=pid), headers={"Prefer": "return=minimal"}), 201)
    assert minimal.content == b"", f"Prefer: return=minimal must send no body: {describe(minimal)}"
    assert minimal.headers.get("ETag"), "ETag missing with return=minimal"
    created = expect(fhir.post("Patient", patient(), headers={"Prefer": "return=minimal"}), 201)
    assert created.content == b"" and created.headers.get("Location"), describe(created)
    oo = expect(fhir.put(f"Patient/{pid}", patient("X", id=pid), headers={"Prefer": "return=OperationOutcome"}), 200)
    assert body_json(oo).get("resourceType") == "OperationOutcome", describe(oo)
    rep = expect(fhir.put(f"Patient/{pid}", patient("Y", id=pid), headers={"Prefer": "return=representation"}), 200)
    assert body_json(rep)["name"][0]["family"] == "Y"


# ----------------------------------------------------------------------------------------------
# PATCH
# ----------------------------------------------------------------------------------------------


def test_json_patch(server, fhir):
    pid = new_id()
    expect(fhir.put(f"Patient/{pid}", patient(id=pid)), 201)
    oid = new_id("obs")
    v1 = version(body_json(expect(fhir.put(f"Observation/{oid}", dict(observation(f"Patient/{pid}"), id=oid)), 201)))
    patch = [
        {"op": "replace", "path": "/status", "value": "amended"},
        {"op": "add", "path": "/note", "value": [{"text": "re-weighed"}]},
        {"op": "test", "path": "/code/coding/0/code", "value": "29463-7"},
    ]
    resp = expect(fhir.request("PATCH", f"Observation/{oid}", body=dumps_exact(patch),
                               headers={"Content-Type": JSON_PATCH}), 200)
    body = body_json(resp)
    v2 = version(body)
    assert v2 != v1 and resp.headers.get("ETag") == f'W/"{v2}"'
    assert body["status"] == "amended" and body["note"] == [{"text": "re-weighed"}]
    assert body["valueQuantity"]["value"] == Num("72.50"), "PATCH must not rewrite untouched decimals"
    assert body_json(fhir.get(f"Observation/{oid}")) == body
    # A failing `test` op changes nothing.
    failing = [{"op": "test", "path": "/status", "value": "final"}, {"op": "remove", "path": "/note"}]
    resp = fhir.request("PATCH", f"Observation/{oid}", body=dumps_exact(failing), headers={"Content-Type": JSON_PATCH})
    assert resp.status_code in (400, 409, 412, 422), describe(resp)
    assert_outcome(resp)
    assert body_json(fhir.get(f"Observation/{oid}")) == body
    # PATCH of an unknown resource: 404.
    assert_outcome(expect(fhir.request("PATCH", f"Observation/{new_id()}", body=dumps_exact(patch),
                                       headers={"Content-Type": JSON_PATCH}), 404))


# ----------------------------------------------------------------------------------------------
# delete
# ----------------------------------------------------------------------------------------------


def test_delete(server, fhir):
    pid = new_id()
    v1 = version(body_json(expect(fhir.put(f"Patient/{pid}", patient(id=pid)), 201)))
    deleted = expect(fhir.delete(f"Patient/{pid}"), 200, 204)
    if deleted.status_code == 204:
        assert deleted.content == b"", "204 with a body"
    assert_outcome(expect(fhir.get(f"Patient/{pid}"), 410))
    assert body_json(expect(fhir.get(f"Patient/{pid}/_history/{v1}"), 200))["id"] == pid, (
        "the versions before a delete stay readable"
    )
    expect(fhir.delete(f"Patient/{pid}"), 200, 204)  # deleting again has no effect
    entries = check_history_bundle(body_json(expect(fhir.get(f"Patient/{pid}/_history"), 200)), "history")
    assert [e["request"]["method"] for e in entries] == ["DELETE", "PUT"], (
        f"instance history after PUT, DELETE, DELETE: {[e['request']['method'] for e in entries]}"
    )
    # An update brings it back with a new version.
    back = expect(fhir.put(f"Patient/{pid}", patient(id=pid)), 201, 200)
    v3 = version(body_json(back))
    assert v3 != v1
    expect(fhir.get(f"Patient/{pid}"), 200)


# ----------------------------------------------------------------------------------------------
# history
# ----------------------------------------------------------------------------------------------


def test_history_instance_type_system(server, fhir):
    pid = new_id()
    versions = []
    for family in ("A", "B", "C"):
        versions.append(version(body_json(expect(fhir.put(f"Patient/{pid}", patient(family, id=pid)), 201, 200))))
        time.sleep(0.02)
    oid = new_id("obs")
    expect(fhir.put(f"Observation/{oid}", dict(observation(f"Patient/{pid}"), id=oid)), 201)

    inst = body_json(expect(fhir.get(f"Patient/{pid}/_history"), 200))
    entries = check_history_bundle(inst, "instance history")
    assert [e["resource"]["meta"]["versionId"] for e in entries] == versions[::-1], "newest first"
    assert [e["resource"]["name"][0]["family"] for e in entries] == ["C", "B", "A"]
    assert [e["request"]["method"] for e in entries] == ["PUT", "PUT", "PUT"]
    assert all(e["fullUrl"] == f"{server.public_base}/Patient/{pid}" for e in entries), entries[0].get("fullUrl")
    if "total" in inst:
        assert inst["total"] == Num("3")

    typ = body_json(expect(fhir.get("Patient/_history", params={"_count": "1000"}), 200))
    ids = {e["resource"]["id"] for e in check_history_bundle(typ, "type history") if e.get("resource")}
    assert pid in ids and oid not in ids
    system = body_json(expect(fhir.get("_history", params={"_count": "1000"}), 200))
    seen = {(e["resource"]["resourceType"], e["resource"]["id"])
            for e in check_history_bundle(system, "system history") if e.get("resource")}
    assert ("Patient", pid) in seen and ("Observation", oid) in seen


def test_history_since_and_count(server, fhir):
    pid = new_id()
    first = body_json(expect(fhir.put(f"Patient/{pid}", patient("A", id=pid)), 201))
    time.sleep(0.05)
    second = body_json(expect(fhir.put(f"Patient/{pid}", patient("B", id=pid)), 200))
    time.sleep(0.05)
    third = body_json(expect(fhir.put(f"Patient/{pid}", patient("C", id=pid)), 200))

    since = second["meta"]["lastUpdated"]
    got = body_json(expect(fhir.get(f"Patient/{pid}/_history", params={"_since": since}), 200))
    vs = [e["resource"]["meta"]["versionId"] for e in check_history_bundle(got, "_since")]
    assert vs == [version(third), version(second)], (
        f"_since={since} (at or after) gave versions {vs}; expected {[version(third), version(second)]}"
    )

    page1 = body_json(expect(fhir.get(f"Patient/{pid}/_history", params={"_count": "1"}), 200))
    e1 = check_history_bundle(page1, "_count=1")
    assert [e["resource"]["meta"]["versionId"] for e in e1] == [version(third)], "_count=1: the newest version only"
    links = {l.get("relation"): l.get("url") for l in page1.get("link") or []}
    assert links.get("next"), f"_count=1 of 3 versions must link to a next page; links {links}"
    seen = [version(third)]
    url = links["next"]
    for _ in range(5):
        page = body_json(expect(fhir.get(local(server, url)), 200))
        seen += [e["resource"]["meta"]["versionId"] for e in check_history_bundle(page, "next page")]
        url = {l.get("relation"): l.get("url") for l in page.get("link") or []}.get("next")
        if not url:
            break
    assert seen == [version(third), version(second), version(first)], f"paging through _count=1: {seen}"


@pytest.mark.parametrize("params", [{"_since": "yesterday"}, {"_since": "2020-13-01T00:00:00Z"}, {"_count": "many"}])
def test_history_bad_parameters(server, fhir, params):
    assert_outcome(expect(fhir.get("Patient/_history", params=params), 400))


# ----------------------------------------------------------------------------------------------
# content negotiation that must succeed
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [
    "application/fhir+json",
    "application/fhir+json; charset=utf-8",
    "application/fhir+json; fhirVersion=4.0",
    "application/fhir+json; fhirVersion=4.3",
    "application/json",
    "application/json; charset=UTF-8",
])
def test_accepted_content_types(server, fhir, content_type):
    pid = new_id()
    resp = fhir.request("PUT", f"Patient/{pid}", body=dumps_exact(patient(id=pid)),
                        headers={"Content-Type": content_type})
    expect(resp, 201)


@pytest.mark.parametrize("accept", [
    None,
    "*/*",
    "application/fhir+json",
    "application/json",
    "application/fhir+json; fhirVersion=4.0",
    "application/fhir+xml;q=0.9, application/fhir+json",
    "text/html, application/fhir+json;q=0.5",
])
def test_accepted_accept_headers(server, fhir, accept):
    pid = new_id()
    expect(fhir.put(f"Patient/{pid}", patient(id=pid)), 201)
    resp = expect(fhir.get(f"Patient/{pid}", headers={"Accept": accept}), 200)
    ctype = resp.headers.get("Content-Type", "")
    assert ctype.startswith(("application/fhir+json", "application/json")), f"Content-Type {ctype!r}"
    assert body_json(resp)["id"] == pid


@pytest.mark.parametrize("fmt", ["json", "application/fhir+json", "application/json"])
def test_format_parameter(server, fhir, fmt):
    pid = new_id()
    expect(fhir.put(f"Patient/{pid}", patient(id=pid)), 201)
    resp = expect(fhir.get(f"Patient/{pid}", params={"_format": fmt}, headers={"Accept": "application/fhir+xml"}), 200)
    assert body_json(resp)["id"] == pid


# ----------------------------------------------------------------------------------------------
# CapabilityStatement
# ----------------------------------------------------------------------------------------------


def test_capability_statement(server, fhir):
    cs = body_json(expect(fhir.get("metadata"), 200))
    assert cs.get("resourceType") == "CapabilityStatement", dumps_exact(cs)[:300]
    assert cs.get("fhirVersion") == "4.0.1", cs.get("fhirVersion")
    assert any("json" in f for f in cs.get("format") or []), cs.get("format")
    rest = [r for r in cs.get("rest") or [] if r.get("mode") == "server"]
    assert rest, "no rest[mode=server]"
    types = {r["type"]: {i["code"] for i in r.get("interaction") or []} for r in rest[0].get("resource") or []}
    assert set(types) == set(SERVED_TYPES), f"served types differ: {set(types) ^ set(SERVED_TYPES)}"
    for t, codes in types.items():
        missing = {"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create"} - codes
        assert not missing, f"{t}: CapabilityStatement lacks {missing}"


def test_gzip_request_body(server, fhir):
    pid = new_id()
    body = gzip.compress(dumps_exact(patient(id=pid)).encode())
    expect(fhir.request("PUT", f"Patient/{pid}", body=body, headers={"Content-Encoding": "gzip"}), 201)
    assert body_json(fhir.get(f"Patient/{pid}"))["name"][0]["family"] == "Durand"


# ----------------------------------------------------------------------------------------------
# concurrent writes: each interaction is atomic
# ----------------------------------------------------------------------------------------------

WRITERS = 8


def _parallel(server, fn) -> list:
    barrier = threading.Barrier(WRITERS)

    def run(i):
        client = server.client()
        try:
            barrier.wait(10)
            return fn(client, i)
        finally:
            client.close()

    with ThreadPoolExecutor(WRITERS) as pool:
        return list(pool.map(run, range(WRITERS)))


def test_concurrent_updates_with_if_match(server, fhir):
    pid = new_id()
    v1 = version(body_json(expect(fhir.put(f"Patient/{pid}", patient(id=pid)), 201)))
    results = _parallel(server, lambda c, i: c.put(f"Patient/{pid}", patient(f"W{i}", id=pid),
                                                    headers={"If-Match": f'W/"{v1}"'}))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [412] * (WRITERS - 1), (
        f"{WRITERS} updates with If-Match W/\"{v1}\" at once: statuses {statuses}; exactly one may win"
    )
    winner = next(r for r in results if r.status_code == 200)
    entries = body_json(fhir.get(f"Patient/{pid}/_history")).get("entry") or []
    assert len(entries) == 2, f"{len(entries)} versions after one winning update"
    assert body_json(fhir.get(f"Patient/{pid}"))["name"] == body_json(winner)["name"]


def test_concurrent_update_as_create(server, fhir):
    pid = new_id()
    results = _parallel(server, lambda c, i: c.put(f"Patient/{pid}", patient(f"W{i}", id=pid)))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * (WRITERS - 1) + [201], (
        f"{WRITERS} PUTs at a new id at once: statuses {statuses}; expected one 201 and the rest 200: "
        + "; ".join(describe(r, 200) for r in results if r.status_code not in (200, 201))
    )
    versions = sorted(version(body_json(r)) for r in results)
    assert len(set(versions)) == WRITERS, f"versions given out: {versions}"
    entries = body_json(fhir.get(f"Patient/{pid}/_history", params={"_count": "100"})).get("entry") or []
    assert len(entries) == WRITERS, f"{len(entries)} versions in the history after {WRITERS} updates"


def test_binary_native_read(server, fhir, hl7_examples):
    raw = (hl7_examples / "Binary-f006.json").read_bytes()
    binary = loads_exact(raw)
    bid = new_id("bin")
    binary["id"] = bid
    expect(fhir.put(f"Binary/{bid}", binary), 201)
    data = base64.b64decode("".join(binary["data"].split()))
    for accept in (binary["contentType"], "*/*"):
        native = expect(fhir.get(f"Binary/{bid}", headers={"Accept": accept}), 200)
        assert native.headers.get("Content-Type", "").startswith(binary["contentType"]), native.headers
        assert native.content == data, f"Accept {accept}: the native content differs from Binary.data"
    as_fhir = body_json(expect(fhir.get(f"Binary/{bid}"), 200))
    assert as_fhir["data"] == binary["data"] and as_fhir["contentType"] == binary["contentType"]
