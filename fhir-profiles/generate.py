#!/usr/bin/env python3
"""Generate fhir-profiles/r4-definitions.json from HL7's R4 (4.0.1) package.

Usage:
    npm pack hl7.fhir.r4.examples@4.0.1 && tar xzf hl7.fhir.r4.examples-4.0.1.tgz
    python3 fhir-profiles/generate.py package [output.json]

The input is the unpacked npm package directory; the output defaults to
r4-definitions.json next to this script. The compact form is described in
fhir-profiles/README.md; src/fhir/definitions.rs is its only reader.

Standard library only, deterministic output (sorted keys), and it fails loudly
when the package does not look the way the Rust side expects rather than
writing definitions that would silently validate less.
"""

import glob
import json
import os
import re
import sys

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"

# Constraint profiles on Quantity that elements reference through `type.profile`;
# the validator treats them as their own types whose wire name is "Quantity".
QUANTITY_PROFILES = {"SimpleQuantity", "MoneyQuantity"}

# Types whose children are written inline in the owning structure's snapshot.
INLINE_TYPES = {"BackboneElement", "Element"}

# Types of elements that can carry a required binding the validator checks.
CODED_TYPES = {"code", "Coding", "CodeableConcept"}


class GenerationError(Exception):
    pass


def load_all(package, prefix):
    """Every `<prefix>-*.json` resource in the package."""
    out = []
    for path in sorted(glob.glob(os.path.join(package, prefix + "-*.json"))):
        with open(path, encoding="utf-8") as f:
            out.append(json.load(f))
    return out


def max_value(text):
    """Snapshot `max` ("1", "*", "0") as a number, or "*" for unbounded."""
    if text == "*":
        return "*"
    return int(text)


def type_code(sd, element, t):
    """The FHIR type name of one `ElementDefinition.type` entry.

    R4 snapshots type `id`, `extension.url` and primitive values as FHIRPath
    system types; the real FHIR type sits in an extension. `Resource.id` is
    declared `id` in the specification, whatever the extension says."""
    code = t["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        fhir_type = [
            x.get("valueUrl") or x.get("valueUri")
            for x in t.get("extension", [])
            if x.get("url") == FHIR_TYPE_EXT
        ]
        if not fhir_type:
            raise GenerationError(f"{element['path']}: system type {code} without fhir-type")
        code = fhir_type[0]
        if sd["kind"] == "resource" and element["path"].count(".") == 1 and element["path"].endswith(".id"):
            code = "id"
    if code == "Quantity":
        for profile in t.get("profile", []):
            name = profile[len(SD_PREFIX):] if profile.startswith(SD_PREFIX) else None
            if name in QUANTITY_PROFILES:
                return name
    return code


def compact_type(sd):
    """One StructureDefinition snapshot as {kind, elements{relative path: ...}}."""
    root = sd["type"]
    elements = {}
    for element in sd["snapshot"]["element"]:
        path = element["path"]
        if "sliceName" in element:
            raise GenerationError(f"{sd['url']}: sliced element {path} is not supported")
        if path == root:
            continue
        if not path.startswith(root + "."):
            raise GenerationError(f"{sd['url']}: element {path} outside {root}")
        rel = path[len(root) + 1:]
        out = {"min": element["min"], "max": max_value(element["max"])}
        if element.get("isSummary"):
            out["summary"] = True
        if "contentReference" in element:
            target = element["contentReference"]
            if not target.startswith("#" + root + "."):
                raise GenerationError(f"{path}: contentReference {target} leaves {root}")
            out["ref"] = target[len(root) + 2:]
        else:
            codes = []
            for t in element.get("type", []):
                code = type_code(sd, element, t)
                if code not in codes:
                    codes.append(code)
            if not codes:
                raise GenerationError(f"{path}: no type and no contentReference")
            out["type"] = codes
            binding = element.get("binding") or {}
            if binding.get("strength") == "required" and CODED_TYPES.intersection(codes):
                vs = binding.get("valueSet")
                if vs:
                    out["vs"] = vs.split("|")[0]
        elements[rel] = out
    check_structure(root, elements)
    result = {"kind": sd["kind"], "elements": elements}
    if sd.get("derivation") == "constraint":
        result["base"] = sd["type"]
    return result


