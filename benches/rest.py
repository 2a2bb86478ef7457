#!/usr/bin/env python3
"""Benchmark of the core REST paths against the release build, on SQLite and PostgreSQL.

Drives `target/release/carnet` with oha (a real HTTP load generator, on the same machine) and
writes docs/benchmarks.md: the machine, the commands, and the figures.

    cargo build --release && cargo install oha --locked   # once
    python3 benches/rest.py [--duration 20] [--connections 16] [--out docs/benchmarks.md]
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "carnet")
PG_ROOT = os.environ.get("CARNET_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432")

WEIGHT = json.dumps({
    "resourceType": "Observation",
    "status": "final",
    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
    "subject": {"reference": "Patient/bench-patient"},
    "effectiveDateTime": "2026-01-02T08:00:00+01:00",
    "valueQuantity": {"value": 72.50, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
})


def patient(i):
    return json.dumps({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": f"{1800000000000 + i}"}],
        "name": [{"family": f"Famille{i}", "given": ["Jeanne", "Marie"]}],
        "gender": "female",
        "birthDate": "1980-05-12",
        "address": [{"line": [f"{i} rue de la Paix"], "city": "Paris", "postalCode": "75002", "country": "FR"}],
    })


class Server:
    def __init__(self, database_url, extra_args=()):
        self.database_url = database_url
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [BINARY, "serve", "--listen", "127.0.0.1:0", "--database-url", database_url, *extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "CARNET_LOG": "warn"},
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("carnet listening on http://"):
            raise SystemExit(f"carnet did not start: {line!r}")
        self.addr = line.rsplit("/", 1)[1]
        host, port = self.addr.split(":")
        self.conn = http.client.HTTPConnection(host, int(port))
        self.token = None
        while self.request("GET", "/health")[0] != 200:
            time.sleep(0.005)
        self.startup_seconds = time.monotonic() - started
        if "--insecure-no-auth" not in extra_args:
            self.token = self.issue_token("system/*.cruds")

    def issue_token(self, scope):
        """An operator's token from `carnet token` (authorization is on by default)."""
        return subprocess.run(
            [BINARY, "token", "--database-url", self.database_url, "--base-url",
             f"http://{self.addr}/fhir", "--scope", scope],
            check=True, capture_output=True, text=True).stdout.strip()

    def request(self, method, path, body=None):
        headers = {"Content-Type": "application/fhir+json"} if body else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def oha(url, duration, connections, method="GET", body=None, token=None):
    cmd = ["oha", "-z", f"{duration}s", "-c", str(connections), "--no-tui", "--output-format", "json"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if method != "GET":
        cmd += ["-m", method, "-T", "application/fhir+json", "-d", body]
    cmd.append(url)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    summary = result["summary"]
    codes = result.get("statusCodeDistribution", {})
    pct = result["latencyPercentiles"]
    return {
        "rps": summary["requestsPerSec"],
        "success": summary["successRate"],
        "p50_ms": pct["p50"] * 1000,
        "p99_ms": pct["p99"] * 1000,
        "codes": codes,
        "command": " ".join("BODY" if body is not None and part == body
                            else "'Authorization: Bearer TOKEN'" if token and part.endswith(token)
                            else part for part in cmd[:-1]),
    }


def psql(sql):
    subprocess.run(["psql", f"{PG_ROOT}/postgres", "-qc", sql], check=True, capture_output=True)


def run_backend(name, database_url, args):
    startups = []
    for _ in range(5):
        server = Server(database_url)
        startups.append(server.startup_seconds)
        server.stop()
    server = Server(database_url)
    idle = server.rss_mib()
    for i in range(args.patients):
        status, _ = server.request("POST", "/fhir/Patient", patient(i))
        assert status == 201, status
    status, body = server.request("PUT", "/fhir/Patient/bench-patient", json.dumps({**json.loads(patient(0)), "id": "bench-patient"}))
    assert status in (200, 201), body
    base = f"http://{server.addr}/fhir"
    read = oha(f"{base}/Patient/bench-patient", args.duration, args.connections, token=server.token)
    create = oha(f"{base}/Observation", args.duration, args.connections, "POST", WEIGHT, token=server.token)
    loaded = server.rss_mib()
    server.stop()
    return {
        "name": name,
        "startup_ms": statistics.median(startups) * 1000,
        "idle_mib": idle,
        "loaded_mib": loaded,
        "read": read,
        "create": create,
    }


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_gib = int(f.readline().split()[1]) / 1024 / 1024
    # oha is only needed by the REST benchmark; the others describe the machine without it.
    oha_version = (subprocess.run(["oha", "--version"], capture_output=True, text=True).stdout.strip()
                   if shutil.which("oha") else "not installed")
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    pg = subprocess.run(["psql", f"{PG_ROOT}/postgres", "-Atc", "show server_version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "mem_gib": mem_gib, "kernel": platform.release(),
        "oha": oha_version, "rustc": rustc, "commit": commit, "postgres": pg,
    }


def write_section(path, begin, end, text):
    """Puts `text` (which starts with `begin` and ends with `end`) in place of the section between
    those marks in `path`, or at its end: each benchmark script owns its marked section."""
    previous = open(path).read() if os.path.exists(path) else ""
    if begin in previous and end in previous:
        previous = previous[:previous.index(begin)] + text + previous[previous.index(end) + len(end):]
    else:
        previous = previous.rstrip() + "\n\n" + text + "\n"
    with open(path, "w") as f:
        f.write(previous)


def check(value, target, higher_is_better=True):
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "**missed**"


def report(results, m, args):
    today = datetime.date.today().isoformat()
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python3 benches/rest.py` (do not edit by hand; re-run it). The load",
        "generator runs on the same machine as the server, sharing its cores.",
        "",
        f"- date: {today}, commit `{m['commit']}`, {m['rustc']}, release profile",
        f"- machine: {m['cores']} cores ({m['cpu']}), {m['mem_gib']:.0f} GiB, Linux {m['kernel']}",
        f"- load generator: {m['oha']}, {args.connections} connections, {args.duration} s per run",
        f"- PostgreSQL {m['postgres']} on the same machine; SQLite bundled, WAL, `synchronous=FULL`",
        f"- data: {args.patients} Patients loaded before the runs; reads hit one Patient by id",
        "",
        "Commands:",
        "",
        "```",
        f"read:   {results[0]['read']['command']} http://ADDR/fhir/Patient/bench-patient",
        f"create: {results[0]['create']['command']} http://ADDR/fhir/Observation",
        "```",
        "",
        "| measure | target | " + " | ".join(r["name"] for r in results) + " |",
        "| --- | --- | " + " | ".join("---" for _ in results) + " |",
    ]
    def row(label, target, fmt, key, higher=True, limit=None):
        cells = []
        for r in results:
            value = key(r)
            verdict = f" ({check(value, limit, higher)})" if limit is not None else ""
            cells.append(fmt.format(value) + verdict)
        lines.append(f"| {label} | {target} | " + " | ".join(cells) + " |")
    row("read by id, requests/s", ">= 25,000", "{:,.0f}", lambda r: r["read"]["rps"], True, 25000)
    row("read by id, p50 ms", "", "{:.2f}", lambda r: r["read"]["p50_ms"])
    row("read by id, p99 ms", "< 2", "{:.2f}", lambda r: r["read"]["p99_ms"], False, 2)
    row("create, requests/s", ">= 1,000", "{:,.0f}", lambda r: r["create"]["rps"], True, 1000)
    row("create, p50 ms", "", "{:.2f}", lambda r: r["create"]["p50_ms"])
    row("create, p99 ms", "", "{:.2f}", lambda r: r["create"]["p99_ms"])
    row("startup to healthy, ms (median of 5)", "< 1,000", "{:.0f}", lambda r: r["startup_ms"], False, 1000)
    row("idle memory (RSS), MiB", "< 50", "{:.1f}", lambda r: r["idle_mib"], False, 50)
    row("memory after the runs (RSS), MiB", "", "{:.1f}", lambda r: r["loaded_mib"])
    lines.append("")
    for r in results:
        lines.append(f"Status codes, {r['name']}: read {r['read']['codes']}, create {r['create']['codes']}.")
    lines.append("")
    if args.notes and os.path.exists(args.notes):
        with open(args.notes) as f:
            lines.append(f.read().rstrip())
            lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    parser.add_argument("--notes", default=os.path.join(ROOT, "benches", "notes.md"),
                        help="analysis appended to the report (what bounds each figure)")
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    if not os.path.exists(BINARY):
        raise SystemExit("build first: cargo build --release")
    if not shutil.which("oha"):
        raise SystemExit("install the load generator first: cargo install oha --locked")
    results = []
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                results.append(run_backend("SQLite", f"sqlite:{tmp}/bench.db", args))
        else:
            name = f"carnet_bench_{uuid.uuid4().hex[:12]}"
            psql(f"CREATE DATABASE {name}")
            try:
                results.append(run_backend("PostgreSQL", f"{PG_ROOT}/{name}", args))
            finally:
                psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        print(json.dumps(results[-1], indent=1), file=sys.stderr)
    text = report(results, machine(), args)
    # The other benchmarks (search.py, transaction.py) own marked sections at the end of the
    # same file: keep them.
    if os.path.exists(args.out):
        previous = open(args.out).read()
        marks = [previous.index(m) for m in ("<!-- search.py: begin", "<!-- transaction.py: begin",
                                             "<!-- export.py: begin", "## carnet import") if m in previous]
        if marks:
            text += "\n\n" + previous[min(marks):].rstrip("\n")
    with open(args.out, "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
