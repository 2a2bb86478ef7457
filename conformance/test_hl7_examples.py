"""Every official HL7 R4 example of a served type is accepted and read back unaltered.

For each file of hl7.fhir.r4.examples@4.0.1 whose resourceType is served:
  PUT [base]/Type/<id> with the file's bytes as they are   -> 200 or 201
  GET [base]/Type/<id>                                       -> 200, the same resource:
      equal to the file except meta.versionId / meta.lastUpdated (and meta if left empty),
      numbers compared by their text (1.50 is not 1.5), key order ignored;
      meta.versionId present, meta.lastUpdated an instant, ETag W/"<versionId>".
  If the PUT answered with the resource, that body must equal the file in the same way.

One test per backend collects every failing file, so that a run shows them all at once.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from support import (
    INSTANT_RE,
    SERVED_TYPES,
    body_json,
    json_diff,
    loads_exact,
    outcome_summary,
    without_server_meta,
)

MAX_DIFF_LINES = 8


def served_examples(directory: Path) -> list[tuple[Path, bytes, dict]]:
    out = []
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith(".") or path.name == "package.json":
            continue
        raw = path.read_bytes()
        try:
            resource = loads_exact(raw)
        except ValueError as exc:
            loose = json.loads(raw)
            if isinstance(loose, dict) and loose.get("resourceType") in SERVED_TYPES:
                raise AssertionError(f"{path} cannot be read exactly ({exc}): the corpus is damaged")
            continue
        if isinstance(resource, dict) and resource.get("resourceType") in SERVED_TYPES:
            out.append((path, raw, resource))
    return out


def diff_lines(sent: dict, got) -> list[str]:
    if not isinstance(got, dict):
        return ["$: not a JSON object"]
    return json_diff(without_server_meta(sent), without_server_meta(got))


def report_diff(label: str, diffs: list[str], problems: list[str], verb: str = "differs") -> None:
    if diffs:
        shown = diffs[:MAX_DIFF_LINES]
        more = f" (+{len(diffs) - len(shown)} more)" if len(diffs) > len(shown) else ""
        problems.append(f"{label} {verb} from the file{more}:\n      " + "\n      ".join(shown))


def check_example(fhir, path: Path, raw: bytes, resource: dict) -> list[str]:
    rtype, rid = resource["resourceType"], resource["id"]
    problems: list[str] = []
    echo_diffs = None

    put = fhir.request("PUT", f"{rtype}/{rid}", body=raw)
    if put.status_code not in (200, 201):
        return [f"PUT {rtype}/{rid} -> {outcome_summary(put)}"]
    if put.content:
        try:
            echoed = loads_exact(put.content)
        except ValueError:
            echoed = None
            problems.append(f"PUT {rtype}/{rid} answered {put.status_code} with a body that is not JSON")
        if isinstance(echoed, dict) and echoed.get("resourceType") == rtype:
            echo_diffs = diff_lines(resource, echoed)

    got = fhir.get(f"{rtype}/{rid}")
    if got.status_code != 200:
        report_diff("the PUT response body", echo_diffs or [], problems)
        problems.append(f"GET {rtype}/{rid} after the PUT -> {outcome_summary(got)}")
        return problems
    try:
        back = body_json(got)
    except AssertionError as exc:
        report_diff("the PUT response body", echo_diffs or [], problems)
        return problems + [str(exc)]
    read_diffs = diff_lines(resource, back)
    if echo_diffs == read_diffs:
        report_diff("the PUT response body and the read-back", read_diffs, problems, "both differ")
    else:
        report_diff("the PUT response body", echo_diffs or [], problems)
        report_diff("the read-back", read_diffs, problems)

    meta = back.get("meta") if isinstance(back, dict) else None
    version = meta.get("versionId") if isinstance(meta, dict) else None
    updated = meta.get("lastUpdated") if isinstance(meta, dict) else None
    if not isinstance(version, str) or not version:
        problems.append(f"the read-back has no meta.versionId (meta = {meta!r})")
    elif got.headers.get("ETag") != f'W/"{version}"':
        problems.append(f"ETag {got.headers.get('ETag')!r}, expected W/\"{version}\"")
    if not isinstance(updated, str) or not INSTANT_RE.match(updated):
        problems.append(f"meta.lastUpdated {updated!r} is not a FHIR instant")
    return problems


# Official examples that break R4's own rules; the server must refuse them (400), not store them.
KNOWN_INVALID = {
    **{
        f"SearchParameter-{kind}-extensions-{ty}-{code}.json": "no `base` (SearchParameter.base is 1..*)"
        for kind, ty in (("codesystem", "CodeSystem"), ("valueset", "ValueSet"))
        for code in ("author", "effective", "end", "keyword", "workflow")
    },
    "SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json":
        "an id of 67 characters (R4 ids are at most 64)",
    # The same list as src/fhir/validate/tests.rs (KNOWN_INVALID), for the types served since.
    "ImplementationGuide-fhir.json": "ImplementationGuide.name and .status missing (1..1)",
    "ig-r4.json": "ImplementationGuide.name and .status missing (1..1)",
    "Questionnaire-qs1.json": "nested items without linkId (1..1)",
    **{
        name: "a narrative without content (txt-2)"
        for name in (
            "ActivityDefinition-blood-tubes-supply.json",
            "ActivityDefinition-heart-valve-replacement.json",
            "EventDefinition-example.json",
            "Questionnaire-zika-virus-exposure-assessment.json",
        )
    },
}

# Official examples larger than the default body limit (32 MiB): 413, not stored.
TOO_LARGE = {"Bundle-resources.json"}


# Served types of which R4 publishes no example (the substance-definition resources).
NO_EXAMPLE = {
    "SubstanceNucleicAcid", "SubstancePolymer", "SubstanceProtein",
    "SubstanceReferenceInformation", "SubstanceSourceMaterial",
}


def test_hl7_examples_round_trip(server, fhir, hl7_examples):
    examples = served_examples(hl7_examples)
    per_type = Counter(res["resourceType"] for _, _, res in examples)
    missing = [t for t in SERVED_TYPES if per_type[t] == 0 and t not in NO_EXAMPLE]
    assert not missing, (
        f"{hl7_examples} has no example of {missing}: is it hl7.fhir.r4.examples@4.0.1?"
    )
    assert not [t for t in NO_EXAMPLE if per_type[t]], "NO_EXAMPLE lists a type that has one"

    failures: list[str] = []
    for path, raw, resource in examples:
        if path.name in TOO_LARGE:
            resp = fhir.request("PUT", f"{resource['resourceType']}/{resource['id']}", body=raw)
            if resp.status_code != 413:
                failures.append(f"{path.name}: larger than the body limit, yet answered {resp.status_code}")
            continue
        if path.name in KNOWN_INVALID:
            resp = fhir.request("PUT", f"{resource['resourceType']}/{resource['id']}", body=raw)
            if resp.status_code != 400:
                failures.append(f"{path.name}: {KNOWN_INVALID[path.name]}, yet answered {resp.status_code}")
            continue
        problems = check_example(fhir, path, raw, resource)
        if problems:
            failures.append(f"{path.name}:\n    " + "\n    ".join(problems))

    if failures:
        pytest.fail(
            f"{len(failures)} of {len(examples)} official examples failed on {server.backend}:\n"
            + "\n".join(failures)
            + f"\n(examples sent: {', '.join(f'{t} {n}' for t, n in sorted(per_type.items()))})",
            pytrace=False,
        )
