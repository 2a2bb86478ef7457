#!/usr/bin/env python3
"""Benchmark of bulk export against the release build, on the databases benches/search.py loads
(1,000,000 Observations over 10,000 Patients; run that first, or pass --sqlite/--postgres).

Starts `target/release/carnet` on each database, kicks off `GET /fhir/$export`
(`Prefer: respond-async`), polls the status URL until the manifest arrives, and reports
resources/s from the manifest's counts and the wall time. Writes its section of
docs/benchmarks.md.

    cargo build --release && python3 benches/search.py --no-queries   # once
    python3 benches/export.py
"""

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rest  # noqa: E402  (Server, machine, PG_ROOT, ROOT)

MARK_BEGIN = "<!-- export.py: begin (rewritten by benches/export.py; keep this section) -->"
MARK_END = "<!-- export.py: end -->"


def export(server, types):
    host, port = server.addr.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    query = f"?_type={types}" if types else ""
    started = time.monotonic()
    auth = {"Authorization": f"Bearer {server.token}"}
    conn.request("GET", f"/fhir/$export{query}",
                 headers={"Prefer": "respond-async", "Accept": "application/fhir+json", **auth})
    response = conn.getresponse()
    response.read()
    assert response.status == 202, response.status
    status_path = "/fhir" + response.getheader("Content-Location").split("/fhir", 1)[1]
    while True:
        conn.request("GET", status_path, headers=auth)
        response = conn.getresponse()
        body = response.read()
        if response.status == 200:
            break
        assert response.status == 202, (response.status, body[:300])
        time.sleep(0.2)
    seconds = time.monotonic() - started
    manifest = json.loads(body)
    count = sum(o.get("count", 0) for o in manifest["output"])
    return {"resources": count, "seconds": seconds, "rate": count / seconds, "files": len(manifest["output"])}


def run(name, url, args):
    out_dir = tempfile.mkdtemp(prefix="carnet-export-bench-")
    try:
        server = rest.Server(url, extra_args=["--export-dir", out_dir])
        try:
            result = export(server, args.types)
        finally:
            server.stop()
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out_dir) for f in fs)
        result.update(backend=name, mib=size / 2**20)
        print(json.dumps(result), file=sys.stderr)
        return result
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sqlite", default=os.path.join(rest.ROOT, "target", "bench-search", "search.db"))
    parser.add_argument("--postgres", default=f"{rest.PG_ROOT}/carnet_bench_search")
    parser.add_argument("--types", default="", help="_type of the export (default: every type)")
    parser.add_argument("--out", default=os.path.join(rest.ROOT, "docs", "benchmarks.md"))
    args = parser.parse_args()
    results = []
    if os.path.exists(args.sqlite):
        results.append(run("SQLite", f"sqlite:{args.sqlite}", args))
    results.append(run("PostgreSQL", args.postgres, args))
    m = rest.machine()
    lines = [MARK_BEGIN, "", "## Bulk export", "",
             "`benches/export.py`: a system-level `$export` (`Prefer: respond-async`, then polling the status "
             "URL every 0.2 s) of the databases `benches/search.py` loads, timed from the kick-off to the "
             "manifest; files written to a temporary directory on the same disk.", "",
             f"- machine: {m['cpu']}, {m['cores']} cores; commit {m['commit']}; `_type`: {args.types or 'all'}",
             "", "| backend | resources | seconds | resources/s | NDJSON written |", "| --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['backend']} | {r['resources']:,} | {r['seconds']:.1f} | {r['rate']:,.0f} | {r['mib']:,.0f} MiB in {r['files']} files |")
    lines += ["", MARK_END]
    text = "\n".join(lines)
    rest.write_section(args.out, MARK_BEGIN, MARK_END, text)
    print(text)


if __name__ == "__main__":
    main()
