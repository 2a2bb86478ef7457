#!/usr/bin/env python3
"""Search benchmark: a realistic record set loaded over HTTP, then representative searches.

For each backend (SQLite file, PostgreSQL database), on a fresh database:

1. loads Patients (`p0000`...: INS identifier, name, birthDate) and Observations (weight,
   height, heart rate, temperature, blood-pressure panel, glucose; LOINC codes, UCUM
   quantities, dates over 7.5 years) with `PUT /fhir/{type}/{id}`, deterministic (seeded), in
   global date order, from pre-generated requests on several keep-alive connections; reports
   resources/s (which includes the cost of indexing);
2. checks each search against the generated data (status, searchset, expected entries) and
   captures the SQL the server logs at debug level (`CARNET_LOG=...,carnet::store=debug`), with
   `EXPLAIN QUERY PLAN` (SQLite) or `EXPLAIN (ANALYZE, BUFFERS)` (PostgreSQL) for each;
3. measures each search with oha (`--urls-from-file`: oha picks one of the listed URLs at
   random for every request, so patients, INS and name prefixes vary);
4. writes docs/benchmarks-search.md (figures, commands, plans) and a marked "Search" section
   of docs/benchmarks.md (summary and link; rest.py owns the rest of that file).

A search that is not served (anything but a searchset Bundle) is reported as such and not
timed. The databases are kept in target/bench-search/ (SQLite) and `carnet_bench_search`
(PostgreSQL): `--reuse` skips what is already loaded (also resumes an interrupted load), and
reloads from scratch when the dataset or the schema migrations differ.

    cargo build --release && cargo install oha --locked   # once
    python3 benches/search.py                             # 10,000 Patients, 1,000,000 Observations, both backends
    python3 benches/search.py --reuse                     # repeat the queries without reloading
    python3 benches/search.py --backend sqlite --patients 200 --observations 20000 \\
        --duration 5 --binary target/debug/carnet --out /tmp/search.md --summary-out ''   # quick try
"""

import argparse
import datetime
import http.client
import json
import math
import multiprocessing
import os
import random
import re
import selectors
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rest import PG_ROOT, ROOT, machine  # noqa: E402

WORK = os.path.join(ROOT, "target", "bench-search")
PG_DB = "carnet_bench_search"
GENERATOR = 1  # bump when the generated data changes: a reused database is then reloaded
INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
MARK_BEGIN = "<!-- search.py: begin (rewritten by benches/search.py; keep this section) -->"
MARK_END = "<!-- search.py: end -->"

# ---------------------------------------------------------------------------------------------
# The data: deterministic functions of (seed, patient index).

FAMILY = (
    "Martin Bernard Thomas Petit Robert Richard Durand Dubois Moreau Laurent Simon Michel "
    "Lefebvre Leroy Roux David Bertrand Morel Fournier Girard Bonnet Dupont Lambert Fontaine "
    "Rousseau Vincent Muller Lefèvre Faure André Mercier Blanc Guérin Boyer Garnier Chevalier "
    "François Legrand Gauthier Garcia Perrin Robin Clément Morin Nicolas Henry Roussel Mathieu "
    "Masson Marchand Duval Denis Dumont Marie Lemaire Noël Meyer Dufour Meunier Brun Blanchard "
    "Giraud Joly Rivière Lucas Brunet Gaillard Barbier Arnaud Martinez Gérard Roche Renard "
    "Schmitt Roy Leroux Colin Vidal Caron Picard Roger Fabre Aubert Lemoine Renaud Dumas "
    "Lacroix Olivier Philippe Bourgeois Pierre Benoît Rey Leclerc Payet Rolland Guillaume "
    "Lecomte Lopez Jean Dupuy Guillot Hubert Berger Carpentier Sanchez Dupuis Moulin Louis "
    "Deschamps Huet Vasseur Perez Boucher Fleury Royer Klein Jacquet Adam Paris Poirier Marty "
    "Aubry Guyot Carré Charles Renault Charpentier Ménard Maillard Baron Bertin Bailly Hervé "
    "Schneider Fernandez Collet Léger Bouvier Julien Prévost Millet Perrot Daniel Cousin "
    "Germain Breton Besson Langlois Rémy Pelletier Lévêque Perrier Leblanc Barré Lebrun Marchal "
    "Weber Mallet Hamon Boulanger Jacob Monnier Michaud Rodriguez Guichard Gillet Étienne"
).split() + ["Le Gall", "Le Roux", "Le Goff", "Da Silva"]
GIVEN_F = "Marie Jeanne Françoise Monique Catherine Nathalie Isabelle Sylvie Anne Camille Léa Manon Chloé Emma Inès Zoé".split()
GIVEN_M = "Jean Pierre Michel André Philippe Alain Nicolas Thomas Lucas Hugo Louis Gabriel Jules Noé Éric Raphaël".split()
DEPTS = ["75", "69", "13", "33", "59", "31", "44", "67", "06", "34", "35", "76", "38", "57", "92", "93", "94", "974"]
FAMILY_WEIGHTS = [1 / (rank + 1) ** 0.7 for rank in range(len(FAMILY))]  # a few names are common

EPOCH_START = datetime.datetime(2019, 1, 1, tzinfo=datetime.timezone.utc)
EPOCH_SPAN = int((datetime.datetime(2026, 7, 1, tzinfo=datetime.timezone.utc) - EPOCH_START).total_seconds())
PARIS = [datetime.timezone(datetime.timedelta(hours=1)), datetime.timezone(datetime.timedelta(hours=2))]

# (key, share of observations, category, LOINC code, display, unit)
KINDS = [
    ("weight", 0.15, "vital-signs", "29463-7", "Body weight", "kg"),
    ("height", 0.05, "vital-signs", "8302-2", "Body height", "cm"),
    ("heart", 0.20, "vital-signs", "8867-4", "Heart rate", "/min"),
    ("temp", 0.15, "vital-signs", "8310-5", "Body temperature", "Cel"),
    ("bp", 0.25, "vital-signs", "85354-9", "Blood pressure panel with all children optional", "mm[Hg]"),
    ("glucose", 0.20, "laboratory", "15074-8", "Glucose [Moles/volume] in Blood", "mmol/L"),
]
UNIT_TEXT = {"kg": "kg", "cm": "cm", "/min": "beats/minute", "Cel": "°C", "mm[Hg]": "mmHg", "mmol/L": "mmol/L"}


def id_width(patients):
    return max(4, len(str(patients - 1)))


def patient_id(i, patients):
    return f"p{i:0{id_width(patients)}d}"


def is_heavy(i):
    """One patient in a hundred (chronic follow-up) has ten times the average record."""
    return i % 100 == 7