def check_structure(root, elements):
    """Inline elements must have children; references must point at elements."""
    for rel, e in elements.items():
        if "ref" in e:
            if e["ref"] not in elements:
                raise GenerationError(f"{root}.{rel}: contentReference to unknown {e['ref']}")
            continue
        if INLINE_TYPES.intersection(e["type"]):
            if len(e["type"]) != 1:
                raise GenerationError(f"{root}.{rel}: inline type mixed with others")
            if not any(k.startswith(rel + ".") for k in elements):
                raise GenerationError(f"{root}.{rel}: {e['type'][0]} without children")


# ---------------------------------------------------------------- value sets


class CodeSystemIndex:
    """Codes and hierarchy of one complete CodeSystem."""

    def __init__(self, cs):
        self.url = cs["url"]
        self.complete = cs.get("content") == "complete"
        self.codes = []
        self.children = {}
        self._walk(cs.get("concept", []), None)
        for concept_code, parents in self._property_parents(cs).items():
            for parent in parents:
                self.children.setdefault(parent, []).append(concept_code)

    def _walk(self, concepts, parent):
        for c in concepts:
            self.codes.append(c["code"])
            if parent is not None:
                self.children.setdefault(parent, []).append(c["code"])
            self._walk(c.get("concept", []), c["code"])

    @staticmethod
    def _property_parents(cs):
        """Hierarchy declared through `parent`/`subsumedBy` properties."""
        parents = {}

        def walk(concepts):
            for c in concepts:
                for p in c.get("property", []):
                    if p.get("code") in ("parent", "subsumedBy") and "valueCode" in p:
                        parents.setdefault(c["code"], []).append(p["valueCode"])
                walk(c.get("concept", []))

        walk(cs.get("concept", []))
        return parents

    def descendants(self, code):
        out, stack, seen = [], [code], {code}
        while stack:
            for child in self.children.get(stack.pop(), []):
                if child not in seen:
                    seen.add(child)
                    out.append(child)
                    stack.append(child)
        return out


class Expander:
    """Expands value sets whose content is fully known from the package.

    `expand` returns {system: set(codes)} or None when the value set depends on
    an external terminology (UCUM, BCP-47, BCP-13, ISO 4217, LOINC...) or on a
    filter this script does not evaluate; the validator skips such bindings."""

    def __init__(self, valuesets, codesystems):
        self.valuesets = {vs["url"]: vs for vs in valuesets}
        self.codesystems = {cs["url"]: CodeSystemIndex(cs) for cs in codesystems}
        self.cache = {}
        self.reasons = {}

    def expand(self, url, stack=()):
        if url in self.cache:
            return self.cache[url]
        if url in stack:
            raise GenerationError(f"value set import cycle through {url}")
        vs = self.valuesets.get(url)
        if vs is None:
            self.reasons[url] = "not in the package"
            result = None
        else:
            result = self._compose(url, vs.get("compose", {}), stack + (url,))
        self.cache[url] = result
        return result

    def _compose(self, url, compose, stack):
        included = {}
        for inc in compose.get("include", []):
            part = self._part(url, inc, stack)
            if part is None:
                return None
            for system, codes in part.items():
                included.setdefault(system, set()).update(codes)
        for exc in compose.get("exclude", []):
            part = self._part(url, exc, stack)
            if part is None:
                self.reasons.setdefault(url, "exclude cannot be evaluated")
                return None
            for system, codes in part.items():
                if system in included:
                    included[system] -= codes
        if not any(included.values()):
            self.reasons.setdefault(url, "empty expansion")
            return None
        return included

    def _part(self, url, inc, stack):
        result = None
        system = inc.get("system")
        if system is not None:
            codes = self._system_codes(url, system, inc)
            if codes is None:
                return None
            result = {system: codes}
        for imported in inc.get("valueSet", []):
            sub = self.expand(imported.split("|")[0], stack)
            if sub is None:
                self.reasons.setdefault(url, f"imports {imported}, which cannot be expanded")
                return None
            if result is None:
                result = {s: set(c) for s, c in sub.items()}
            else:  # system and valueSet together: intersection
                result = {s: c & sub.get(s, set()) for s, c in result.items()}
        if result is None:
            self.reasons.setdefault(url, "include without system or valueSet")
        return result

    def _system_codes(self, url, system, inc):
        if "concept" in inc:
            return {c["code"] for c in inc["concept"]}
        cs = self.codesystems.get(system)
        if cs is None or not cs.complete:
            self.reasons.setdefault(url, f"code system {system} is not in the package in full")
            return None
        codes = set(cs.codes)
        for f in inc.get("filter", []):
            op, prop, value = f.get("op"), f.get("property"), f.get("value")
            if prop != "concept":
                self.reasons.setdefault(url, f"filter on property {prop}")
                return None
            if op == "is-a":
                codes &= {value, *cs.descendants(value)}
            elif op == "descendent-of":
                codes &= set(cs.descendants(value))
            elif op == "is-not-a":
                codes -= {value, *cs.descendants(value)}
            elif op == "=":
                codes &= {value}
            elif op == "in":
                codes &= set(value.split(","))
            else:
                self.reasons.setdefault(url, f"filter op {op}")
                return None
        return codes


