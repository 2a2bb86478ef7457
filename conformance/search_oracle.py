"""An independent evaluator of FHIR R4 search, for the differential test.

Nothing here comes from the server: the values a resource is searchable by are obtained by
evaluating each SearchParameter's FHIRPath expression (`fhir-profiles/r4-search-parameters.json`)
with PyPI `fhirpathpy` (R4 model), and the matching rules of https://hl7.org/fhir/R4/search.html
are written out below.

Deliberate choices (also in README.md):

- `X.as(T)` and `(X as T)` are evaluated as `X.ofType(T)`: fhirpathpy (following FHIRPath N1)
  raises on `as` applied to more than one item (`Observation.component.value as Quantity`),
  whereas R4's search expressions mean "the items of type T".
- `resolve() is T` is answered from the reference text (`T/id`, or an absolute URL ending in
  `T/id[/_history/v]`) or else `Reference.type`; the target is never loaded (fhirpathpy has no
  resolve()).
- Dates: a value covers `[low, high)` at its own precision (year, month, day, second, or the
  fraction digits given, truncated at the microsecond); a value without a time zone is UTC (the
  server's documented choice). Period: `[start.low, end.high)`, a missing end is +infinity, a
  missing start -infinity. The prefixes follow R4's table: eq = the search range contains the
  value's range; ne = not eq; gt = value.high > search.high; lt = value.low < search.low;
  ge = gt or eq; le = lt or eq; sa = value.low >= search.high; eb = value.high <= search.low.
  `ap` is not tested (R4 leaves the approximation to the server).
- Quantities follow R4's number examples: the resource's value is the point it states, the
  search value's precision gives its range (`100` is `[99.5, 100.5)`, `100.0` is
  `[99.95, 100.05)`): eq = the point lies in the search range, ne = it does not, gt/lt/ge/le
  compare the point with the search number itself, sa = point >= range.high, eb = point <
  range.low; exact decimal arithmetic. A Range is `[low.value, high.value]` under the date
  table. System and code must be equal when given (no UCUM conversion); `value||code` matches
  code or unit.
- Strings: normalise = NFKD, drop combining marks, lowercase, collapse white space; default is
  starts-with on normalised text, `:contains` is substring of normalised text, `:exact` is
  equality of the raw text. HumanName: family, given, prefix, suffix, text; Address: line, city,
  district, state, postalCode, country, text.
- Token: `code` (any system), `system|code`, `|code` (no system), `system|` (any code);
  Coding, CodeableConcept (each coding), Identifier (system, value), ContactPoint (value only,
  no system), code/string/uri/id primitives (no system), boolean (`true`/`false`). Codes are
  compared case-sensitively. `:not` is the complement over all resources of the type (including
  those without a value). `:text`: starts-with on normalised CodeableConcept.text,
  Coding.display and Identifier.type.text.
- Reference: `Type/id` matches a relative `Type/id` (or absolute URL ending in it, any
  `_history`); `:missing=true` = no value at all.
- uri: exact equality.
- Composite: one combination of component values must match all the components.
"""

from __future__ import annotations

import calendar
import json
import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models as _fhirpath_models

R4_MODEL = _fhirpath_models["r4"]
NEG_INF = float("-inf")
POS_INF = float("inf")

REFERENCE_RE = re.compile(
    r"^(?:(?P<base>.+)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/(?P<ver>[A-Za-z0-9\-.]{1,64}))?$"
)


# --------------------------------------------------------------------------------------------
# The parameter table
# --------------------------------------------------------------------------------------------


@dataclass
class Param:
    base: str
    code: str
    type: str
    expression: str | None
    target: list[str] = field(default_factory=list)
    components: list[dict] = field(default_factory=list)
    compiled: Any = None
    compiled_parts: list[Any] = field(default_factory=list)  # composite: the union's parts
    compiled_components: list[Any] = field(default_factory=list)


def rewrite_expression(expr: str) -> str:
    """`(X as T)` and `X.as(T)` -> `X.ofType(T)`; see the module docstring."""
    out = re.sub(r"\.as\((\w+)\)", r".ofType(\1)", expr)
    prev = None
    while prev != out:
        prev = out
        out = re.sub(r"\(([^()]*?) as (\w+)\)", r"(\1.ofType(\2))", out)
    if " as " in out:
        raise ValueError(f"unhandled 'as' in {expr!r}")
    return out


