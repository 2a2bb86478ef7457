#!/usr/bin/env python3
"""What authorization costs on the request path, and how fast the token endpoint issues
backend-services tokens; release build, SQLite and PostgreSQL, one run.

Read by id and the hot Observation search are driven with oha through the same build and the
same database twice: with a bearer token (verified, then its grant row looked up on every
request) and with --insecure-no-auth. The runs alternate (token, none, token, none) and the
better of each pair is kept, so that drift on a shared machine does not favour either side.
The token endpoint is driven by threads posting pre-signed RS384 client assertions (PyJWT),
each used once.

    cargo build --release && cargo install oha --locked
    target/conformance-venv/bin/python benches/auth.py [--duration 10] [--out docs/benchmarks.md]
"""

import argparse
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rest  # noqa: E402

MARK_BEGIN = "<!-- benches/auth.py: begin -->"
MARK_END = "<!-- benches/auth.py: end -->"
SEARCH = "Observation?patient=bench-patient&code=http://loinc.org|29463-7&_sort=-date&_count=20"


def load(server, observations):
    status, body = server.request("PUT", "/fhir/Patient/bench-patient",
                                  json.dumps({**json.loads(rest.patient(0)), "id": "bench-patient"}))
    assert status in (200, 201), body
    for i in range(observations):
        weight = json.loads(rest.WEIGHT)
        weight["effectiveDateTime"] = f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T08:00:00Z"
        status, body = server.request("POST", "/fhir/Observation", json.dumps(weight))
        assert status == 201, body


def paths(server, token, args):
    base = f"http://{server.addr}/fhir"
    results = {
        "read": rest.oha(f"{base}/Patient/bench-patient", args.duration, args.connections, token=token),
        "search": rest.oha(f"{base}/{SEARCH}", args.duration, args.connections, token=token),
    }
    for name, result in results.items():
        # Only successful requests count: a refused token would be fast, and wrong.
        if set(result["codes"]) != {"200"}:
            raise SystemExit(f"{name}: status codes {result['codes']}")
    return results


def token_endpoint(server, args):
    """Tokens per second issued to a backend service (RS384 assertions, each used once)."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": "bench", "alg": "RS384", "use": "sig"})
    client_id = f"bench-{uuid.uuid4().hex[:6]}"
    rest.subprocess.run([rest.BINARY, "client", "add", client_id, "--kind", "backend", "--scope",
                         "system/*.rs", "--jwks", json.dumps({"keys": [public]}),
                         "--database-url", server.database_url], check=True, capture_output=True)
    token_url = f"http://{server.addr}/auth/token"
    total = args.tokens
    bodies = []
    exp = int(time.time()) + 280
    for _ in range(total):
        assertion = jwt.encode({"iss": client_id, "sub": client_id, "aud": token_url, "exp": exp,
                                "jti": uuid.uuid4().hex}, key, algorithm="RS384", headers={"kid": "bench"})
        bodies.append(urllib.parse.urlencode({
            "grant_type": "client_credentials", "scope": "system/*.rs",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion}))
    host, port = server.addr.split(":")
    failures = []
    lock = threading.Lock()
    cursor = iter(bodies)

    def worker():
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        while True:
            with lock:
                body = next(cursor, None)
            if body is None:
                return
            conn.request("POST", "/auth/token", body=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failures.append(response.status)

    threads = [threading.Thread(target=worker) for _ in range(args.connections)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - started
    return {"tokens": total, "seconds": seconds, "rate": total / seconds, "failures": len(failures)}


def run_backend(name, database_url, args):
    server = rest.Server(database_url)
    load(server, args.observations)
    server.stop()
    runs = {"token": [], "none": []}
    for _ in range(2):
        # A token for each start: its audience is the server's base URL, whose port changes.
        server = rest.Server(database_url)
        runs["token"].append(paths(server, server.token, args))
        server.stop()
        server = rest.Server(database_url, extra_args=["--insecure-no-auth"])
        runs["none"].append(paths(server, None, args))
        server.stop()
    best = {mode: {p: max((r[p] for r in rs), key=lambda x: x["rps"]) for p in ("read", "search")}
            for mode, rs in runs.items()}
    server = rest.Server(database_url)
    tokens = token_endpoint(server, args)
    server.stop()
    return {"name": name, "best": best, "tokens": tokens}


def section(results, machine, args):
    lines = [MARK_BEGIN, "", "## Authorization on the request path", "",
             f"`benches/auth.py`, {machine['cores']} cores, commit `{machine['commit']}`, release build, "
             f"oha {args.connections} connections, {args.duration} s per run, each mode run twice "
             "alternately (the better run kept); server, database and load generator share the cores.",
             "",
             "| backend | path | with a token (req/s) | --insecure-no-auth (req/s) | ratio | target |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        for p in ("read", "search"):
            with_token = r["best"]["token"][p]["rps"]
            without = r["best"]["none"][p]["rps"]
            ratio = with_token / without
            lines.append(f"| {r['name']} | {p} | {with_token:,.0f} (p50 {r['best']['token'][p]['p50_ms']:.2f} ms) | "
                         f"{without:,.0f} (p50 {r['best']['none'][p]['p50_ms']:.2f} ms) | {ratio:.2f} | "
                         f"≥ 0.90: {rest.check(ratio, 0.90)} |")
    lines += ["", "Token endpoint (backend services, RS384 assertions pre-signed by the load generator, "
              f"{args.connections} client threads):", "",
              "| backend | tokens | seconds | tokens/s | refused | target |", "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        t = r["tokens"]
        lines.append(f"| {r['name']} | {t['tokens']} | {t['seconds']:.1f} | {t['rate']:,.0f} | {t['failures']} | "
                     f"≥ 1,000/s: {rest.check(t['rate'], 1000)} |")
    lines += ["", f"Search: `GET /fhir/{SEARCH}` over {args.observations} Observations of one patient.",
              "", MARK_END]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--observations", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--out", default=os.path.join(rest.ROOT, "docs", "benchmarks.md"))
    args = parser.parse_args()
    machine = rest.machine()
    results = []
    with rest.tempfile.TemporaryDirectory() as tmp:
        results.append(run_backend("SQLite", f"sqlite:{tmp}/auth.db", args))
    name = f"carnet_bench_auth_{uuid.uuid4().hex[:8]}"
    rest.psql(f"CREATE DATABASE {name}")
    try:
        results.append(run_backend("PostgreSQL", f"{rest.PG_ROOT}/{name}", args))
    finally:
        rest.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    text = section(results, machine, args)
    rest.write_section(args.out, MARK_BEGIN, MARK_END, text)
    print(text)


if __name__ == "__main__":
    main()
