#!/usr/bin/env python3
"""Benchmark of transaction Bundles against the release build, on SQLite and PostgreSQL.

Each request is a 100-entry transaction Bundle as an integration engine sends it: one Patient
and 99 Observations (weights, glucose, blood pressure panels) referring to it by `urn:uuid:`,
every entry a POST. oha posts the same Bundle from several connections (every request creates
100 new resources: server ids, references rewritten); resources/s = requests/s x 100.
Writes its section of docs/benchmarks.md.

    cargo build --release && cargo install oha --locked   # once
    python3 benches/transaction.py [--duration 20] [--connections 8]
"""

import argparse
import json
import os
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rest  # noqa: E402  (Server, oha, psql, machine)

MARK_BEGIN = "<!-- transaction.py: begin (rewritten by benches/transaction.py; keep this section) -->"
MARK_END = "<!-- transaction.py: end -->"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def bundle(entries_count):
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    entries = [{
        "fullUrl": patient_url,
        "resource": {"resourceType": "Patient",
                     "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "1800512345678"}],
                     "name": [{"family": "Dupont", "given": ["Élodie"]}], "gender": "female",
                     "birthDate": "1980-05-04"},
        "request": {"method": "POST", "url": "Patient"},
    }]
    for i in range(entries_count - 1):
        kind = i % 3
        observation = {"resourceType": "Observation", "status": "final",
                       "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                                 "code": "vital-signs"}]}],
                       "subject": {"reference": patient_url},
                       "effectiveDateTime": f"2026-01-{1 + i % 28:02d}T08:{i % 60:02d}:00+01:00"}
        if kind == 0:
            observation["code"] = {"coding": [{"system": LOINC, "code": "29463-7"}]}
            observation["valueQuantity"] = {"value": 70 + i % 10, "unit": "kg", "system": UCUM, "code": "kg"}
        elif kind == 1:
            observation["code"] = {"coding": [{"system": LOINC, "code": "15074-8"}]}
            observation["valueQuantity"] = {"value": 5.4, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}
        else:
            observation["code"] = {"coding": [{"system": LOINC, "code": "85354-9"}]}
            observation["component"] = [
                {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                 "valueQuantity": {"value": 120, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                 "valueQuantity": {"value": 80, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}},
            ]
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": observation,
                        "request": {"method": "POST", "url": "Observation"}})
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def run_backend(name, database_url, body, args):
    server = rest.Server(database_url)
    status, answer = server.request("POST", "/fhir", body)
    assert status == 200, (status, answer[:500])
    base = f"http://{server.addr}/fhir"
    result = rest.oha(base, args.duration, args.connections, "POST", body, token=server.token)
    # Prefer: return=minimal is what a loader sends; compare with the default too.
    server.stop()
    ok = result["codes"].get("200", 0)
    return {"backend": name, "entries": args.entries, **result,
            "resources_per_s": result["rps"] * args.entries, "ok_requests": ok}


def section(results, machine, args):
    lines = [MARK_BEGIN, "", "## Transaction Bundles", "",
             f"`benches/transaction.py`: {args.entries}-entry transaction Bundles (1 Patient + "
             f"{args.entries - 1} Observations referring to it by `urn:uuid:`), posted by oha with "
             f"{args.connections} connections for {args.duration} s on a fresh database; every request "
             "creates all its resources in one database transaction.", "",
             f"- machine: {machine['cpu']}, {machine['cores']} cores; {machine['oha']}; commit {machine['commit']}",
             "", "| backend | Bundles/s | resources/s | p50 | p99 | statuses |", "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['backend']} | {r['rps']:,.1f} | {r['resources_per_s']:,.0f} | "
                     f"{r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['codes']} |")
    lines += ["", MARK_END]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--entries", type=int, default=100)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--out", default=os.path.join(rest.ROOT, "docs", "benchmarks.md"))
    args = parser.parse_args()
    if not os.path.exists(rest.BINARY):
        raise SystemExit("build first: cargo build --release")
    body = bundle(args.entries)
    results = []
    if args.backend in ("sqlite", "both"):
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            results.append(run_backend("SQLite", f"sqlite:{tmp}/bench.db", body, args))
    if args.backend in ("postgres", "both"):
        name = f"carnet_bench_tx_{os.getpid()}"
        rest.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        rest.psql(f"CREATE DATABASE {name}")
        try:
            results.append(run_backend("PostgreSQL", f"{rest.PG_ROOT}/{name}", body, args))
        finally:
            rest.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    for r in results:
        print(json.dumps(r), file=sys.stderr)
    text = section(results, rest.machine(), args)
    rest.write_section(args.out, MARK_BEGIN, MARK_END, text)
    print(text)


if __name__ == "__main__":
    main()