def _resolve(inputs: list) -> list:
    out = []
    for r in inputs:
        if not isinstance(r, dict):
            continue
        rtype = None
        ref = r.get("reference")
        if isinstance(ref, str):
            m = REFERENCE_RE.match(ref)
            if m:
                rtype = m.group("type")
        if rtype is None and isinstance(r.get("type"), str):
            rtype = r["type"]
        if rtype:
            # a typed node, so that `is T` sees the type (a plain dict would be untyped)
            out.append(ResourceNode.create_node({"resourceType": rtype}, rtype))
    return out


FHIRPATH_OPTIONS = {
    "returnRawData": True,
    "userInvocationTable": {"resolve": {"fn": _resolve, "arity": {0: []}}},
}


def split_union(expr: str) -> list[str]:
    """Top-level `|` parts of an expression."""
    parts, depth, cur = [], 0, ""
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "|" and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def load_params(table: Path, served: Iterable[str]) -> dict[str, dict[str, Param]]:
    """{type: {code: Param}} for the served types, common parameters included."""
    data = json.loads(table.read_text(encoding="utf-8"))
    common = [p for p in data["params"] if p["base"] in ("Resource", "DomainResource")]
    out: dict[str, dict[str, Param]] = {}
    for rtype in served:
        mine = {}
        for p in [p for p in data["params"] if p["base"] == rtype] + common:
            expr = p.get("expression")
            if expr and p["base"] in ("Resource", "DomainResource"):
                expr = re.sub(rf"\b{p['base']}\.", f"{rtype}.", expr)
            param = Param(rtype, p["code"], p["type"], expr, p.get("target") or [], p.get("component") or [])
            if expr:
                if param.type == "composite":
                    param.compiled_parts = [
                        fhirpathpy.compile(rewrite_expression(e), R4_MODEL, FHIRPATH_OPTIONS)
                        for e in split_union(expr)
                    ]
                    param.compiled_components = [
                        fhirpathpy.compile(rewrite_expression(c["expression"]), R4_MODEL, FHIRPATH_OPTIONS)
                        for c in param.components
                    ]
                else:
                    param.compiled = fhirpathpy.compile(rewrite_expression(expr), R4_MODEL, FHIRPATH_OPTIONS)
            mine[p["code"]] = param
        out[rtype] = mine
    return out


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


def normalize(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.lower().split())


DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})(?:T(?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def date_range(text: str) -> tuple[int, int]:
    """[low, high) in microseconds since the epoch, UTC when no zone is given."""
    m = DATE_RE.match(text)
    if not m:
        raise ValueError(f"not a FHIR date/dateTime/instant: {text!r}")
    y = int(m["y"])
    if m["mo"] is None:
        return _us(y, 1, 1), _us(y + 1, 1, 1)
    mo = int(m["mo"])
    if m["d"] is None:
        return _us(y, mo, 1), _us(y + (mo == 12), mo % 12 + 1, 1)
    d = int(m["d"])
    if m["h"] is None:
        low = _us(y, mo, d)
        return low, low + 86_400_000_000
    offset = 0
    tz = m["tz"]
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        offset = sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60) * 1_000_000
    base = _us(y, mo, d) + (int(m["h"]) * 3600 + int(m["mi"]) * 60) * 1_000_000 - offset
    if m["s"] is None:
        return base, base + 60_000_000
    base += int(m["s"]) * 1_000_000
    frac = m["f"]
    if not frac:
        return base, base + 1_000_000
    digits = min(len(frac), 6)
    step = 10 ** (6 - digits)
    low = base + int(frac[:digits]) * step
    return low, low + step


def _us(y: int, mo: int, d: int) -> int:
    return calendar.timegm((y, mo, d, 0, 0, 0)) * 1_000_000


def decimal_range(value: Decimal) -> tuple[Decimal, Decimal]:
    exp = value.as_tuple().exponent
    half = Decimal(5).scaleb(exp - 1)
    return value - half, value + half


@dataclass(frozen=True)
class Tok:
    system: str | None
    code: str


@dataclass(frozen=True)
class Qty:
    low: Any
    high: Any
    system: str | None
    code: str | None
    unit: str | None
    text: str


@dataclass(frozen=True)
class Ref:
    rtype: str | None
    rid: str | None
    url: str | None


@dataclass
class Values:
    """The values one resource has for one parameter."""

    tokens: list[Tok] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # :text (raw)
    strings: list[str] = field(default_factory=list)  # raw
    dates: list[tuple[Any, Any]] = field(default_factory=list)
    quantities: list[Qty] = field(default_factory=list)
    refs: list[Ref] = field(default_factory=list)
    uris: list[str] = field(default_factory=list)
    combos: list[list["Values"]] = field(default_factory=list)  # composite

    def empty(self) -> bool:
        return not (self.tokens or self.strings or self.dates or self.quantities or self.refs or self.uris or self.combos)

    def describe(self) -> str:
        bits = []
        for name in ("tokens", "texts", "strings", "dates", "quantities", "refs", "uris"):
            v = getattr(self, name)
            if v:
                if name == "dates":
                    v = [(_fmt_us(a), _fmt_us(b)) for a, b in v]
                bits.append(f"{name}={v}")
        if self.combos:
            bits.append("combos=[" + "; ".join(" & ".join(c.describe() for c in combo) for combo in self.combos) + "]")
        return " ".join(bits) or "(none)"


def _fmt_us(v: Any) -> str:
    if v in (NEG_INF, POS_INF):
        return str(v)
    import datetime

    return (datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=v)).isoformat() + "Z"


