#!/usr/bin/env python3
"""Peak resident memory of a carnet server under concurrent searches (issue 14).

Starts `BINARY serve` on DATABASE (an SQLite file or a PostgreSQL URL already loaded, e.g. by
`carnet import` of `synthea -s 14 -p 100 -r 20250101`), then runs CLIENTS threads, each on its
own keep-alive connection, for SECONDS: the searches of benches/pg_plans.py and
`$everything` over every patient of the database, in turn. Prints the server's idle RSS, its
peak (VmHWM), requests/s and the server's CPU time per request (user + system, from
/proc: less sensitive to the machine's load than requests/s), with the 1-minute load average. Extra arguments after `--` go
to `carnet serve` (e.g. `-- --sqlite-cache-size 512`).

    python3 benches/memory.py BINARY DATABASE [--clients 16] [--seconds 60] [-- ARGS...]
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return None


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("database")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.serve_args = extra
    server = subprocess.Popen(
        [args.binary, "serve", "--database-url", args.database, "--listen", "127.0.0.1:0",
         *args.serve_args],
        stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        base = line.strip().rsplit(" ", 1)[1]
        url = urllib.parse.urlsplit(base)
        token = subprocess.run(
            [args.binary, "token", "--database-url", args.database, "--base-url", f"{base}/fhir",
             "--scope", "system/*.cruds"], check=True, capture_output=True, text=True).stdout.strip()
        auth = {"Authorization": f"Bearer {token}"}
        time.sleep(1)
        idle = status(server.pid, "VmRSS")
        conn = http.client.HTTPConnection(url.hostname, url.port)
        conn.request("GET", "/fhir/Patient?_count=1000&_elements=id", headers=auth)
        patients = [e["resource"]["id"] for e in json.loads(conn.getresponse().read()).get("entry", [])]
        paths = []
        for p in patients:
            paths += [
                f"/fhir/Observation?patient={p}&date=ge2015-01-01&category=vital-signs",
                f"/fhir/Observation?patient={p}&code=http://loinc.org|29463-7&_sort=-date&_count=20",
                f"/fhir/Patient/{p}/$everything",
            ]
        paths.append("/fhir/Observation?code=http://loinc.org|29463-7&date=ge2020-01-01&_count=20")
        done = [0]
        errors = [0]
        stop = time.time() + args.seconds
        lock = threading.Lock()

        def client(k):
            c = http.client.HTTPConnection(url.hostname, url.port)
            i = k
            while time.time() < stop:
                c.request("GET", paths[i % len(paths)], headers=auth)
                r = c.getresponse()
                r.read()
                with lock:
                    done[0] += 1
                    errors[0] += r.status != 200
                i += 7

        started = time.time()
        cpu_start = cpu_seconds(server.pid)
        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - started
        peak = status(server.pid, "VmHWM")
        cpu = cpu_seconds(server.pid) - cpu_start
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        print(json.dumps({
            "binary": args.binary, "serve_args": args.serve_args, "patients": len(patients),
            "idle_rss_mib": round(idle, 1), "peak_rss_mib": round(peak, 1),
            "requests": done[0], "errors": errors[0],
            "requests_per_s": round(done[0] / elapsed, 1), "load": load,
            "server_cpu_ms_per_request": round(cpu * 1000 / max(done[0], 1), 3),
        }))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
