"""Robustness: thousands of mutated requests, none of which may crash the server or get a 5xx.

Official examples of the served types are mutated deterministically (seeded): values swapped
for other JSON types, keys renamed, elements deleted or duplicated into arrays, strings
stretched or filled with odd characters, numbers pushed out of range, bytes of the raw body
flipped or truncated. Each mutant is sent with PUT (its id, or a fresh one) or POST. Every answer
must be below 500, a refusal must be an OperationOutcome, and the server must still answer
`/health` at the end. Whatever was accepted must read back.
"""

from __future__ import annotations

import copy
import json
import random

import pytest

from support import body_json, describe

SEED = 20261122
MUTANTS_PER_BACKEND = 1500
SERVED = {
    "Patient", "Practitioner", "PractitionerRole", "Organization", "RelatedPerson", "Device",
    "DocumentReference", "Binary", "Observation", "AllergyIntolerance", "Condition",
    "MedicationStatement", "Immunization", "Appointment", "Consent", "Provenance", "List",
    "Communication", "AuditEvent",
}
ODD_STRINGS = [
    "", " ", "\u0000", "\ud7ff\ue000", "é" * 5000, "<div>", "null", "1e999", "--", "\\", "\"",
    "2026-02-30", "9999-99-99T99:99:99Z", "urn:oid:1.2..3", "x" * 70, "😀", "\t\n",
]
ODD_VALUES = [None, True, False, 0, -1, 2**31, 2**63, 1.5, 1e308, [], {}, [None], [[]], {"a": 1}, "s"]


def load_examples(hl7_examples):
    examples = []
    for path in sorted(hl7_examples.glob("*.json")):
        try:
            resource = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(resource, dict) and resource.get("resourceType") in SERVED:
            if len(path.read_bytes()) < 200_000:
                examples.append(resource)
    return examples


def paths(value, prefix=()):
    """Every (container, key) position in a JSON tree."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield value, key
            yield from paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield value, index
            yield from paths(child, prefix + (index,))


def mutate(resource, rng):
    mutant = copy.deepcopy(resource)
    positions = list(paths(mutant))
    if not positions:
        return mutant
    for _ in range(rng.randint(1, 3)):
        container, key = rng.choice(positions)
        if isinstance(container, list) and key >= len(container):
            continue
        if isinstance(container, dict) and key not in container:
            continue
        action = rng.randrange(7)
        if action == 0:
            container[key] = rng.choice(ODD_VALUES)
        elif action == 1:
            container[key] = rng.choice(ODD_STRINGS)
        elif action == 2 and isinstance(container, dict):
            container[key + rng.choice(["X", "Quantity", "_", ""])] = container.pop(key)
        elif action == 3:
            del container[key]
        elif action == 4:
            container[key] = [container[key], container[key]]
        elif action == 5 and isinstance(container[key], (int, float)) and not isinstance(container[key], bool):
            container[key] = rng.choice([10**40, -(10**40), 0.1 + 0.2, 3])
        else:
            container[key] = {"extension": [{"url": "http://x", "valueString": rng.choice(ODD_STRINGS)}]}
    return mutant


def raw_mutation(text, rng):
    data = bytearray(text.encode("utf-8"))
    choice = rng.randrange(4)
    if choice == 0 and data:
        data = data[: rng.randrange(len(data))]
    elif choice == 1 and data:
        for _ in range(rng.randint(1, 5)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif choice == 2:
        data = b"[" * rng.randint(90, 400) + data
    else:
        data = data.replace(b'"', b"'", 1)
    return bytes(data)


def test_mutants_never_crash_the_server(server, fhir, hl7_examples):
    rng = random.Random(SEED)
    examples = load_examples(hl7_examples)
    assert len(examples) > 150, f"only {len(examples)} examples found"
    statuses: dict[int, int] = {}
    accepted = []
    problems = []
    for n in range(MUTANTS_PER_BACKEND):
        original = rng.choice(examples)
        rtype = original["resourceType"]
        if rng.random() < 0.2:
            body = raw_mutation(json.dumps(original), rng)
        else:
            body = json.dumps(mutate(original, rng), ensure_ascii=rng.random() < 0.5).encode("utf-8")
        if rng.random() < 0.5:
            rid = f"fuzz-{n}"
            try:
                parsed = json.loads(body)
                if isinstance(parsed, dict):
                    parsed["id"] = rid
                    body = json.dumps(parsed).encode("utf-8")
            except ValueError:
                pass
            resp = fhir.request("PUT", f"{rtype}/{rid}", body=body)
        else:
            resp = fhir.request("POST", rtype, body=body)
        statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
        if resp.status_code >= 500:
            problems.append(f"#{n} {rtype}: {describe(resp)}\nbody: {body[:400]!r}")
        elif resp.status_code >= 400:
            outcome = body_json(resp)
            if not (isinstance(outcome, dict) and outcome.get("resourceType") == "OperationOutcome"):
                problems.append(f"#{n} {rtype}: refusal without OperationOutcome: {describe(resp)}")
        elif resp.status_code in (200, 201):
            accepted.append((rtype, body_json(resp)["id"]))
    assert not problems, f"{len(problems)} bad answers out of {MUTANTS_PER_BACKEND}:\n" + "\n\n".join(problems[:10])
    for rtype, rid in accepted[:200]:
        read = fhir.get(f"{rtype}/{rid}")
        assert read.status_code == 200, describe(read)
    health = fhir.session.get(fhir.base_url.rsplit("/fhir", 1)[0] + "/health", timeout=30)
    assert health.status_code == 200, "the server did not survive the fuzzing"
    print(f"statuses: {sorted(statuses.items())}, accepted {len(accepted)}")
