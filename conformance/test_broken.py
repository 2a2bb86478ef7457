"""Broken requests are refused with the right status and an OperationOutcome, and store nothing.

For every case of broken_catalogue.CASES, on every backend:
  1. (PATCH cases) the unbroken example is stored first at Type/<fresh id>;
  2. the broken request is sent;
  3. the status is one of the expected ones; the body is an OperationOutcome with at least one
     issue of severity error or fatal; when the case names an element, some issue.expression
     contains it;
  4. nothing was stored: the history of the type(s) involved (or the system history) is
     unchanged, a PUT at a fresh id left Type/<id> and Type/<id>/_history at 404, a failed PATCH
     left the resource at its version;
  5. the server still answers /health;
  6. control: the same example sent properly is accepted, so the case fails for its defect only.
"""

from __future__ import annotations

import copy
import gzip
import secrets
from types import SimpleNamespace

import pytest

from broken_catalogue import CASES, Body, Case, Pad, Set, Text
from support import (
    FHIR_JSON,
    JSON_PATCH,
    SERVED_TYPES,
    body_json,
    dumps_exact,
    error_issues,
    expressions,
    history_snapshot,
    loads_exact,
    outcome_summary,
    raw_request,
)

RAW_SOCKET_ABOVE = 8 << 20  # bodies larger than this go through a raw socket (see raw_request)
SEVERITIES = ("fatal", "error", "warning", "information")


def build_body(case: Case, base: dict, fresh: str, broken: bool) -> bytes | None:
    doc = copy.deepcopy(base)
    if case.method == "POST":
        doc.pop("id", None)
    elif broken and case.body_id is None:
        doc.pop("id", None)
    else:
        doc["id"] = (case.body_id if broken else "{id}").format(id=fresh)
    # The server keeps a document's masterIdentifier (its MHD uniqueId) unique among live
    # documents: each case's copy of an example document gets its own.
    master = doc.get("masterIdentifier")
    if doc.get("resourceType") == "DocumentReference" and isinstance(master, dict) and "value" in master:
        master["value"] = f"{master['value']}.{int(fresh.split('-')[-1], 16)}"
    if not broken:
        return dumps_exact(doc).encode("utf-8")
    if not case.send_body:
        return None
    for op in case.ops:
        if hasattr(op, "apply"):
            doc = op.apply(doc)
    text = dumps_exact(doc)
    for op in case.ops:
        if isinstance(op, Pad):
            doc = Set(op.pointer, "").apply(doc)
            room = op.size - len(dumps_exact(doc).encode("utf-8"))
            doc = Set(op.pointer, "A" * (room - room % 4)).apply(doc)
            text = dumps_exact(doc)
        elif isinstance(op, Text):
            edited = op.edit(text)
            assert edited != text, f"catalogue bug: {op} left the body unchanged"
            text = edited
    data = text.encode("utf-8", "surrogateescape")
    for op in case.ops:
        if isinstance(op, Body):
            data = op.body
    return data


def send(fhir, method: str, path: str, body: bytes | None, content_type: str | None, accept: str,
         content_encoding: str | None = None, chunked: bool = False):
    headers = {"Accept": accept, "Content-Type": content_type if body is not None else None}
    if body is not None and content_encoding == "gzip":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    if body is not None and (len(body) > RAW_SOCKET_ABOVE or chunked):
        headers["Authorization"] = fhir.session.headers.get("Authorization")
        raw = raw_request(
            fhir.url(path), method, {k: v for k, v in headers.items() if v}, body, chunked=chunked
        )
        return SimpleNamespace(
            status_code=raw.status,
            content=raw.body,
            text=raw.body.decode("utf-8", "replace"),
            headers=raw.headers,
            request=SimpleNamespace(method=method, url=fhir.url(path)),
        )
    return fhir.request(method, path, body=body, headers=headers)


def snapshot_paths(body_type: str, url_type: str) -> list[str]:
    paths = [f"{t}/_history" for t in dict.fromkeys((body_type, url_type)) if t in SERVED_TYPES]
    return paths or ["_history"]


