"""Helpers shared by the conformance suites: exact JSON, structural diffs, HTTP, OperationOutcome.

Nothing here knows about a particular test; conftest.py holds the fixtures.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"

# The resource types that the server serves: the server's own list.
SERVED_TYPES = tuple(
    line.strip()
    for line in (REPO / "fhir-profiles" / "served-types.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)

# Timeout (seconds) for one HTTP exchange with the server under test.
HTTP_TIMEOUT = float(os.environ.get("CARNET_HTTP_TIMEOUT", "60"))

INSTANT_RE = re.compile(
    r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$"
)


# --------------------------------------------------------------------------------------------
# Exact JSON: numbers keep their source text, duplicate keys are an error.
# --------------------------------------------------------------------------------------------


class Num:
    """A JSON number kept as its literal text, so that `1.50` and `1.5` differ."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Num) and other.text == self.text

    def __hash__(self) -> int:
        return hash(("Num", self.text))

    def __repr__(self) -> str:
        return self.text


class Lit:
    """Literal JSON text to splice into a document as a value (e.g. `01.5`, which is not JSON)."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return f"Lit({self.text!r})"


class Pairs:
    """A JSON object given as a list of (key, value) pairs, so that a key may repeat."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: Iterable[tuple[str, Any]]):
        self.pairs = list(pairs)

    def __repr__(self) -> str:
        return f"Pairs({self.pairs!r})"


class DuplicateKey(ValueError):
    pass


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(f"duplicate key {key!r} in a JSON object")
        out[key] = value
    return out


def loads_exact(data: bytes | str) -> Any:
    """Parse JSON keeping every number's text (as `Num`) and refusing duplicate keys."""
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    return json.loads(
        data,
        parse_float=Num,
        parse_int=Num,
        parse_constant=lambda name: (_ for _ in ()).throw(ValueError(f"{name} is not JSON")),
        object_pairs_hook=_pairs_hook,
    )


def dumps_exact(value: Any) -> str:
    """Serialise what `loads_exact` returns (plus `Lit` and `Pairs`) back to JSON text."""
    parts: list[str] = []
    _dump(value, parts)
    return "".join(parts)


def _dump(value: Any, out: list[str]) -> None:
    if isinstance(value, (Num, Lit)):
        out.append(value.text)
    elif isinstance(value, Pairs):
        out.append("{")
        for i, (k, v) in enumerate(value.pairs):
            if i:
                out.append(",")
            out.append(json.dumps(k, ensure_ascii=False))
            out.append(":")
            _dump(v, out)
        out.append("}")
    elif isinstance(value, dict):
        _dump(Pairs(value.items()), out)
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _dump(v, out)
        out.append("]")
    elif isinstance(value, bool) or value is None or isinstance(value, (str, int, float)):
        out.append(json.dumps(value, ensure_ascii=False))
    else:
        raise TypeError(f"cannot serialise {type(value).__name__} as JSON")


def show(value: Any, limit: int = 100) -> str:
    """A short JSON rendering of a value for failure messages."""
    try:
        text = dumps_exact(value)
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    if isinstance(value, Num):
        return "number"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def json_diff(sent: Any, got: Any, path: str = "$") -> list[str]:
    """Differences between two exact-JSON values; key order is ignored, array order is not."""
    if _kind(sent) != _kind(got):
        return [f"{path}: sent {_kind(sent)} {show(sent)}, got {_kind(got)} {show(got)}"]
    if isinstance(sent, dict):
        out: list[str] = []
        for key in sent:
            if key not in got:
                out.append(f"{path}.{key}: missing (sent {show(sent[key])})")
            else:
                out.extend(json_diff(sent[key], got[key], f"{path}.{key}"))
        for key in got:
            if key not in sent:
                out.append(f"{path}.{key}: not sent, but got {show(got[key])}")
        return out
    if isinstance(sent, list):
        out = []
        for i, (a, b) in enumerate(zip(sent, got)):
            out.extend(json_diff(a, b, f"{path}[{i}]"))
        if len(sent) != len(got):
            out.append(f"{path}: sent {len(sent)} items, got {len(got)}")
        return out
    if sent != got:
        return [f"{path}: sent {show(sent)}, got {show(got)}"]
    return []