def obs_counts(patients, observations):
    weights = [10 if is_heavy(i) else 1 for i in range(patients)]
    total = sum(weights)
    counts = [observations * w // total for w in weights]
    for i in range(observations - sum(counts)):
        counts[i % patients] += 1
    return counts


def patient_data(seed, i, patients):
    rng = random.Random(f"{seed}:patient:{i}")
    female = i % 2 == 0
    birth = datetime.date(1930, 1, 1) + datetime.timedelta(days=rng.randrange(0, 90 * 365))
    given = rng.sample(GIVEN_F if female else GIVEN_M, 2)
    family = rng.choices(FAMILY, FAMILY_WEIGHTS)[0]
    # NIR-shaped INS (13 digits): sex, birth year and month, department, then 6 digits unique
    # to the patient (commune + order number in a real NIR).
    ins = f"{2 if female else 1}{birth.year % 100:02d}{birth.month:02d}{rng.choice(DEPTS)[:2]}{i:06d}"
    return {"id": patient_id(i, patients), "ins": ins, "family": family, "given": given,
            "gender": "female" if female else "male", "birthDate": birth.isoformat()}


def patient_body(p):
    return {
        "resourceType": "Patient",
        "id": p["id"],
        "identifier": [{"use": "official", "system": INS_SYSTEM, "value": p["ins"]}],
        "active": True,
        "name": [{"use": "official", "family": p["family"], "given": p["given"]}],
        "gender": p["gender"],
        "birthDate": p["birthDate"],
    }


def observations_of(seed, i, patients, count):
    """The `count` observations of patient i: (epoch seconds, id, kind key, body dict)."""
    rng = random.Random(f"{seed}:obs:{i}")
    pid = patient_id(i, patients)
    base = {"weight": rng.uniform(48, 105), "height": rng.uniform(150, 195), "heart": rng.uniform(58, 85),
            "sys": rng.uniform(105, 150), "dia": rng.uniform(62, 92), "glucose": rng.uniform(4.4, 6.8)}
    shares = [k[1] for k in KINDS]
    out = []
    for n in range(count):
        kind = rng.choices(KINDS, shares)[0]
        key, _, category, code, display, unit = kind
        at = rng.randrange(EPOCH_SPAN)
        when = (EPOCH_START + datetime.timedelta(seconds=at)).astimezone(PARIS[rng.randrange(2)])
        oid = f"{pid}-{n}"
        body = {
            "resourceType": "Observation",
            "id": oid,
            "status": "final",
            "category": [{"coding": [{"system": CATEGORY, "code": category,
                                      "display": "Vital Signs" if category == "vital-signs" else "Laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": when.isoformat(timespec="seconds"),
        }
        if key == "bp":
            body["component"] = [
                {"code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]},
                 "valueQuantity": quantity(round(base["sys"] + rng.gauss(0, 9)), unit)},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]},
                 "valueQuantity": quantity(round(base["dia"] + rng.gauss(0, 6)), unit)},
            ]
        else:
            value = {
                "weight": lambda: round(base["weight"] + rng.gauss(0, 1.5), 1),
                "height": lambda: round(base["height"] + rng.gauss(0, 0.4), 1),
                "heart": lambda: round(base["heart"] + rng.gauss(0, 8)),
                "temp": lambda: round(rng.gauss(36.9, 0.45), 1),
                "glucose": lambda: round(base["glucose"] + rng.gauss(0, 0.6), 1),
            }[key]()
            body["valueQuantity"] = quantity(value, unit)
        out.append((EPOCH_START.timestamp() + at, oid, key, body))
    return out


def quantity(value, unit):
    return {"value": value, "unit": UNIT_TEXT[unit], "system": UCUM, "code": unit}


def normalize(text):
    text = unicodedata.normalize("NFKD", text.lower())
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).split())


# ---------------------------------------------------------------------------------------------
# The server and the databases.

# The operator's token of the server running now (`carnet token`): every request this script
# sends carries it, since authorization is on.
AUTH_TOKEN = None