def check_outcome(case: Case, resp, problems: list[str]) -> None:
    try:
        outcome = loads_exact(resp.content)
    except (ValueError, UnicodeDecodeError):
        problems.append("the body is not JSON (an OperationOutcome was expected)")
        return
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        kind = outcome.get("resourceType") if isinstance(outcome, dict) else type(outcome).__name__
        problems.append(f"the body is a {kind}, not an OperationOutcome")
        return
    issues = outcome.get("issue")
    if not isinstance(issues, list) or not issues:
        problems.append("the OperationOutcome has no issue")
        return
    for i, issue in enumerate(issues):
        if not isinstance(issue, dict) or issue.get("severity") not in SEVERITIES or not isinstance(
            issue.get("code"), str
        ):
            problems.append(f"OperationOutcome.issue[{i}] lacks a valid severity and code: {issue!r}")
    if not error_issues(outcome):
        problems.append("no issue has severity error or fatal")
    wanted = case.expressions
    if wanted:
        found = expressions(outcome)
        if not any(w in e for w in wanted for e in found):
            problems.append(
                f"no issue.expression contains {' or '.join(map(repr, wanted))}; expressions: {found}"
            )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_broken(server, fhir, hl7_examples, case: Case):
    base_path = hl7_examples / case.base
    base = loads_exact(base_path.read_bytes())
    body_type = base["resourceType"]
    url_type = case.url_type or body_type
    fresh = f"brk-{secrets.token_hex(6)}"
    default_path = "{type}" if case.method == "POST" else "{type}/{id}"
    path = (case.path or default_path).format(type=url_type, id=fresh)
    problems: list[str] = []

    # 1. PATCH cases patch a stored resource.
    before_patch = None
    if case.method == "PATCH":
        setup = fhir.request("PUT", f"{body_type}/{fresh}", body=build_body(case, base, fresh, False))
        assert setup.status_code in (200, 201), (
            f"setup: storing {case.base} at {body_type}/{fresh} failed: {outcome_summary(setup)}"
        )
        before_patch = fhir.get(f"{body_type}/{fresh}")
        assert before_patch.status_code == 200, f"setup read: {outcome_summary(before_patch)}"

    snapshots = {p: history_snapshot(fhir, p) for p in snapshot_paths(body_type, url_type)}

    # 2. the broken request
    if case.method == "PATCH":
        patch = case.patch if isinstance(case.patch, bytes) else dumps_exact(case.patch).encode()
        body, content_type = patch, case.content_type or JSON_PATCH
    else:
        body, content_type = build_body(case, base, fresh, True), case.content_type or FHIR_JSON
    resp = send(fhir, case.method, path, body, content_type, case.accept, case.content_encoding, case.chunked)

    # 3. status and OperationOutcome
    if resp.status_code not in case.statuses:
        problems.append(f"status {resp.status_code}, expected {' or '.join(map(str, case.statuses))}")
    check_outcome(case, resp, problems)

    # 4. nothing stored
    for hist_path, before in snapshots.items():
        after = history_snapshot(fhir, hist_path)
        if after != before:
            problems.append(
                f"something was stored: GET {hist_path} changed from total={before[0]} "
                f"({len(before[1])} entries) to total={after[0]} ({len(after[1])} entries); "
                f"new: {sorted(set(after[1]) - set(before[1]))[:3]}"
            )
    segments = path.split("/")
    if case.method == "PATCH":
        now = fhir.get(f"{body_type}/{fresh}")
        if now.status_code != 200 or body_json(now) != body_json(before_patch):
            problems.append(
                f"the patched resource changed: before {outcome_summary(before_patch, 120)}, "
                f"after {outcome_summary(now, 120)}"
            )
    elif len(segments) == 2 and segments[0] in SERVED_TYPES and not segments[1].startswith("_"):
        valid_id = all(c.isalnum() or c in "-." for c in segments[1]) and len(segments[1]) <= 64
        allowed = (404,) if valid_id else (400, 404)
        for probe in (path, f"{path}/_history"):
            got = fhir.get(probe)
            if got.status_code not in allowed:
                problems.append(
                    f"GET {probe} -> {outcome_summary(got, 160)}; expected "
                    f"{' or '.join(map(str, allowed))} since nothing may be stored"
                )

    # 5. still alive
    try:
        health = fhir.session.get(server.root_url + "/health", timeout=10)
        if health.status_code != 200:
            problems.append(f"GET /health -> {health.status_code} after this request")
    except Exception as exc:  # noqa: BLE001 - any failure here means the server is gone
        problems.append(f"the server stopped answering after this request: {exc}")

    # 6. control
    if case.control and not any("stopped answering" in p for p in problems):
        if case.method == "PATCH":
            control = fhir.request(
                "PATCH",
                f"{body_type}/{fresh}",
                body=dumps_exact(case.control_patch).encode(),
                headers={"Content-Type": JSON_PATCH},
            )
            control_what = f"PATCH {body_type}/{fresh} with {case.control_patch!r}"
        else:
            control_path = default_path.format(type=body_type, id=fresh)
            control = fhir.request(case.method, control_path, body=build_body(case, base, fresh, False))
            control_what = f"{case.method} {control_path} with {case.base} unbroken"
        if control.status_code not in (200, 201):
            problems.append(
                f"control: {control_what} -> {outcome_summary(control)}: "
                "the unbroken request must succeed for this case to prove anything"
            )

    if problems:
        pytest.fail(
            f"{case.name} on {server.backend}: {case.method} {path}\n"
            f"  mutation: {case.describe()}\n"
            f"  response: {outcome_summary(resp, 300)}\n"
            + "\n".join(f"  - {p}" for p in problems),
            pytrace=False,
        )