# --------------------------------------------------------------- compartment


def split_union(expression):
    """Split a FHIRPath expression on top-level `|`."""
    parts, depth, current = [], 0, []
    for ch in expression:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "|" and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


WHERE_PATIENT = re.compile(r"\.where\(resolve\(\) is Patient\)$")
AS_TYPE = re.compile(r"^(.*?)(?:\.as\((\w+)\)| as (\w+)|\.ofType\((\w+)\))$")


def simple_path(resource_type, part):
    """`Observation.subject.where(resolve() is Patient)` -> `subject`;
    `(X.medication as Reference)` -> `medicationReference`; None if not simple."""
    while part.startswith("(") and part.endswith(")"):
        part = part[1:-1].strip()
    part = WHERE_PATIENT.sub("", part)
    suffix = ""
    m = AS_TYPE.match(part)
    if m:
        part = m.group(1)
        suffix = next(g for g in m.groups()[1:] if g)
        if suffix != "Reference":
            return None
    if not part.startswith(resource_type + "."):
        return None
    rel = part[len(resource_type) + 1:]
    if not re.fullmatch(r"[A-Za-z]+(\.[A-Za-z]+)*", rel):
        return None
    return rel + suffix


def reference_path_ok(types, resource_type, rel):
    """True if `rel` (JSON key path) leads to a Reference element."""
    elements = types[resource_type]["elements"]
    prefix = ""
    segments = rel.split(".")
    for i, segment in enumerate(segments):
        candidate = prefix + segment
        element = elements.get(candidate)
        if element is None and segment.endswith("Reference"):
            candidate = prefix + segment[: -len("Reference")] + "[x]"
            element = elements.get(candidate)
            if element is not None and "Reference" not in element.get("type", []):
                return False
        if element is None:
            return False
        while "ref" in element:
            candidate = element["ref"]
            element = elements[candidate]
        if i == len(segments) - 1:
            return "Reference" in element.get("type", [])
        prefix = candidate + "."
    return False


def patient_compartment(package, searchparams, types):
    with open(os.path.join(package, "CompartmentDefinition-patient.json"), encoding="utf-8") as f:
        compartment = json.load(f)
    by_base = {}
    for sp in searchparams:
        for base in sp.get("base", []):
            by_base[(base, sp["code"])] = sp
    out = {}
    for entry in compartment["resource"]:
        rtype = entry["code"]
        paths = set()
        for param in entry.get("param", []):
            sp = by_base.get((rtype, param))
            if sp is None or not sp.get("expression"):
                raise GenerationError(f"compartment param {rtype}.{param} has no search parameter")
            for part in split_union(sp["expression"]):
                rel = simple_path(rtype, part)
                if rel is None:
                    continue
                if not reference_path_ok(types, rtype, rel):
                    raise GenerationError(f"compartment path {rtype}.{rel} is not a Reference")
                paths.add(rel)
        if rtype == "Patient":
            paths.add("link.other")
        if paths:
            out[rtype] = sorted(paths)
    return out