def _node(x: Any) -> tuple[str | None, Any]:
    if hasattr(x, "get_type_info"):
        info = x.get_type_info()
        return (info.name if info else None), x.data
    if isinstance(x, bool):
        return "boolean", x
    return None, x


STRING_TYPES = {"string", "markdown", "code", "id", "uri", "url", "canonical", "oid", "uuid"}


def to_values(ptype: str, items: list) -> Values:
    v = Values()
    for item in items:
        tname, data = _node(item)
        if data is None:
            continue
        if ptype == "token":
            _token(v, tname, data)
        elif ptype == "string":
            _string(v, tname, data)
        elif ptype == "date":
            _date(v, tname, data)
        elif ptype == "quantity":
            _quantity(v, tname, data)
        elif ptype == "reference":
            _reference(v, tname, data)
        elif ptype == "uri":
            if isinstance(data, str):
                v.uris.append(data)
    return v


def _token(v: Values, tname: str | None, data: Any) -> None:
    if tname == "CodeableConcept":
        for c in data.get("coding") or []:
            _token(v, "Coding", c)
        if isinstance(data.get("text"), str):
            v.texts.append(data["text"])
    elif tname == "Coding":
        if isinstance(data.get("code"), str):
            v.tokens.append(Tok(data.get("system"), data["code"]))
        if isinstance(data.get("display"), str):
            v.texts.append(data["display"])
    elif tname == "Identifier":
        if isinstance(data.get("value"), str):
            v.tokens.append(Tok(data.get("system"), data["value"]))
        t = (data.get("type") or {}).get("text")
        if isinstance(t, str):
            v.texts.append(t)
    elif tname == "ContactPoint":
        if isinstance(data.get("value"), str):
            v.tokens.append(Tok(None, data["value"]))
    elif isinstance(data, bool):
        v.tokens.append(Tok(None, "true" if data else "false"))
    elif isinstance(data, str):
        v.tokens.append(Tok(None, data))


def _string(v: Values, tname: str | None, data: Any) -> None:
    if tname == "HumanName":
        parts = [data.get("family"), data.get("text")] + list(data.get("given") or []) + list(
            data.get("prefix") or []
        ) + list(data.get("suffix") or [])
    elif tname == "Address":
        parts = list(data.get("line") or []) + [
            data.get(k) for k in ("city", "district", "state", "postalCode", "country", "text")
        ]
    elif isinstance(data, str):
        parts = [data]
    else:
        parts = []
    v.strings.extend(p for p in parts if isinstance(p, str))


def _date(v: Values, tname: str | None, data: Any) -> None:
    if tname == "Period" or (isinstance(data, dict) and ("start" in data or "end" in data)):
        low = date_range(data["start"])[0] if data.get("start") else NEG_INF
        high = date_range(data["end"])[1] if data.get("end") else POS_INF
        v.dates.append((low, high))
    elif tname == "Timing":
        for e in data.get("event") or []:
            v.dates.append(date_range(e))
    elif isinstance(data, str):
        v.dates.append(date_range(data))