class Server:
    def __init__(self, binary, database_url, log_path=None, log_spec="warn"):
        env = {**os.environ, "CARNET_LOG": log_spec, "RUST_LOG": log_spec}
        self.log = open(log_path, "w") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--database-url", database_url],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("carnet listening on http://"):
            self.proc.kill()
            raise SystemExit(f"carnet did not start: {line!r} (see {log_path or 'its stderr'})")
        self.addr = line.rsplit("/", 1)[1]
        self.base = f"http://{self.addr}/fhir"
        host, port = self.addr.split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=300)
        for _ in range(2000):
            try:
                if self.get("/health")[0] == 200:
                    break
            except OSError:
                self.conn.close()
            time.sleep(0.01)
        global AUTH_TOKEN
        AUTH_TOKEN = subprocess.run(
            [binary, "token", "--database-url", database_url, "--base-url", self.base,
             "--scope", "system/*.cruds"], check=True, capture_output=True, text=True).stdout.strip()

    def get(self, path):
        """GET a path under the server (or a full URL on it): (status, parsed JSON or text)."""
        if path.startswith("http"):
            parts = urllib.parse.urlsplit(path)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {"Accept": "application/fhir+json"}
        if AUTH_TOKEN:
            headers["Authorization"] = f"Bearer {AUTH_TOKEN}"
        self.conn.request("GET", path, headers=headers)
        response = self.conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode("utf-8", "replace")

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.conn.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def psql(sql, db="postgres", capture=False):
    out = subprocess.run(["psql", f"{PG_ROOT}/{db}", "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
                         check=not capture, capture_output=True, text=True)
    if capture:
        return out.returncode, (out.stdout + out.stderr).strip()
    return out.stdout.strip()


class Backend:
    """A benchmark database: where it is, how to reset it, how to look inside it."""

    def __init__(self, name):
        self.name = name
        self.label = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[name]
        self.meta_path = os.path.join(WORK, f"{name}.json")
        self.path = os.path.join(WORK, "search.db")

    @property
    def url(self):
        return f"sqlite:{self.path}" if self.name == "sqlite" else f"{PG_ROOT}/{PG_DB}"

    def exists(self):
        if self.name == "sqlite":
            return os.path.exists(self.path)
        return psql(f"SELECT 1 FROM pg_database WHERE datname = '{PG_DB}'") == "1"

    def reset(self):
        if self.name == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.remove(self.path + suffix)
        else:
            psql(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
            psql(f"CREATE DATABASE {PG_DB}")
        if os.path.exists(self.meta_path):
            os.remove(self.meta_path)

    def query(self, sql):
        """Rows of a read-only query, as lists of strings."""
        if self.name == "sqlite":
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                return [[str(v) for v in row] for row in con.execute(sql)]
            finally:
                con.close()
        out = psql(sql, PG_DB)
        return [line.split("|") for line in out.splitlines()] if out else []

    def migrations(self):
        try:
            return sorted(r[0] for r in self.query("SELECT version FROM __diesel_schema_migrations"))
        except Exception:
            return []

    def existing_ids(self, res_type):
        return {r[0] for r in self.query(
            f"SELECT res_id FROM resource WHERE res_type = '{res_type}' AND NOT deleted")}

    def size_mib(self):
        if self.name == "sqlite":
            return sum(os.path.getsize(self.path + s) for s in ("", "-wal") if os.path.exists(self.path + s)) / 2**20
        return int(psql(f"SELECT pg_database_size('{PG_DB}')")) / 2**20

    def table_sizes(self):
        if self.name == "sqlite":
            try:
                rows = self.query("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 12")
                return [(n, int(s) / 2**20) for n, s in rows]
            except sqlite3.DatabaseError:
                return []
        rows = self.query("SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relkind = 'r' "
                          "AND relnamespace = 'public'::regnamespace ORDER BY 2 DESC LIMIT 12")
        return [(n, int(s) / 2**20) for n, s in rows]

    def load_meta(self):
        if os.path.exists(self.meta_path):
            with open(self.meta_path) as f:
                return json.load(f)
        return None

    def save_meta(self, meta):
        with open(self.meta_path, "w") as f:
            json.dump(meta, f, indent=1)


# ---------------------------------------------------------------------------------------------
# The loader: pre-generated PUT requests sent on keep-alive connections by several processes,
# each a selector loop over raw sockets (http.client costs more client CPU per request, and the
# client shares the cores with the server).

def encode_put(res_type, body):
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    head = (f"PUT /fhir/{res_type}/{body['id']} HTTP/1.1\r\nHost: bench\r\n"
            f"Authorization: Bearer {AUTH_TOKEN}\r\n"
            "Content-Type: application/fhir+json\r\nPrefer: return=minimal\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    return head + data


def _send_all(addr, requests, connections, counter):
    """Sends the requests on `connections` keep-alive connections, one request in flight on
    each, driven by one selector loop (no pipelining, as an ordinary client)."""
    host, port = addr.split(":")
    selector = selectors.DefaultSelector()
    position, sent, reported, errors = 0, 0, 0, []
    for _ in range(min(connections, len(requests))):
        sock = socket.create_connection((host, int(port)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        state = {"sock": sock, "buf": b"", "request": requests[position]}
        position += 1
        sock.sendall(state["request"])
        selector.register(sock, selectors.EVENT_READ, state)
    while selector.get_map():
        for key, _ in selector.select():
            state = key.data
            sock = state["sock"]
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed a loader connection")
            buf = state["buf"] + data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                state["buf"] = buf
                continue
            head = buf[:end].lower()
            if b"transfer-encoding: chunked" in head:
                raise ConnectionError("chunked response to a write: use Prefer: return=minimal")
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                length = int(head[at + 17:head.find(b"\r\n", at + 2) if head.find(b"\r\n", at + 2) > 0 else None])
            if len(buf) < end + 4 + length:
                state["buf"] = buf
                continue
            status = int(buf[9:12])
            if status not in (200, 201):
                errors.append((status, state["request"].split(b"\r\n", 1)[0].decode(),
                               buf[end + 4:end + 4 + length][:300].decode("utf-8", "replace")))
            state["buf"] = buf[end + 4 + length:]
            sent += 1
            if sent - reported >= 500:
                with counter.get_lock():
                    counter.value += sent - reported
                reported = sent
            if position < len(requests):
                state["request"] = requests[position]
                position += 1
                sock.sendall(state["request"])
            else:
                selector.unregister(sock)
                sock.close()
    with counter.get_lock():
        counter.value += sent - reported
    return sent, errors


def _load_worker(addr, requests, connections, barrier, counter, results):
    barrier.wait()
    started, cpu = time.monotonic(), time.process_time()
    sent, errors = _send_all(addr, requests, connections, counter)
    results.put((sent, errors[:5], len(errors), time.monotonic() - started, time.process_time() - cpu))


def send(addr, requests, procs, connections, label):
    """Sends the requests (interleaved over the processes); returns (sent, error count, seconds,
    client CPU seconds)."""
    if not requests:
        return 0, 0, 0.0, 0.0
    ctx = multiprocessing.get_context("fork")
    procs = max(1, min(procs, len(requests)))
    per_proc = max(1, connections // procs)
    barrier = ctx.Barrier(procs + 1)
    counter = ctx.Value("q", 0)
    results = ctx.Queue()
    workers = [ctx.Process(target=_load_worker,
                           args=(addr, requests[k::procs], per_proc, barrier, counter, results))
               for k in range(procs)]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.monotonic()
    last = started
    outcomes = []
    while len(outcomes) < procs:
        try:
            outcomes.append(results.get(timeout=1))
        except Exception:
            pass
        now = time.monotonic()
        if now - last >= 15:
            last = now
            done = counter.value
            print(f"  {label}: {done:,}/{len(requests):,} ({done / (now - started):,.0f}/s)", file=sys.stderr)
    elapsed = time.monotonic() - started
    for w in workers:
        w.join()
    sent = sum(o[0] for o in outcomes)
    failures = sum(o[2] for o in outcomes)
    for o in outcomes:
        for status, line, body in o[1]:
            print(f"  {label}: {status} for {line}: {body}", file=sys.stderr)
    return sent, failures, elapsed, sum(o[4] for o in outcomes)


def load(backend, server, args):
    """Loads what is missing; returns the load figures."""
    have_patients = backend.existing_ids("Patient")
    have_obs = backend.existing_ids("Observation")
    started = time.monotonic()
    patients = [patient_body(patient_data(args.seed, i, args.patients)) for i in range(args.patients)]
    patient_requests = [encode_put("Patient", p) for p in patients if p["id"] not in have_patients]
    counts = obs_counts(args.patients, args.observations)
    obs = []
    for i in range(args.patients):
        obs.extend((at, oid, body) for at, oid, _, body in observations_of(args.seed, i, args.patients, counts[i])
                   if oid not in have_obs)
    obs.sort(key=lambda o: (o[0], o[1]))  # arrival in clinical time order, patients interleaved
    obs_requests = [encode_put("Observation", body) for _, _, body in obs]
    del obs
    generate_s = time.monotonic() - started
    print(f"  generated {len(patient_requests):,} Patient and {len(obs_requests):,} Observation requests "
          f"in {generate_s:.1f} s ({sum(map(len, obs_requests)) / max(1, len(obs_requests)):.0f} bytes each)",
          file=sys.stderr)
    p_sent, p_err, p_s, _ = send(server.addr, patient_requests, args.load_procs, args.load_connections, "Patient")
    o_sent, o_err, o_s, o_cpu = send(server.addr, obs_requests, args.load_procs, args.load_connections, "Observation")
    if p_err or o_err:
        raise SystemExit(f"{backend.label}: {p_err + o_err} writes failed (first ones above)")
    return {
        "patients_sent": p_sent, "patients_s": p_s, "patients_rate": p_sent / p_s if p_s else None,
        "observations_sent": o_sent, "observations_s": o_s, "observations_rate": o_sent / o_s if o_s else None,
        "resumed": bool(have_patients or have_obs), "generate_s": generate_s,
        "client_cpu_us": o_cpu / o_sent * 1e6 if o_sent else None,
        "procs": args.load_procs, "connections": args.load_connections,
        "body_bytes": sum(map(len, obs_requests)) / max(1, len(obs_requests)),
    }


# ---------------------------------------------------------------------------------------------
# The queries: URLs sampled from the dataset, and what each must return.

def sample_patients(args, n, salt):
    rng = random.Random(f"{args.seed}:sample:{salt}")
    return rng.sample(range(args.patients), min(n, args.patients))


def bundle_ids(bundle, res_type="Observation"):
    return [e.get("resource", {}).get("id") for e in bundle.get("entry", [])
            if e.get("resource", {}).get("resourceType") == res_type]


def next_link(bundle):
    for link in bundle.get("link", []):
        if link.get("relation") == "next":
            return link.get("url")
    return None


def build_queries(args):
    """Each query: name, why, target, and `cases`, a list of (path, check) where check(bundle)
    returns None when the bundle is right, else what is wrong."""
    counts = obs_counts(args.patients, args.observations)
    cache = {}

    def obs(i):
        if i not in cache:
            cache[i] = observations_of(args.seed, i, args.patients, counts[i])
        return cache[i]

    def expect_ids(expected, ordered):
        def check(bundle):
            got = bundle_ids(bundle)
            if ordered and got != expected:
                return f"expected {expected[:3]}... ({len(expected)}), got {got[:3]}... ({len(got)})"
            if not ordered and sorted(got) != sorted(expected):
                return f"expected {len(expected)} entries {sorted(expected)[:3]}..., got {len(got)} {sorted(got)[:3]}..."
            return None
        return check

    def latest(i, key, n):
        rows = sorted((o for o in obs(i) if o[2] == key), key=lambda o: (-o[0], o[1]))
        return [o[1] for o in rows[:n]]

    queries = []
    n = args.sample

    cases = []
    for i in sample_patients(args, n, "q1"):
        pid = patient_id(i, args.patients)
        cases.append((f"/Observation?patient={pid}&code={LOINC}|29463-7&_sort=-date&_count=20",
                      expect_ids(latest(i, "weight", 20), ordered=True)))
    queries.append({"key": "patient-code-sorted", "target": (10, 50),
                    "title": "a patient's last 20 weights",
                    "shape": f"Observation?patient=pNNNN&code={LOINC}|29463-7&_sort=-date&_count=20",
                    "why": "the commonest app call (a curve of one measurement); reference + token + sort + limit",
                    "cases": cases})

    cases = []
    for i in sample_patients(args, n, "q2"):
        ins = patient_data(args.seed, i, args.patients)["ins"]
        weights = [o[1] for o in obs(i) if o[2] == "weight"]
        cases.append((f"/Observation?subject:Patient.identifier={INS_SYSTEM}|{ins}&code={LOINC}|29463-7&_count=20",
                      lambda b, w=weights: None if len(bundle_ids(b)) == min(20, len(w)) and set(bundle_ids(b)) <= set(w)
                      else f"expected {min(20, len(w))} of {len(w)} weights, got {bundle_ids(b)[:3]}... ({len(bundle_ids(b))})"))
    queries.append({"key": "chained-ins", "target": (20, None),
                    "title": "weights of the patient with this INS (chained)",
                    "shape": f"Observation?subject:Patient.identifier={INS_SYSTEM}|INS&code={LOINC}|29463-7&_count=20",
                    "why": "what a DMP client holding only the INS sends; a chain through the Patient's identifier index",
                    "cases": cases})

    cases = []
    for i in sample_patients(args, n, "q3"):
        p = patient_data(args.seed, i, args.patients)
        cases.append((f"/Patient?identifier={INS_SYSTEM}|{p['ins']}",
                      lambda b, pid=p["id"]: None if bundle_ids(b, "Patient") == [pid]
                      else f"expected [{pid}], got {bundle_ids(b, 'Patient')}"))
    queries.append({"key": "patient-ins", "target": (None, None),
                    "title": "patient by INS",
                    "shape": f"Patient?identifier={INS_SYSTEM}|INS",
                    "why": "identity lookup, the entry point of every DMP exchange; one token, unique",
                    "cases": cases})

    people = [patient_data(args.seed, i, args.patients) for i in range(args.patients)]
    words = sorted({normalize(p["family"])[:3] for p in people if normalize(p["family"])[:3].isalpha()})
    rng = random.Random(f"{args.seed}:prefixes")
    cases = []
    for prefix in rng.sample(words, min(n, len(words))):
        matching = sorted(p["id"] for p in people
                          if any(normalize(w).startswith(prefix) for w in [p["family"], *p["given"]]))
        cases.append((f"/Patient?name={prefix}&_count=20",
                      lambda b, m=matching: None if len(bundle_ids(b, "Patient")) == min(20, len(m))
                      and set(bundle_ids(b, "Patient")) <= set(m)
                      else f"expected {min(20, len(m))} of {len(m)} ({m[:3]}...), got {bundle_ids(b, 'Patient')[:3]}... "
                           f"({len(bundle_ids(b, 'Patient'))})"))
    queries.append({"key": "patient-name", "target": (None, None),
                    "title": "patients by name prefix",
                    "shape": "Patient?name=PREFIX&_count=20", "vary": "3-letter prefixes of family names",
                    "why": "the search box of a professional's app; normalized string prefix over family and given names",
                    "cases": cases})

    cases = []
    for month in range(1, 13):
        since = f"2025-{month:02d}-01"
        limit = datetime.datetime.fromisoformat(since).replace(tzinfo=datetime.timezone.utc).timestamp()
        def check(b, limit=limit):
            got = bundle_ids(b)
            bad = [e["resource"] for e in b.get("entry", []) if e.get("resource", {}).get("resourceType") == "Observation"
                   and (e["resource"]["code"]["coding"][0]["code"] != "8867-4"
                        or datetime.datetime.fromisoformat(e["resource"]["effectiveDateTime"]).timestamp() < limit)]
            if len(got) != 20 or bad:
                return f"expected 20 heart rates on or after the date, got {len(got)} ({len(bad)} wrong)"
            return None
        cases.append((f"/Observation?code={LOINC}|8867-4&date=ge{since}&_count=20", check))
    queries.append({"key": "code-date", "target": (None, None),
                    "title": "heart rates since a date, all patients",
                    "shape": f"Observation?code={LOINC}|8867-4&date=geYYYY-MM-01&_count=20", "vary": "the 12 months of 2025",
                    "why": "population query with a large match set (tens of thousands): must stop at the page, not count or sort everything",
                    "cases": cases})

    cases = []
    for i in sample_patients(args, n, "q6"):
        pid = patient_id(i, args.patients)
        ids = [o[1] for o in obs(i)]
        cases.append((f"/Observation?patient={pid}&_count=50",
                      lambda b, ids=ids: None if len(bundle_ids(b)) == min(50, len(ids)) and set(bundle_ids(b)) <= set(ids)
                      else f"expected {min(50, len(ids))} of {len(ids)}, got {len(bundle_ids(b))}"))
    queries.append({"key": "patient-all", "target": (None, None),
                    "title": "a patient's record, first page",
                    "shape": "Observation?patient=pNNNN&_count=50",
                    "why": "opening a record (compartment-like listing); the heavy patients (1%) have ~10x the rows",
                    "cases": cases,
                    # the walk through all pages also takes the first heavy patient (p..07)
                    "pages": {i: [o[1] for o in obs(i)] for i in sample_patients(args, n, "q6") + [7 % args.patients]}})
    queries.append({"key": "patient-all-next", "target": (None, None),
                    "title": "a patient's record, next pages",
                    "shape": "Observation?patient=pNNNN&_count=50&...", "vary": "the `next` links of the first pages, followed to the end",
                    "why": "paging cost: a keyset cursor should cost the same on page 15 as on page 2",
                    "cases": []})
    return queries


def is_searchset(status, body):
    return status == 200 and isinstance(body, dict) and body.get("resourceType") == "Bundle" \
        and body.get("type") == "searchset"


def describe(status, body):
    if isinstance(body, dict):
        text = body.get("resourceType", "?")
        if body.get("resourceType") == "OperationOutcome":
            text += ": " + "; ".join(i.get("diagnostics", i.get("code", "")) for i in body.get("issue", []))
        elif body.get("resourceType") == "Bundle":
            text += f" type {body.get('type')}"
        return f"{status} {text}"[:200]
    return f"{status} {str(body)[:150]}"


# ---------------------------------------------------------------------------------------------
# The SQL the server logs, and its plans.

LOG_RECORD = re.compile(r"^\[\d{4}-\d\d-\d\dT[^\]]*?\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s+([\w:]+)\]\s?(.*)$")
SQL_START = re.compile(r"\b(WITH|SELECT)\b", re.I)
BINDS = re.compile(r"(?:--\s*)?\b(?:binds|params|parameters|args)\b\s*[:=]\s*(?=\[)|\s--\s*(?=\[[^\]\n]*\]?\s*$)", re.I)


def log_records(text):
    """env_logger records (`[ts LEVEL target] message`, continuation lines joined)."""
    records = []
    for line in text.splitlines():
        m = LOG_RECORD.match(line)
        if m:
            records.append([m.group(2), m.group(3)])
        elif records:
            records[-1][1] += "\n" + line
    return records


def sql_statements(text):
    """The SQL statements in the debug records of carnet::store* (tolerant: a record holding a
    SELECT/WITH, optionally followed by `-- binds: [...]`)."""
    found = []
    for target, message in log_records(text):
        if not target.startswith("carnet::store"):
            continue
        m = SQL_START.search(message)
        if not m:
            continue
        sql = message[m.start():]
        binds = None
        b = BINDS.search(sql)
        if b:
            binds = parse_binds(sql[b.end():])
            sql = sql[:b.start()]
        found.append({"target": target, "sql": sql.strip().rstrip(";"), "binds": binds})
    return found


def parse_binds(text):
    """A Rust Debug list (`["a", 3, Some(1.5), None, true]`) as Python values, or None."""
    text = text.strip()
    if not text.startswith("["):
        return None
    values, i, depth_some = [], 1, 0
    while i < len(text):
        c = text[i]
        if c in " ,\n\t)":
            i += 1
        elif c == "]":
            return values
        elif c == '"':
            j, s = i + 1, []
            while j < len(text) and text[j] != '"':
                if text[j] == "\\" and j + 1 < len(text):
                    s.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\", "'": "'"}.get(text[j + 1], text[j + 1]))
                    j += 2
                else:
                    s.append(text[j])
                    j += 1
            values.append("".join(s))
            i = j + 1
        elif re.match(r"[A-Z]\w*\(", text[i:]):  # Some(..), Text(..), Int(..), Float(..)
            i = text.index("(", i) + 1
        elif text.startswith("-inf", i) or text.startswith("inf", i) or text.startswith("NaN", i):
            word = re.match(r"-?inf|NaN", text[i:]).group()
            values.append(float(word.replace("NaN", "nan")))
            i += len(word)
        elif text.startswith("None", i):
            values.append(None)
            i += 4
        elif text.startswith("true", i) or text.startswith("false", i):
            values.append(text.startswith("true", i))
            i += 4 if text.startswith("true", i) else 5
        else:
            m = re.match(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text[i:])
            if not m:
                return None
            values.append(float(m.group()) if m.group(1) or m.group(2) else int(m.group()))
            i += m.end()
    return None


def literal(value, postgres):
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return ("TRUE" if value else "FALSE") if postgres else str(int(value))
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "'NaN'::float8" if postgres else "NULL"
        return f"'{'-' if value < 0 else ''}Infinity'::float8" if postgres else ("-1e999" if value < 0 else "1e999")
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def inline_binds(sql, binds, postgres):
    """The statement with its placeholders ($1 / ? / ?1) replaced by literals, outside quotes."""
    out, i, n = [], 0, 0
    while i < len(sql):
        c = sql[i]
        if c in "'\"":
            j = sql.index(c, i + 1) if c in sql[i + 1:] else len(sql) - 1
            out.append(sql[i:j + 1])
            i = j + 1
            continue
        m = re.match(r"\$(\d+)|\?(\d*)", sql[i:])
        if m:
            index = int(m.group(1) or m.group(2) or 0) - 1 if (m.group(1) or m.group(2)) else n
            n += 1
            if index >= len(binds):
                raise ValueError(f"placeholder {m.group()} has no bind value")
            out.append(literal(binds[index], postgres))
            i += m.end()
            continue
        out.append(c)
        i += 1
    return "".join(out)


def has_placeholders(sql):
    stripped = re.sub(r"'[^']*'|\"[^\"]*\"", "", sql)
    return bool(re.search(r"\$\d+|\?", stripped))


def explain(backend, statement):
    """The plan of a logged statement, as text. SQLite: the statement with its values bound (as
    the server runs it), and its time through Python's sqlite3; PostgreSQL: values inlined."""
    sql, binds = statement["sql"], statement["binds"]
    if backend.name == "postgres":
        if binds is not None:
            try:
                sql = inline_binds(sql, binds, True)
            except ValueError as e:
                return f"(not explained: {e})"
        if has_placeholders(sql):
            return "(not explained: the log gives no bind values for its placeholders)"
        code, out = psql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", PG_DB, capture=True)
        return out if code == 0 else f"(EXPLAIN failed: {out[:500]})"
    con = sqlite3.connect(f"file:{backend.path}?mode=ro", uri=True)
    try:
        params = binds if binds is not None else [None] * sql.count("?")
        rows = con.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        depth = {0: -1}
        lines = []
        for node, parent, _, detail in rows:
            depth[node] = depth.get(parent, -1) + 1
            lines.append("  " * depth[node] + detail)
        if binds is not None:
            times = []
            for _ in range(5):
                started = time.perf_counter()
                count = len(con.execute(sql, params).fetchall())
                times.append(time.perf_counter() - started)
            lines.append(f"-- run by Python's sqlite3 {sqlite3.sqlite_version}: {count} rows, "
                         f"median {statistics.median(times) * 1000:.2f} ms of 5 runs")
        return "\n".join(lines)
    except sqlite3.Error as e:
        return f"(EXPLAIN QUERY PLAN failed: {e})"
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# Probing (correctness, SQL) and timing.

def probe(backend, args, queries):
    """Runs every case once on a server logging its SQL; fills each query's status, failures,
    URLs, statements and plans; collects the `next` links for the paging query."""
    log_path = os.path.join(WORK, f"{backend.name}-debug.log")
    server = Server(args.binary, backend.url, log_path,
                    "warn,carnet=info,carnet::store=debug")
    for q in queries:
        q.update(served=None, failures=[], checked=0, statements=[], paths=[])
    try:
        for q in queries:
            if q["key"] == "patient-all-next":
                continue
            for n, (path, check) in enumerate(q["cases"]):
                with open(log_path) as f:
                    f.seek(0, 2)
                    offset = f.tell()
                started = time.monotonic()
                status, body = server.get(f"/fhir{path}")
                elapsed = time.monotonic() - started
                if not is_searchset(status, body):
                    q["served"] = False
                    q["answer"] = describe(status, body)
                    break
                q["served"] = True
                q["paths"].append(path)
                q["checked"] += 1
                problem = check(body)
                if problem:
                    q["failures"].append(f"{path}: {problem}")
                if n == 0:
                    q["first_ms"] = elapsed * 1000
                    q["total"] = body.get("total")
                    time.sleep(0.2)  # let the log reach the file
                    with open(log_path) as f:
                        f.seek(offset)
                        q["statements"] = sql_statements(f.read())
            if q["key"] == "patient-all" and not q["served"]:
                nxt = next(x for x in queries if x["key"] == "patient-all-next")
                nxt.update(served=q["served"], answer=q.get("answer"))
            if q["key"] == "patient-all" and q["served"]:
                nxt = next(x for x in queries if x["key"] == "patient-all-next")
                nxt.update(served=True, paths=[], walks=[])
                for i, ids in q["pages"].items():
                    got, pages, url, walk_started = [], 0, f"/fhir/Observation?patient={patient_id(i, args.patients)}&_count=50", time.monotonic()
                    while url and pages < 1000:
                        with open(log_path) as f:
                            f.seek(0, 2)
                            offset = f.tell()
                        status, body = server.get(url)
                        if not is_searchset(status, body):
                            nxt["failures"].append(f"{url}: {describe(status, body)}")
                            break
                        if pages == 1 and not nxt["statements"]:
                            time.sleep(0.2)
                            with open(log_path) as f:
                                f.seek(offset)
                                nxt["statements"] = sql_statements(f.read())
                        got.extend(bundle_ids(body))
                        pages += 1
                        url = next_link(body)
                        if url:
                            parts = urllib.parse.urlsplit(url)
                            nxt["paths"].append(parts.path[len("/fhir"):] + "?" + parts.query)
                    nxt["walks"].append({"patient": patient_id(i, args.patients), "rows": len(ids), "pages": pages,
                                         "ms": (time.monotonic() - walk_started) * 1000})
                    nxt["checked"] += 1
                    if sorted(got) != sorted(ids):
                        nxt["failures"].append(f"patient {patient_id(i, args.patients)}: paging returned {len(got)} "
                                               f"entries ({len(set(got))} distinct), expected {len(ids)}")
                if not nxt["paths"]:
                    nxt["served"] = None
                    nxt["answer"] = "no `next` link in any first page"
    finally:
        server.stop()
    for q in queries:
        for s in q["statements"]:
            s["plan"] = explain(backend, s)
    with open(log_path) as f:
        q0 = f.read()
    if not any(q["statements"] for q in queries) and any(q["served"] for q in queries):
        print(f"  {backend.label}: no SQL found in {log_path} ({len(q0):,} bytes of log)", file=sys.stderr)


def oha(urls, duration, connections, label):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, dir=WORK, prefix=f"urls-{label}-") as f:
        f.write("\n".join(urls) + "\n")
        url_file = f.name
    cmd = ["oha", "-z", f"{duration}s", "-c", str(connections), "--no-tui", "--output-format", "json",
           "-H", f"Authorization: Bearer {AUTH_TOKEN}", "--urls-from-file"]
    out = subprocess.run(cmd + [url_file], check=True, capture_output=True, text=True).stdout
    os.remove(url_file)
    result = json.loads(out)
    pct = result["latencyPercentiles"]
    if pct.get("p50") is None:
        # Not one request completed in the run: every request took longer than the duration.
        return None
    return {
        "rps": result["summary"]["requestsPerSec"],
        "success": result["summary"]["successRate"],
        "p50_ms": pct["p50"] * 1000, "p90_ms": pct["p90"] * 1000, "p99_ms": pct["p99"] * 1000,
        "codes": result.get("statusCodeDistribution", {}),
        "command": " ".join(part if not part.startswith("Authorization") else "'Authorization: Bearer TOKEN'"
                            for part in cmd) + " URLS.txt",
        "urls": len(urls),
    }


def measure(backend, args, queries):
    server = Server(args.binary, backend.url)
    try:
        rss_before = server.rss_mib()
        for q in queries:
            if not q["served"] or not q["paths"]:
                continue
            urls = [f"{server.base}{p}" for p in q["paths"]]
            if args.warmup and oha(urls, args.warmup, args.connections, q["key"]) is None:
                q["too_slow"] = args.warmup
                print(f"  {backend.label} {q['key']}: no request completed in {args.warmup} s: not timed",
                      file=sys.stderr)
                continue
            q["oha"] = oha(urls, args.duration, args.connections, q["key"])
            # Latency proper: one client, so that no request waits behind others on 2 cores.
            q["oha1"] = oha(urls, args.latency_duration, 1, q["key"])
            if q["oha"] is None or q["oha1"] is None:
                q["too_slow"] = args.duration
                q["oha"] = q["oha1"] = None
                continue
            print(f"  {backend.label} {q['key']}: p50 {q['oha']['p50_ms']:.2f} ms, p99 {q['oha']['p99_ms']:.2f} ms, "
                  f"{q['oha']['rps']:,.0f}/s {q['oha']['codes']}", file=sys.stderr)
        return {"rss_before": rss_before, "rss_after": server.rss_mib()}
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------
# One backend, start to end.

def run_backend(name, args):
    backend = Backend(name)
    print(f"{backend.label}: {backend.url}", file=sys.stderr)
    dataset = {"patients": args.patients, "observations": args.observations, "seed": args.seed, "generator": GENERATOR}
    meta = backend.load_meta() if args.reuse and backend.exists() else None
    if meta is not None and meta.get("dataset") != dataset:
        print(f"  the kept database holds another dataset ({meta.get('dataset')}): reloading", file=sys.stderr)
        meta = None
    if meta is None:
        backend.reset()
    server = Server(args.binary, backend.url)
    migrations = backend.migrations()
    if meta is not None and meta.get("migrations") != migrations and args.keep_schema:
        print(f"  the schema changed since the load ({meta.get('migrations')} -> {migrations}); "
              "kept as asked (--keep-schema)", file=sys.stderr)
        meta["migrations"] = migrations
        backend.save_meta(meta)
    if meta is not None and meta.get("migrations") != migrations:
        print(f"  the schema changed since the load ({meta.get('migrations')} -> {migrations}): "
              "its index rows may be missing, reloading", file=sys.stderr)
        server.stop()
        backend.reset()
        meta = None
        server = Server(args.binary, backend.url)
        migrations = backend.migrations()
    if meta is None:
        meta = {"dataset": dataset, "migrations": migrations, "complete": False, "loads": []}
        backend.save_meta(meta)
    try:
        if not meta["complete"]:
            figures = load(backend, server, args)
            figures.update(date=datetime.date.today().isoformat(), binary=args.binary, commit=commit_of())
            meta["loads"].append(figures)
            meta["rss_after_load"] = server.rss_mib()
            meta["complete"] = True
            backend.save_meta(meta)
            print(f"  loaded: {figures['observations_sent']:,} Observations in {figures['observations_s']:.1f} s "
                  f"({figures['observations_rate'] or 0:,.0f}/s)", file=sys.stderr)
        else:
            print("  dataset already loaded (--reuse)", file=sys.stderr)
    finally:
        server.stop()
    if name == "postgres":
        psql("VACUUM (ANALYZE)", PG_DB)
    counts = {r[0]: int(r[1]) for r in backend.query(
        "SELECT res_type, COUNT(*) FROM resource WHERE NOT deleted GROUP BY res_type")}
    expected = {"Patient": args.patients, "Observation": args.observations}
    if any(counts.get(t, 0) != n for t, n in expected.items()):
        raise SystemExit(f"{backend.label}: the database holds {counts}, expected {expected}")
    result = {"name": name, "label": backend.label, "meta": meta, "counts": counts,
              "size_mib": backend.size_mib(), "tables": backend.table_sizes(), "migrations": migrations}
    if name == "sqlite":
        result["sqlite_stat1"] = bool(backend.query(
            "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'"))
    if args.no_queries:
        result["queries"] = []
        return result
    queries = build_queries(args)
    probe(backend, args, queries)
    result["memory"] = measure(backend, args, queries)
    for q in queries:
        q.pop("cases", None)
        q.pop("pages", None)
    result["queries"] = queries
    return result


def commit_of():
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


# ---------------------------------------------------------------------------------------------
# The report.

def verdict(value, limit):
    if limit is None:
        return ""
    return " (met)" if value < limit else " (**missed**)"


def status_of(q):
    if q.get("too_slow"):
        return f"**too slow**: no request completed within {q['too_slow']} s"
    if q["served"] is False:
        return f"not served: {q.get('answer', '')}"
    if q["served"] is None:
        return f"not measured: {q.get('answer', 'no URL')}"
    if q["failures"]:
        return f"**wrong results** in {len(q['failures'])} of {q['checked']} checked"
    return f"results checked ({q['checked']} URLs)"


def short_status(q):
    if q.get("too_slow"):
        return f"**too slow** (> {q['too_slow']} s)"
    if q["served"] is False:
        return "not served (" + q.get("answer", "").split(" ")[0] + ")"
    if q["served"] is None:
        return "not measured"
    if q["failures"]:
        return "**wrong results**"
    return "not measured"


def report(results, m, args):
    today = datetime.date.today().isoformat()
    release = os.path.basename(os.path.dirname(os.path.abspath(args.binary))) == "release"
    first = results[0]
    ds = first["meta"]["dataset"]
    counts = obs_counts(ds["patients"], ds["observations"])
    lines = [
        "# Search benchmarks",
        "",
        "Generated by `python3 benches/search.py` (do not edit by hand; re-run it). The load",
        "generator and the loader run on the same machine as the server, sharing its cores.",
        "",
        f"- date: {today}, commit `{m['commit']}`, {m['rustc']}, binary `{os.path.relpath(os.path.abspath(args.binary), ROOT)}`"
        + ("" if release else " (**not a release build: figures are not representative**)"),
        f"- machine: {m['cores']} cores ({m['cpu']}), {m['mem_gib']:.0f} GiB RAM, Linux {m['kernel']}",
        f"- load generator: {m['oha']}, {args.connections} connections, {args.duration} s per query"
        + (f" after {args.warmup} s of warm-up" if args.warmup else ""),
        f"- PostgreSQL {m['postgres']} on the same machine (`VACUUM ANALYZE` after the load, as autovacuum "
        "would have done); SQLite bundled, WAL, no `ANALYZE` run by the benchmark"
        + "".join(f" (`sqlite_stat1` {'present' if r['sqlite_stat1'] else 'absent'}: "
                  f"{'the server keeps statistics' if r['sqlite_stat1'] else 'the planner has no statistics'})"
                  for r in results if "sqlite_stat1" in r),
        "",
        "## Dataset",
        "",
        f"- {ds['patients']:,} Patients `{patient_id(0, ds['patients'])}`..`{patient_id(ds['patients'] - 1, ds['patients'])}`: "
        f"INS identifier (`{INS_SYSTEM}`, 13 digits), official name (family from {len(FAMILY)} French "
        "surnames, skewed; two given names), gender, birthDate",
        f"- {ds['observations']:,} Observations, status final, `subject` Patient/pNNNN, `effectiveDateTime` "
        "from 2019-01-01 to 2026-06-30 (+01:00/+02:00), UCUM `valueQuantity`: "
        + ", ".join(f"{k[0]} {k[3]} {int(k[1] * 100)}%" for k in KINDS)
        + " (blood pressure: panel 85354-9 with systolic 8480-6 and diastolic 8462-4 components; glucose is "
        "category laboratory, the rest vital-signs)",
        f"- {counts[0]:,} Observations per patient, {max(counts):,} for the 1% of heavy patients "
        f"(`p..07`, `p..107`...); seed {ds['seed']}",
        "- loaded with `PUT /fhir/{type}/{id}` (`Prefer: return=minimal`), Observations in date order "
        "(patients interleaved, as they arrive in a real record)",
        "",
        "| backend | database size | largest tables and indexes (MiB) |",
        "| --- | --- | --- |",
    ]
    for r in results:
        tables = ", ".join(f"{n} {s:,.0f}" for n, s in r["tables"][:6]) or "n/a"
        lines.append(f"| {r['label']} | {r['size_mib']:,.0f} MiB | {tables} |")
    lines += ["", "## Load", "",
              f"{args.load_procs} client processes, {args.load_connections} keep-alive connections in all, requests "
              "generated before the clock starts. The rate includes validation, storage and indexing; the "
              "loader's own CPU per request is given because it shares the cores with the server.", "",
              "| backend | Patients/s | Observations/s | Observations load time | loader CPU per request | server RSS after | binary, date |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        for f in r["meta"]["loads"]:
            lines.append(
                f"| {r['label']}{' (resumed)' if f['resumed'] else ''} | {f['patients_rate'] or 0:,.0f} | "
                f"{f['observations_rate'] or 0:,.0f} | {f['observations_s']:,.0f} s for {f['observations_sent']:,} | "
                f"{f.get('client_cpu_us') or 0:.0f} µs | "
                f"{r['meta'].get('rss_after_load', float('nan')):.0f} MiB | `{os.path.relpath(os.path.abspath(f['binary']), ROOT)}` "
                f"(HEAD `{f.get('commit', '?')}`), {f['date']} |")
    if args.no_queries:
        return "\n".join(lines) + "\n", None
    lines += ["", "## Queries", "",
              "Each query is timed on a list of URLs (one per sampled patient, INS, prefix or date); oha "
              "picks one at random for each request. Before timing, every URL is run once and its result "
              "compared with the generated data.", ""]
    for q in results[0]["queries"]:
        vary = f" ({q['vary']})" if q.get("vary") else ""
        lines.append(f"- **{q['title']}**: `{q['shape']}`{vary}. Why: {q['why']}.")
    lines += ["", "Latency is measured with one client (no request queues behind another); throughput with "
              f"{args.connections} concurrent clients, whose p50/p99 include the wait for one of the 2 cores.", "",
              "| query | target | " + " | ".join(
                  f"{r['label']}: one client p50 / p90 / p99 ms; {args.connections} clients p50 / p99 ms, req/s"
                  for r in results) + " |",
              "| --- | --- | " + " | ".join("---" for _ in results) + " |"]
    summary = []
    for n, q in enumerate(results[0]["queries"]):
        target = []
        if q["target"][0]:
            target.append(f"p50 < {q['target'][0]}")
        if q["target"][1]:
            target.append(f"p99 < {q['target'][1]}")
        cells = []
        for r in results:
            rq = r["queries"][n]
            o = rq.get("oha")
            o1 = rq.get("oha1")
            if o and o1:
                cells.append(f"{o1['p50_ms']:.2f}{verdict(o1['p50_ms'], q['target'][0])} / {o1['p90_ms']:.2f} / "
                             f"{o1['p99_ms']:.2f}{verdict(o1['p99_ms'], q['target'][1])}; "
                             f"{args.connections} clients: {o['p50_ms']:.2f} / {o['p99_ms']:.2f}, {o['rps']:,.0f}/s"
                             + ("" if not rq["failures"] else " (**wrong results**)"))
            else:
                cells.append(status_of(rq))
        lines.append(f"| {q['title']} | {', '.join(target) + ' ms' if target else ''} | " + " | ".join(cells) + " |")
        summary.append((q, [c if r["queries"][n].get("oha") else short_status(r["queries"][n])
                            for c, r in zip(cells, results)]))
    lines.append("")
    if not any(q["served"] for r in results for q in r["queries"]):
        lines += ["**This binary serves no search: nothing was timed.**", ""]
    for r in results:
        measured = [q for q in r["queries"] if q.get("oha")]
        if measured:
            lines += [f"{r['label']}: " + "; ".join(
                f"{q['key']}: {status_of(q)}, status codes {q['oha']['codes']}" for q in measured) + ".", ""]
        for q in r["queries"]:
            for failure in q["failures"][:3]:
                lines.append(f"- {r['label']} {q['key']}: {failure}")
        walks = next((q.get("walks") for q in r["queries"] if q["key"] == "patient-all-next"), None)
        if walks:
            heavy = max(walks, key=lambda w: w["rows"])
            lines.append(f"{r['label']} paging: the largest sampled record ({heavy['patient']}, {heavy['rows']} "
                         f"Observations) took {heavy['pages']} pages of 50, walked in {heavy['ms']:.0f} ms in all "
                         "(one client, debug logging on).")
            lines.append("")
    if results[0]["queries"] and any(q.get("oha") for r in results for q in r["queries"]):
        o = next(q["oha"] for r in results for q in r["queries"] if q.get("oha"))
        lines += ["Command (per query and backend):", "", "```", o["command"], "```", ""]
    lines += ["## Query plans", "",
              "The SQL each search ran, from the server's debug log (`CARNET_LOG=carnet::store=debug`), for the "
              "first URL of each query, with `EXPLAIN QUERY PLAN` (SQLite, through Python's sqlite3 "
              f"{sqlite3.sqlite_version}, which may plan differently from the SQLite bundled in the server) or "
              "`EXPLAIN (ANALYZE, BUFFERS)` (PostgreSQL).", ""]
    for r in results:
        for q in r["queries"]:
            lines.append(f"### {r['label']}: {q['title']}")
            lines.append("")
            if not q["served"]:
                lines += [status_of(q), ""]
                continue
            if q.get("paths"):
                lines += [f"`{q['paths'][0]}`" + (f" (first request {q['first_ms']:.1f} ms"
                                                  + (f", total {q['total']}" if q.get("total") is not None else "") + ")"
                                                  if q.get("first_ms") else ""), ""]
            if not q["statements"]:
                lines += ["No SQL found in the debug log.", ""]
            for s in q["statements"]:
                lines += ["```sql", s["sql"] + (f"\n-- binds: {s['binds']}" if s["binds"] is not None else ""), "```",
                          "", "```", s.get("plan", ""), "```", ""]
    if args.notes and os.path.exists(args.notes):
        with open(args.notes) as f:
            lines += [f.read().rstrip(), ""]
    return "\n".join(lines), summary


def summary_section(results, summary, args):
    out = os.path.relpath(os.path.abspath(args.out), os.path.dirname(os.path.abspath(args.summary_out)))
    first = results[0]["meta"]["dataset"]
    lines = [MARK_BEGIN, "", "## Search", "",
             f"{first['observations']:,} Observations over {first['patients']:,} Patients, "
             f"{datetime.date.today().isoformat()}; details, dataset, commands and query plans in "
             f"[{os.path.basename(args.out)}]({out}) (`python3 benches/search.py`).", "",
             "| | " + " | ".join(r["label"] for r in results) + " |",
             "| --- | " + " | ".join("---" for _ in results) + " |",
             "| load, Observations/s | " + " | ".join(
                 f"{r['meta']['loads'][-1]['observations_rate'] or 0:,.0f}" for r in results) + " |"]
    for q, cells in summary or []:
        target = ""
        if q["target"][0] or q["target"][1]:
            target = " (target " + ", ".join(x for x in [f"p50 < {q['target'][0]}" if q["target"][0] else "",
                                                         f"p99 < {q['target'][1]}" if q["target"][1] else ""] if x) + " ms)"
        lines.append(f"| {q['title']}{target}: one client p50 / p90 / p99 ms; {args.connections} clients | "
                     + " | ".join(cells) + " |")
    lines += ["", MARK_END]
    return "\n".join(lines)


def upsert_section(path, section):
    text = open(path).read() if os.path.exists(path) else ""
    if MARK_BEGIN in text and MARK_END in text:
        before = text[:text.index(MARK_BEGIN)]
        after = text[text.index(MARK_END) + len(MARK_END):]
        text = before + section + after
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=20, help="seconds of oha per query and backend")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of oha before each timed run (0: none)")
    parser.add_argument("--connections", type=int, default=16, help="oha connections for throughput")
    parser.add_argument("--latency-duration", type=int, default=5,
                        help="seconds of the one-client latency run of each query")
    parser.add_argument("--sample", type=int, default=200, help="URLs per query (patients, INS, prefixes)")
    parser.add_argument("--reuse", action="store_true", help="keep the loaded databases and reuse them")
    parser.add_argument("--keep-schema", action="store_true",
                        help="with --reuse, keep a database whose migrations changed since the load "
                             "(only when the new migrations leave the index rows valid)")
    parser.add_argument("--no-queries", action="store_true", help="load (and report the load) only")
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "carnet"))
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--load-procs", type=int, default=2, help="loader processes")
    parser.add_argument("--load-connections", type=int, default=32, help="loader connections, all processes")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks-search.md"))
    parser.add_argument("--summary-out", default=os.path.join(ROOT, "docs", "benchmarks.md"),
                        help="file whose marked Search section is rewritten ('' for none)")
    parser.add_argument("--notes", default=os.path.join(ROOT, "benches", "search_notes.md"))
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        raise SystemExit(f"no binary at {args.binary}: cargo build --release (or --binary target/debug/carnet)")
    if not shutil.which("oha") and not args.no_queries:
        raise SystemExit("install the load generator first: cargo install oha --locked")
    if args.patients < 1 or args.observations < 0:
        raise SystemExit("need at least one patient")
    os.makedirs(WORK, exist_ok=True)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results = []
    for name in backends:
        results.append(run_backend(name, args))
    try:
        m = machine()
    except OSError:  # no oha (--no-queries)
        m = {"cpu": "?", "cores": os.cpu_count(), "mem_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
             "kernel": os.uname().release, "oha": "no oha", "rustc": "?", "commit": commit_of(), "postgres": "?"}
    text, summary = report(results, m, args)
    with open(args.out, "w") as f:
        f.write(text.rstrip() + "\n")
    if args.summary_out:
        upsert_section(args.summary_out, summary_section(results, summary, args))
    print(text)


if __name__ == "__main__":
    main()