# ---------------------------------------------------------------------- main


def select_structures(structures):
    """Concrete resources, complex datatypes and the Quantity profiles."""
    selected, primitives = {}, []
    for sd in structures:
        kind, derivation = sd.get("kind"), sd.get("derivation")
        if kind == "primitive-type":
            primitives.append(sd["type"])
            continue
        if kind not in ("resource", "complex-type") or sd.get("abstract"):
            continue
        if derivation == "specialization":
            name = sd["type"]
        elif derivation == "constraint" and sd["name"] in QUANTITY_PROFILES:
            name = sd["name"]
        else:
            continue
        if "snapshot" not in sd:
            raise GenerationError(f"{sd['url']} has no snapshot")
        if name in selected:
            raise GenerationError(f"two definitions for {name}")
        selected[name] = sd
    return selected, sorted(primitives)


def generate(package):
    structures = load_all(package, "StructureDefinition")
    selected, primitives = select_structures(structures)
    types = {name: compact_type(sd) for name, sd in selected.items()}

    known = set(types) | set(primitives) | INLINE_TYPES | {"Resource"}
    for name, t in types.items():
        for rel, e in t["elements"].items():
            for code in e.get("type", []):
                if code not in known:
                    raise GenerationError(f"{name}.{rel}: unknown type {code}")

    expander = Expander(load_all(package, "ValueSet"), load_all(package, "CodeSystem"))
    bound = sorted({e["vs"] for t in types.values() for e in t["elements"].values() if "vs" in e})
    valuesets, skipped = {}, {}
    for url in bound:
        expansion = expander.expand(url)
        if expansion is None:
            skipped[url] = expander.reasons.get(url, "cannot be expanded")
        else:
            valuesets[url] = {s: sorted(c) for s, c in expansion.items() if c}

    compartments = {"patient": patient_compartment(package, load_all(package, "SearchParameter"), types)}
    resources = sorted(n for n, t in types.items() if t["kind"] == "resource")
    return {
        "fhirVersion": "4.0.1",
        "primitives": primitives,
        "types": types,
        "valuesets": valuesets,
        "compartments": compartments,
    }, resources, skipped


def dump(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def write(definitions, output):
    """Minified JSON, but one line per type and per value set so that a
    regeneration shows up in `git diff` as the types that changed."""
    lines = ["{"]
    sections = sorted(definitions)
    for i, key in enumerate(sections):
        value = definitions[key]
        comma = "," if i < len(sections) - 1 else ""
        if key in ("types", "valuesets") and value:
            lines.append(f"{dump(key)}:{{")
            names = sorted(value)
            for j, name in enumerate(names):
                inner_comma = "," if j < len(names) - 1 else ""
                lines.append(f"{dump(name)}:{dump(value[name])}{inner_comma}")
            lines.append("}" + comma)
        else:
            lines.append(f"{dump(key)}:{dump(value)}{comma}")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # never write something the Rust side cannot parse
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)
    return len(text.encode("utf-8"))


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    package = argv[1]
    if not os.path.exists(os.path.join(package, "StructureDefinition-Patient.json")):
        print(
            f"error: {package} does not look like the unpacked hl7.fhir.r4.examples package "
            "(no StructureDefinition-Patient.json); run `npm pack hl7.fhir.r4.examples@4.0.1` "
            "and untar it first",
            file=sys.stderr,
        )
        return 2
    output = argv[2] if len(argv) == 3 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "r4-definitions.json")
    try:
        definitions, resources, skipped = generate(package)
    except GenerationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    size = write(definitions, output)
    types = definitions["types"]
    print(
        f"wrote {output}: {size} bytes, {len(resources)} resource types, "
        f"{len(types) - len(resources)} complex types, {len(definitions['valuesets'])} value sets, "
        f"{len(definitions['compartments']['patient'])} compartment entries"
    )
    for url, reason in sorted(skipped.items()):
        print(f"  not expanded: {url} ({reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