def without_server_meta(resource: dict) -> dict:
    """A copy without meta.versionId / meta.lastUpdated (and without meta if nothing else is left)."""
    out = dict(resource)
    meta = out.get("meta")
    if isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        if meta:
            out["meta"] = meta
        else:
            del out["meta"]
    return out


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


class Fhir:
    """A thin keep-alive HTTP client bound to a FHIR base URL (`http://127.0.0.1:PORT/fhir`)."""

    def __init__(self, base_url: str, token: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def url(self, path: str) -> str:
        if path.startswith("http://") or path.startswith("https://"):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | str | None = None,
        headers: dict | None = None,
        params: dict | None = None,
    ) -> requests.Response:
        hdrs = {"Accept": FHIR_JSON}
        if json_body is not None:
            body = dumps_exact(json_body)
        if body is not None:
            hdrs["Content-Type"] = FHIR_JSON
            if isinstance(body, str):
                body = body.encode("utf-8")
        if headers:
            for key, value in headers.items():
                if value is None:
                    hdrs.pop(key, None)
                else:
                    hdrs[key] = value
        return self.session.request(
            method, self.url(path), data=body, headers=hdrs, params=params, timeout=HTTP_TIMEOUT
        )

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)

    def put(self, path: str, resource: Any, **kw) -> requests.Response:
        return self.request("PUT", path, json_body=resource, **kw)

    def post(self, path: str, resource: Any, **kw) -> requests.Response:
        return self.request("POST", path, json_body=resource, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return self.request("DELETE", path, **kw)

    def close(self) -> None:
        self.session.close()


def bulk_export(fhir: Fhir, public_base: str, kickoff: str = "$export", timeout: float = 120) -> dict:
    """Runs a bulk export to its end and downloads it: `(type, id)` -> the NDJSON line.
    Fails on a resource exported twice. `public_base` is the server's `--base-url`: the
    manifest's links use it, and this client talks to the listening address instead."""
    local = lambda url: url.replace(public_base.rstrip("/"), fhir.base_url)  # noqa: E731
    kick = fhir.get(kickoff, headers={"Prefer": "respond-async"})
    assert kick.status_code == 202, describe(kick)
    status_url = local(kick.headers["Content-Location"])
    deadline = time.monotonic() + timeout
    while True:
        status = fhir.get(status_url)
        if status.status_code == 200:
            break
        assert status.status_code == 202 and time.monotonic() < deadline, describe(status)
        time.sleep(0.2)
    exported = {}
    for output in status.json()["output"]:
        ndjson = fhir.get(local(output["url"]), headers={"Accept": "application/fhir+ndjson"})
        assert ndjson.status_code == 200, describe(ndjson)
        for line in ndjson.text.splitlines():
            resource = json.loads(line)
            key = (resource["resourceType"], resource["id"])
            assert key not in exported, f"{key} exported twice"
            exported[key] = line
    return exported


def describe(resp: requests.Response, limit: int = 600) -> str:
    """`METHOD url -> status` plus the start of the body, for failure messages."""
    text = resp.text if resp.content else "(empty body)"
    if len(text) > limit:
        text = text[:limit] + "..."
    return f"{resp.request.method} {resp.request.url} -> {resp.status_code}: {text}"


def body_json(resp: requests.Response) -> Any:
    """The response body as exact JSON; fails the test readably when it is not JSON."""
    try:
        return loads_exact(resp.content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AssertionError(f"response body is not valid JSON ({exc}): {describe(resp)}") from None


def outcome_summary(resp: requests.Response, limit: int = 300) -> str:
    """One line: the status and the issues of an OperationOutcome (or the raw body)."""
    try:
        body = loads_exact(resp.content)
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        issues = []
        for issue in body.get("issue") or []:
            expr = ",".join(issue.get("expression") or [])
            diag = issue.get("diagnostics", "")
            issues.append(f"[{issue.get('severity')}/{issue.get('code')}] {expr} {diag}".strip())
        text = "; ".join(issues) or "(OperationOutcome without issues)"
    else:
        text = resp.text or "(empty body)"
    if len(text) > limit:
        text = text[:limit] + "..."
    return f"{resp.status_code} {text}"


def error_issues(outcome: Any) -> list[dict]:
    """The issues of an OperationOutcome whose severity is error or fatal."""
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return []
    return [
        i
        for i in outcome.get("issue") or []
        if isinstance(i, dict) and i.get("severity") in ("error", "fatal")
    ]


def expressions(outcome: Any) -> list[str]:
    out: list[str] = []
    if isinstance(outcome, dict):
        for issue in outcome.get("issue") or []:
            if isinstance(issue, dict):
                out.extend(e for e in issue.get("expression") or [] if isinstance(e, str))
    return out


def history_snapshot(fhir: Fhir, path: str) -> tuple[Any, list[str]]:
    """(Bundle.total, the `fullUrl`/versions of the first page) of a history endpoint."""
    resp = fhir.get(path, params={"_count": "1000"})
    assert resp.status_code == 200, f"history needed to prove nothing was stored: {describe(resp)}"
    bundle = body_json(resp)
    assert isinstance(bundle, dict) and bundle.get("resourceType") == "Bundle", (
        f"history is not a Bundle: {describe(resp)}"
    )
    entries = []
    for entry in bundle.get("entry") or []:
        res = entry.get("resource") or {}
        meta = res.get("meta") or {}
        req = entry.get("request") or {}
        entries.append(
            f"{entry.get('fullUrl')}|{res.get('id')}|{meta.get('versionId')}|{req.get('method')}"
        )
    return bundle.get("total"), entries


# --------------------------------------------------------------------------------------------
# A raw HTTP/1.1 exchange, for the oversized body: a server may answer 413 and close the
# connection before reading 40 MiB; `requests` would then only see a broken pipe.
# --------------------------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: dict
    body: bytes
    sent: int  # bytes of the request body actually written before the answer


def raw_request(
    url: str,
    method: str,
    headers: dict,
    body: bytes,
    timeout: float = HTTP_TIMEOUT,
    chunked: bool = False,
) -> RawResponse:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    if chunked:
        head.append("Transfer-Encoding: chunked")
        step = 1 << 20
        body = b"".join(
            f"{len(body[i : i + step]):x}\r\n".encode() + body[i : i + step] + b"\r\n"
            for i in range(0, len(body), step)
        ) + b"0\r\n\r\n"
    else:
        head.append(f"Content-Length: {len(body)}")
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append("Connection: close")
    sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    deadline = time.monotonic() + timeout
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("ascii"))
        view = memoryview(body)
        sent = 0
        sock.setblocking(False)

        response = bytearray()
        while sent < len(body):
            if time.monotonic() > deadline:
                raise TimeoutError("timed out sending the request body")
            readable, writable, _ = select.select([sock], [sock], [], 1.0)
            if readable:
                break  # the server answered (or closed) before taking the whole body
            if writable:
                try:
                    sent += sock.send(view[sent : sent + (1 << 20)])
                except (BrokenPipeError, ConnectionResetError):
                    break
        sock.setblocking(True)
        sock.settimeout(max(1.0, deadline - time.monotonic()))
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            response += chunk
            parsed = _parse_http_response(bytes(response))
            if parsed is not None and parsed[3]:
                break
        parsed = _parse_http_response(bytes(response))
        if parsed is None:
            raise ConnectionError(
                f"no HTTP response after sending {sent} of {len(body)} body bytes "
                f"(got {bytes(response[:200])!r})"
            )
        status, hdrs, rest, _complete = parsed
        return RawResponse(status, hdrs, rest, sent)
    finally:
        sock.close()


def _parse_http_response(data: bytes):
    """(status, headers, body, complete) of a raw HTTP/1.1 response, or None before its head."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    rest = data[end + 4 :]
    if hdrs.get("transfer-encoding", "").lower() == "chunked":
        decoded = bytearray()
        pos = 0
        while True:
            nl = rest.find(b"\r\n", pos)
            if nl < 0:
                return status, hdrs, bytes(decoded), False
            size = int(rest[pos:nl].split(b";")[0] or b"0", 16)
            if size == 0:
                return status, hdrs, bytes(decoded), True
            if len(rest) < nl + 2 + size + 2:
                return status, hdrs, bytes(decoded), False
            decoded += rest[nl + 2 : nl + 2 + size]
            pos = nl + 2 + size + 2
    length = hdrs.get("content-length")
    if length is not None:
        return status, hdrs, rest[: int(length)], len(rest) >= int(length)
    return status, hdrs, rest, False
