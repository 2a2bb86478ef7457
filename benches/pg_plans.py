#!/usr/bin/env python3
"""The statements behind the searches of issue 14, their PostgreSQL plans and buffer counts.

Runs against a server that is already up and logs its SQL
(`CARNET_LOG=carnet::store::sql=debug,info carnet serve ... 2> LOG`), on a database loaded with
Synthea patients (`carnet import` of `synthea -s 14 -p 100 -r 20250101`, see benches/notes.md).
For each query: the latency of N sequential requests on one keep-alive connection (p50, one
client: noisy on a shared machine, so the 1-minute load average is printed beside it), the
statements the server ran for one request (from its log), and for each statement
`EXPLAIN (ANALYZE, BUFFERS)` with the bound values inlined (a custom plan, which is what the
server gets: its search statements are unnamed, planned for their values). Buffer counts and
rows read do not depend on the load of the machine; timings do.

    python3 benches/pg_plans.py --log LOG --db wt14_bench --base http://127.0.0.1:18414/fhir \
        --patient ID [--runs 20] [--plans] [--only NAME]
"""

import argparse
import ast
import http.client
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.parse


def queries(patient, code, since, population_since):
    return [
        ("date-category", f"Observation?patient={patient}&date=ge{since}&category=vital-signs"),
        ("hot", f"Observation?patient={patient}&code=http://loinc.org|{code}&_sort=-date&_count=20"),
        ("population", f"Observation?code=http://loinc.org|{code}&date=ge{population_since}&_count=20"),
        ("everything", f"Patient/{patient}/$everything"),
    ]


def load_average():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def literal(bind):
    kind, value = re.match(r"(Text|Int|Float)\((.*)\)$", bind).groups()
    if kind == "Text":
        return "'" + ast.literal_eval(value).replace("'", "''") + "'"
    return value


def split_binds(text):
    text = text.strip()[1:-1]
    out, depth, current, quoted, i = [], 0, "", False, 0
    while i < len(text):
        c = text[i]
        if quoted:
            current += c
            if c == "\\":
                current += text[i + 1]
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted, current = True, current + c
        elif c in "()":
            depth += 1 if c == "(" else -1
            current += c
        elif c == "," and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += c
        i += 1
    if current.strip():
        out.append(current.strip())
    return out


def statements(lines):
    for line in lines:
        if "carnet::store::sql] " not in line:
            continue
        body = line.split("carnet::store::sql] ", 1)[1].rstrip("\n")
        sql, binds = body.rsplit(" -- ", 1)
        values = [literal(b) for b in split_binds(binds)]
        yield re.sub(r"\$(\d+)", lambda m: values[int(m.group(1)) - 1], sql)


def explain(db, sql):
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-X", "-q", "-c",
         "EXPLAIN (ANALYZE, BUFFERS) " + sql],
        capture_output=True, text=True)
    return result.stdout + result.stderr


def summary(plan):
    """(shared buffers hit+read of the statement, execution ms)"""
    buffers = 0
    for line in plan.splitlines()[2:]:
        m = re.match(r"\s*Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?", line)
        if m:
            buffers = int(m.group(1) or 0) + int(m.group(2) or 0)
            break
    m = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return buffers, float(m.group(1)) if m else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--base", required=True)
    parser.add_argument("--patient", required=True)
    parser.add_argument("--code", default="29463-7")
    parser.add_argument("--since", default="2015-01-01")
    parser.add_argument("--population-since", default="2020-01-01")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--plans", action="store_true", help="print every plan in full")
    parser.add_argument("--only")
    args = parser.parse_args()
    base = urllib.parse.urlsplit(args.base)
    conn = http.client.HTTPConnection(base.hostname, base.port)
    print("| query | p50 ms (one client) | load | statements | shared buffers per statement | execution ms per statement |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, path in queries(args.patient, args.code, args.since, args.population_since):
        if args.only and name != args.only:
            continue
        url = f"{base.path}/{path}"
        with open(args.log) as f:
            f.seek(0, 2)
            start = f.tell()
        times = []
        for i in range(args.runs + 1):
            t = time.perf_counter()
            # Authorization is on: a token from `carnet token` in CARNET_TOKEN.
            conn.request("GET", url, headers={"Authorization": f"Bearer {os.environ.get('CARNET_TOKEN', '')}"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                sys.exit(f"{name}: HTTP {response.status}")
            if i > 0:
                times.append((time.perf_counter() - t) * 1000)
            if i == 0:
                time.sleep(0.2)
                with open(args.log) as f:
                    f.seek(start)
                    first = list(statements(f.readlines()))
        plans = [explain(args.db, sql) for sql in first]
        sums = [summary(p) for p in plans]
        print(f"| {name} | {statistics.median(times):.2f} | {load_average()} | {len(first)} | "
              f"{', '.join(str(b) for b, _ in sums)} | "
              f"{', '.join(f'{t:.2f}' if t is not None else '?' for _, t in sums)} |")
        if args.plans:
            for sql, plan in zip(first, plans):
                print(f"\n```\n{sql[:600]}{' ...' if len(sql) > 600 else ''}\n{plan}```\n")


if __name__ == "__main__":
    main()
