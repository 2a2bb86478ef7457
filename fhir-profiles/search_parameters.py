#!/usr/bin/env python3
"""Writes fhir-profiles/r4-search-parameters.json from HL7's R4 SearchParameter definitions.

Usage: python3 fhir-profiles/search_parameters.py PACKAGE_DIR [--constructs]

PACKAGE_DIR is the unpacked npm package hl7.fhir.r4.examples@4.0.1 (its `package` folder).
Python 3.11+, standard library only. See fhir-profiles/README.md ("Search parameters").

For every non-experimental SearchParameter whose `base` names a served type (from
served-types.txt) or `Resource`/`DomainResource`, one entry per served base type, with the
FHIRPath expression restricted to that type. `--constructs` prints the distinct FHIRPath
constructs the kept expressions use (the subset src/fhir/search/fhirpath.rs must implement).
"""

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "r4-search-parameters.json"
GENERIC_BASES = ("Resource", "DomainResource")


def served_types():
    lines = (HERE / "served-types.txt").read_text().splitlines()
    return [l.strip() for l in lines if l.strip() and not l.strip().startswith("#")]


def split_union(expression):
    """Splits on `|` outside parentheses and string literals."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, c in enumerate(expression):
        if c == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


ROOT = re.compile(r"^\(*([A-Za-z][A-Za-z0-9]*)")


def restrict(expression, base, all_types):
    """The union parts of `expression` that apply to `base`: those rooted at it, or generic."""
    kept = []
    for part in split_union(expression):
        m = ROOT.match(part)
        root = m.group(1) if m else None
        if root == base or root in GENERIC_BASES or root not in all_types:
            kept.append(part)
    return " | ".join(kept)


def constructs(expression):
    """A coarse signature of the FHIRPath constructs an expression uses."""
    found = set()
    if "|" in expression:
        found.add("union |")
    for m in re.finditer(r"\.([a-zA-Z]+)\(", expression):
        found.add(f".{m.group(1)}()")
    for m in re.finditer(r"\bresolve\(\) is\b", expression):
        found.add("resolve() is T")
    if re.search(r"\bwhere\(\w+\s*=\s*'", expression):
        found.add("where(field='literal')")
    if re.search(r"\)?\s+as\s+[A-Za-z]", expression):
        found.add("X as T")
    for op in (" and ", "!=", " or ", "exists()"):
        if op in expression:
            found.add(op.strip())
    if not expression:
        found.add("(no expression)")
    return found


def fix_crossed_components(url, comps, by_url):
    """R4 errata: DocumentReference-relationship pairs the `relatesto` definition (a reference)
    with the expression `code` and `relation` (a token) with `target`. When each component's
    expression is the last step of the *other* definition's expression, the definitions are
    swapped back, and the correction is printed."""
    def fits(comp, definition):
        expression = by_url[definition].get("expression", "")
        return expression.endswith("." + comp["expression"])
    if len(comps) == 2 and not any(fits(c, c["definition"]) for c in comps):
        a, b = comps
        if fits(a, b["definition"]) and fits(b, a["definition"]):
            print(f"note: {url}: component definitions crossed in R4, swapped", file=sys.stderr)
            for c, d in ((a, b["definition"]), (b, a["definition"])):
                c.update(code=by_url[d]["code"], type=by_url[d]["type"], definition=d)
    return comps


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    package = Path(argv[1])
    served = served_types()
    params = []
    by_url = {}
    all_types = set()
    for f in sorted(package.glob("StructureDefinition-*.json")):
        sd = json.loads(f.read_text())
        if sd.get("kind") == "resource" and sd.get("derivation") == "specialization":
            all_types.add(sd["type"])
    for f in sorted(package.glob("SearchParameter-*.json")):
        sp = json.loads(f.read_text())
        if sp.get("resourceType") != "SearchParameter":
            continue
        by_url[sp["url"]] = sp
        params.append(sp)
    if len(params) < 1000 or len(all_types) < 140:
        sys.exit(f"{package} does not look like hl7.fhir.r4.examples@4.0.1")

    entries = []
    skipped_experimental = 0
    for sp in params:
        bases = [b for b in sp.get("base", []) if b in served or b in GENERIC_BASES]
        if not bases:
            continue
        if sp.get("experimental"):
            # The package's examples and extension-based parameters (example-extension,
            # patient-extensions-*...): not part of the core specification.
            skipped_experimental += 1
            continue
        for base in bases:
            entry = {"base": base, "code": sp["code"], "type": sp["type"], "url": sp["url"]}
            expression = sp.get("expression")
            if expression:
                entry["expression"] = restrict(expression, base, all_types)
            targets = [t for t in sp.get("target", [])]
            if targets:
                entry["target"] = sorted(targets)
            if sp.get("component"):
                comps = []
                for c in sp["component"]:
                    d = by_url.get(c["definition"])
                    if d is None:
                        sys.exit(f"{sp['url']}: unknown component {c['definition']}")
                    comps.append({"code": d["code"], "type": d["type"],
                                  "definition": c["definition"], "expression": c["expression"]})
                entry["component"] = fix_crossed_components(sp["url"], comps, by_url)
            for key in ("modifier", "comparator"):
                if sp.get(key):
                    entry[key] = list(sp[key])
            for key in ("multipleOr", "multipleAnd"):
                if key in sp:
                    entry[key] = sp[key]
            entries.append(entry)

    entries.sort(key=lambda e: (e["base"], e["code"]))
    seen = set()
    for e in entries:
        if (e["base"], e["code"]) in seen:
            sys.exit(f"duplicate parameter {e['base']} {e['code']}")
        seen.add((e["base"], e["code"]))

    if "--constructs" in argv:
        counts = {}
        for e in entries:
            texts = [e.get("expression", "")] + [c["expression"] for c in e.get("component", [])]
            for t in texts:
                for c in constructs(t):
                    counts.setdefault(c, []).append(f"{e['base']}.{e['code']}")
        for c in sorted(counts):
            print(f"{c:28} {len(counts[c]):4}  e.g. {', '.join(counts[c][:4])}")
        return

    lines = [json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
             for e in entries]
    OUT.write_text('{"fhirVersion":"4.0.1","params":[\n' + ",\n".join(lines) + "\n]}\n")
    kinds = {}
    for e in entries:
        kinds[e["type"]] = kinds.get(e["type"], 0) + 1
    print(f"wrote {OUT.name}: {len(entries)} entries over {len({e['base'] for e in entries})} "
          f"base types ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}); "
          f"skipped {skipped_experimental} experimental definitions")


if __name__ == "__main__":
    main(sys.argv)