def _quantity(v: Values, tname: str | None, data: Any) -> None:
    if not isinstance(data, dict):
        return
    if tname == "Range" or "low" in data or "high" in data:
        lo = (data.get("low") or {}).get("value")
        hi = (data.get("high") or {}).get("value")
        q = data.get("low") or data.get("high") or {}
        v.quantities.append(
            Qty(
                Decimal(str(lo)) if lo is not None else NEG_INF,
                Decimal(str(hi)) if hi is not None else POS_INF,
                q.get("system"), q.get("code"), q.get("unit"), "",
            )
        )
    elif "value" in data:
        val = data["value"]
        dec = val if isinstance(val, Decimal) else Decimal(str(val))
        lo, hi = decimal_range(dec)
        v.quantities.append(Qty(lo, hi, data.get("system"), data.get("code"), data.get("unit"), str(val)))


def _reference(v: Values, tname: str | None, data: Any) -> None:
    if isinstance(data, dict):
        ref = data.get("reference")
        if not isinstance(ref, str) or ref.startswith("#"):
            return
        m = REFERENCE_RE.match(ref)
        if m:
            v.refs.append(Ref(m.group("type"), m.group("id"), ref if m.group("base") else None))
        else:
            v.refs.append(Ref(data.get("type"), None, ref))
    elif isinstance(data, str):  # canonical / uri
        v.refs.append(Ref(None, None, data))


def extract(param: Param, resource: dict) -> Values:
    if param.type == "composite":
        out = Values()
        for part in param.compiled_parts:
            for item in part(resource):
                combo = [
                    to_values(c["type"], comp(item)) for c, comp in zip(param.components, param.compiled_components)
                ]
                if all(not c.empty() for c in combo):
                    out.combos.append(combo)
        return out
    if param.compiled is None:
        return Values()
    return to_values(param.type, param.compiled(resource))


class Index:
    """Every searchable value of every resource, by type, param and id."""

    def __init__(self, params: dict[str, dict[str, Param]], resources: Iterable[dict]):
        self.params = params
        self.ids: dict[str, list[str]] = {}
        self.resources: dict[tuple[str, str], dict] = {}
        self.values: dict[str, dict[str, dict[str, Values]]] = {}
        for res in resources:
            rtype, rid = res["resourceType"], res["id"]
            self.ids.setdefault(rtype, []).append(rid)
            self.resources[(rtype, rid)] = res
            per = self.values.setdefault(rtype, {})
            for code, param in params[rtype].items():
                if param.type == "special" or (param.expression is None):
                    continue
                per.setdefault(code, {})[rid] = extract(param, res)

    def of(self, rtype: str, code: str, rid: str) -> Values:
        return self.values.get(rtype, {}).get(code, {}).get(rid) or Values()


# --------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def split_prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and (value[2].isdigit() or value[2] in "-+."):
        return value[:2], value[2:]
    return "eq", value


def range_match(prefix: str, rlow: Any, rhigh: Any, slow: Any, shigh: Any) -> bool:
    contains = slow <= rlow and rhigh <= shigh
    if prefix == "eq":
        return contains
    if prefix == "ne":
        return not contains
    if prefix == "gt":
        return rhigh > shigh
    if prefix == "lt":
        return rlow < slow
    if prefix == "ge":
        return rhigh > shigh or contains
    if prefix == "le":
        return rlow < slow or contains
    if prefix == "sa":
        return rlow >= shigh
    if prefix == "eb":
        return rhigh <= slow
    raise ValueError(f"prefix {prefix} is not evaluated by the oracle")


# A small, independent UCUM reduction (the server's is src/fhir/search/ucum.rs): enough for
# the units Synthea writes, so that `gt30|UCUM|pg` compares with a weight in kg as the server
# does (docs/search.md: quantities normalised to UCUM). A unit it does not know gives None,
# and the codes are then compared as text.
UCUM_SYSTEM = "http://unitsofmeasure.org"
_UCUM_PREFIXES = {
    "Y": 24, "Z": 21, "E": 18, "P": 15, "T": 12, "G": 9, "M": 6, "k": 3, "h": 2, "da": 1,
    "d": -1, "c": -2, "m": -3, "u": -6, "n": -9, "p": -12, "f": -15, "a": -18,
}
# atom -> (factor, {base: exponent})
_UCUM_ATOMS = {
    "g": (Decimal(1), {"g": 1}),
    "m": (Decimal(1), {"m": 1}),
    "s": (Decimal(1), {"s": 1}),
    "mol": (Decimal(1), {"mol": 1}),
    "L": (Decimal("0.001"), {"m": 3}),
    "l": (Decimal("0.001"), {"m": 3}),
    "min": (Decimal(60), {"s": 1}),
    "h": (Decimal(3600), {"s": 1}),
    "d": (Decimal(86400), {"s": 1}),
    "%": (Decimal("0.01"), {}),
    "[iU]": (Decimal(1), {"[iU]": 1}),
}
_UCUM_METRIC = {"g", "m", "s", "mol", "L", "l", "[iU]"}
_UCUM_TERM = re.compile(r"^(?P<atom>.*?)(?P<exp>[+-]?\d+)?$")


def _ucum_atom(text: str):
    if text in _UCUM_ATOMS:
        return _UCUM_ATOMS[text]
    for prefix, power in sorted(_UCUM_PREFIXES.items(), key=lambda kv: -len(kv[0])):
        atom = text[len(prefix):]
        if text.startswith(prefix) and atom in _UCUM_METRIC:
            factor, dims = _UCUM_ATOMS[atom]
            return factor * Decimal(10) ** power, dims
    return None


def ucum_canonical(code: str):
    """(factor, dimensions) of a UCUM code, or None when it uses what this reduction lacks."""
    code = re.sub(r"\{[^}]*\}", "", code)
    if not code or "(" in code or ")" in code:
        return (Decimal(1), {}) if not code else None
    factor, dims = Decimal(1), {}
    sign = 1
    for i, term in enumerate(re.split(r"([./])", code)):
        if term in (".", "/"):
            sign = -1 if term == "/" else 1
            continue
        if term == "":
            if i == 0:
                continue  # a leading `/`
            return None
        m = re.fullmatch(r"10[*^]([+-]?\d+)", term)
        if m:
            f, d, exp = Decimal(10) ** int(m.group(1)), {}, 1
        elif term.isdigit():
            f, d, exp = Decimal(term), {}, 1
        else:
            t = _UCUM_TERM.match(term)
            atom = _ucum_atom(t.group("atom"))
            if atom is None:
                return None
            f, d = atom
            exp = int(t.group("exp")) if t.group("exp") else 1
        factor *= f ** (sign * exp)
        for base, e in d.items():
            dims[base] = dims.get(base, 0) + sign * exp * e
    return factor, {b: e for b, e in dims.items() if e}


def point_match(prefix: str, value: Decimal, number: Decimal, slow: Decimal, shigh: Decimal) -> bool:
    """R4's number/quantity examples: `100` is [99.5, 100.5), `gt100` is "greater than 100"."""
    if prefix == "eq":
        return slow <= value < shigh
    if prefix == "ne":
        return not (slow <= value < shigh)
    if prefix == "gt":
        return value > number
    if prefix == "lt":
        return value < number
    if prefix == "ge":
        return value >= number
    if prefix == "le":
        return value <= number
    if prefix == "sa":
        return value >= shigh
    if prefix == "eb":
        return value < slow
    raise ValueError(f"prefix {prefix} is not evaluated by the oracle")


def split_escaped(text: str, sep: str) -> list[str]:
    """Split on `sep` not preceded by a backslash; unescape `\\,` `\\$` `\\|` `\\\\`."""
    parts, cur, i = [], "", 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur += ch + text[i + 1]
            i += 2
            continue
        if ch == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    parts.append(cur)
    return parts


def unescape(text: str) -> str:
    return re.sub(r"\\([\\,$|])", r"\1", text)


def match_value(ptype: str, modifier: str | None, values: Values, query: str, components: list[dict] | None = None) -> bool:
    """Does one resource's value set match one (OR-free) search value?"""
    if ptype == "token":
        if modifier == "text":
            q = normalize(unescape(query))
            return any(normalize(t).startswith(q) for t in values.texts)
        parts = split_escaped(query, "|")
        if len(parts) == 1:
            code = unescape(parts[0])
            return any(t.code == code for t in values.tokens)
        system, code = unescape(parts[0]), unescape("|".join(parts[1:]))
        if system == "":
            return any(t.system is None and t.code == code for t in values.tokens)
        if code == "":
            return any(t.system == system for t in values.tokens)
        return any(t.system == system and t.code == code for t in values.tokens)
    if ptype == "string":
        q = unescape(query)
        if modifier == "exact":
            return any(s == q for s in values.strings)
        nq = normalize(q)
        if modifier == "contains":
            return any(nq in normalize(s) for s in values.strings)
        return any(normalize(s).startswith(nq) for s in values.strings)
    if ptype == "date":
        prefix, text = split_prefix(query)
        slow, shigh = date_range(text)
        return any(range_match(prefix, lo, hi, slow, shigh) for lo, hi in values.dates)
    if ptype == "quantity":
        prefix, text = split_prefix(query)
        parts = split_escaped(text, "|")
        number = Decimal(parts[0])
        system = unescape(parts[1]) if len(parts) > 1 else ""
        code = unescape(parts[2]) if len(parts) > 2 else ""
        slow, shigh = decimal_range(number)
        wanted = ucum_canonical(code) if code and system == UCUM_SYSTEM else None
        for q in values.quantities:
            if system and q.system != system:
                continue
            scale = Decimal(1)
            if code and not (q.code == code or (not system and q.unit == code)):
                # Another UCUM code of the same dimension (not a dimensionless one) converts.
                held = ucum_canonical(q.code) if q.code and wanted else None
                if not (held and held[1] and held[1] == wanted[1]):
                    continue
                scale = held[0] / wanted[0]
            if q.text:  # a value: compared as the point it states (R4's number examples)
                if point_match(prefix, Decimal(q.text) * scale, number, slow, shigh):
                    return True
                continue
            # A Range: only in the unit asked for.
            if scale == 1 and range_match(prefix, q.low, q.high, slow, shigh):
                return True
        return False
    if ptype == "reference":
        m = REFERENCE_RE.match(query)
        if m:
            return any(r.rtype == m.group("type") and r.rid == m.group("id") for r in values.refs)
        return any(r.url == query for r in values.refs)
    if ptype == "uri":
        return any(u == query for u in values.uris)
    if ptype == "composite":
        assert components is not None
        qparts = split_escaped(query, "$")
        if len(qparts) != len(components):
            raise ValueError(f"composite value {query!r} has {len(qparts)} parts, want {len(components)}")
        return any(
            all(match_value(c["type"], None, cv, qp) for c, cv, qp in zip(components, combo, qparts))
            for combo in values.combos
        )
    raise ValueError(f"parameter type {ptype} is not evaluated by the oracle")


def evaluate_clause(index: Index, rtype: str, name: str, raw: str) -> set[str]:
    """The ids of `rtype` that one `name=raw` clause selects (OR over comma-separated values)."""
    all_ids = set(index.ids.get(rtype, []))
    if name.startswith("_has:"):
        # _has:Target:refparam:param=value
        _, target, refparam, rest = name.split(":", 3)
        hits = evaluate_clause(index, target, rest, raw)
        out = set()
        for tid in hits:
            for r in index.of(target, refparam, tid).refs:
                if r.rtype == rtype and r.rid in all_ids:
                    out.add(r.rid)
        return out
    if "." in name:
        # chain: refparam[:Type].param
        head, tail = name.split(".", 1)
        refparam, _, ttype = head.partition(":")
        param = index.params[rtype][refparam]
        targets = [ttype] if ttype else list(param.target)
        out = set()
        for t in targets:
            # A target type without the chained parameter (Group has no `family`) adds nothing.
            if t not in index.params or tail.split(".", 1)[0].split(":", 1)[0] not in index.params[t]:
                continue
            matched = evaluate_clause(index, t, tail, raw)
            for rid in all_ids:
                if any(r.rtype == t and r.rid in matched for r in index.of(rtype, refparam, rid).refs):
                    out.add(rid)
        return out
    code, _, modifier = name.partition(":")
    if code == "_id":
        wanted = set(split_escaped(raw, ","))
        return all_ids & wanted
    param = index.params[rtype][code]
    if modifier == "missing":
        want_missing = raw == "true"
        return {rid for rid in all_ids if index.of(rtype, code, rid).empty() == want_missing}
    values = [v for v in split_escaped(raw, ",")]
    if modifier == "not":
        matched = {
            rid for rid in all_ids if any(match_value(param.type, None, index.of(rtype, code, rid), v) for v in values)
        }
        return all_ids - matched
    if param.type == "reference" and modifier and modifier[0].isupper():
        values = [v if "/" in v else f"{modifier}/{v}" for v in values]
        modifier = None
    return {
        rid
        for rid in all_ids
        if any(
            match_value(param.type, modifier or None, index.of(rtype, code, rid), v, param.components)
            for v in values
        )
    }


def evaluate_query(index: Index, rtype: str, clauses: list[tuple[str, str]]) -> set[str]:
    result = set(index.ids.get(rtype, []))
    for name, raw in clauses:
        if name.startswith("_sort") or name == "_count":
            continue
        result &= evaluate_clause(index, rtype, name, raw)
    return result
