"""Fixtures: the `carnet` binary, a running server per backend, the official HL7 examples.

Environment:
  CARNET_BIN               the binary to test (default: <repo>/target/debug/carnet)
  CARNET_HL7_EXAMPLES      the unpacked npm package hl7.fhir.r4.examples@4.0.1
                           (default: conformance/.cache/hl7.fhir.r4.examples/package)
  CARNET_BACKENDS          comma-separated backends to run against (default: sqlite,postgres)
  CARNET_PG_ADMIN_URL      where to CREATE/DROP the per-module databases
                           (default: postgres://postgres@127.0.0.1:5432/postgres)
  CARNET_PUBLIC_BASE       the --base-url given to the server (default: https://carnet.test/fhir)
  CARNET_STARTUP_TIMEOUT   seconds to wait for the listening line and /health (default: 60)
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from support import REPO, HERE, Fhir

BACKENDS = [b.strip() for b in os.environ.get("CARNET_BACKENDS", "sqlite,postgres").split(",") if b.strip()]
PG_ADMIN_URL = os.environ.get("CARNET_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
PUBLIC_BASE = os.environ.get("CARNET_PUBLIC_BASE", "https://carnet.test/fhir")
STARTUP_TIMEOUT = float(os.environ.get("CARNET_STARTUP_TIMEOUT", "60"))
DEFAULT_EXAMPLES = HERE / ".cache" / "hl7.fhir.r4.examples" / "package"
LISTENING_RE = re.compile(r"^carnet listening on (http://127\.0\.0\.1:(\d+))$")

for _b in BACKENDS:
    if _b not in ("sqlite", "postgres"):
        raise pytest.UsageError(f"CARNET_BACKENDS: unknown backend {_b!r} (sqlite, postgres)")


# --------------------------------------------------------------------------------------------
# The binary and the examples
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def carnet_bin() -> Path:
    path = Path(os.environ.get("CARNET_BIN") or REPO / "target" / "debug" / "carnet")
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"carnet binary not found at {path}: build it with `cargo build` "
            "or point CARNET_BIN at one",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def hl7_examples() -> Path:
    env = os.environ.get("CARNET_HL7_EXAMPLES")
    path = Path(env) if env else DEFAULT_EXAMPLES
    if not (path / "Patient-example.json").is_file():
        pytest.fail(
            f"the official HL7 R4 examples are missing: {path}/Patient-example.json does not exist.\n"
            "Get them with `bash conformance/get-hl7-examples.sh` (npm pack "
            "hl7.fhir.r4.examples@4.0.1, untarred into "
            "conformance/.cache/hl7.fhir.r4.examples/package), or set CARNET_HL7_EXAMPLES to the "
            "`package` directory of that npm package.",
            pytrace=False,
        )
    return path


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class CarnetServer:
    """One running `carnet serve` process."""

    def __init__(self, backend: str, binary: Path, database_url: str, workdir: Path,
                 extra_args: tuple = (), public_base: str | None = PUBLIC_BASE):
        """`public_base` None: the server's own address is its public base (what a browser
        reaches, for the sign-in flows)."""
        self.backend = backend
        self.binary = binary
        self.database_url = database_url
        self.public_base = public_base
        self.extra_args = list(extra_args)
        self.stderr_path = workdir / "carnet.stderr.log"
        self.stdout_lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.root_url = ""
        self.base_url = ""
        self.token = ""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        argv = [
            str(self.binary),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            self.database_url,
            # Export files next to the test's logs, not in the working directory.
            "--export-dir",
            str(self.stderr_path.parent / "export"),
            *self.extra_args,
        ]
        if self.public_base:
            argv += ["--base-url", self.public_base]
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        self._stderr_file = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr_file, env=env
        )
        lines: queue.Queue = queue.Queue()

        def drain() -> None:  # keep reading stdout so that the server never blocks on it
            assert self.proc and self.proc.stdout
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self.stdout_lines.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, name=f"carnet-stdout-{self.backend}", daemon=True).start()

        deadline = time.monotonic() + STARTUP_TIMEOUT
        try:
            first = lines.get(timeout=STARTUP_TIMEOUT)
        except queue.Empty:
            self._fail_start(f"no line on stdout within {STARTUP_TIMEOUT:.0f}s")
        if first is None:
            self.proc.wait(5)
            self._fail_start(f"exited with status {self.proc.returncode} before printing anything")
        match = LISTENING_RE.match(first)
        if not match:
            self._fail_start(
                f"the first line on stdout is {first!r}, expected "
                "'carnet listening on http://127.0.0.1:PORT'"
            )
        self.root_url = match.group(1)
        self.base_url = self.root_url + "/fhir"
        if not self.public_base:
            self.public_base = self.base_url

        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail_start(f"exited with status {self.proc.returncode} while starting")
            try:
                last = requests.get(self.root_url + "/health", timeout=5)
                if last.status_code == 200:
                    self.token = self.issue_token("system/*.cruds")
                    return
            except requests.RequestException as exc:
                last = exc
            time.sleep(0.05)
        self._fail_start(f"GET /health never answered 200 within {STARTUP_TIMEOUT:.0f}s (last: {last})")

    def _fail_start(self, why: str):
        self.stop()
        pytest.fail(
            f"carnet ({self.backend}) did not start: {why}\n"
            f"command: {self.binary} serve --listen 127.0.0.1:0 --database-url {self.database_url} "
            f"--base-url {self.public_base}\n"
            f"stdout:\n{chr(10).join(self.stdout_lines) or '(empty)'}\n"
            f"stderr:\n{self.stderr_tail()}",
            pytrace=False,
        )

    def stop(self) -> int | None:
        """Terminate the server; returns the status it had exited with on its own, if it had."""
        if self.proc is None:
            return None
        crashed = self.proc.poll()
        if crashed is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._stderr_file.close()
        self.proc = None
        return crashed

    # -- stderr -----------------------------------------------------------------------------

    def stderr_offset(self) -> int:
        try:
            return self.stderr_path.stat().st_size
        except FileNotFoundError:
            return 0

    def stderr_since(self, offset: int, limit: int = 20000) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return "(no stderr file)"
        text = data.decode("utf-8", "replace")
        if len(text) > limit:
            text = "...\n" + text[-limit:]
        return text or "(empty)"

    def stderr_tail(self, limit: int = 20000) -> str:
        return self.stderr_since(0, limit)

    # -- clients ----------------------------------------------------------------------------

    def issue_token(self, scope: str, *extra: str) -> str:
        """An access token from `carnet token` (the operator's way, no browser)."""
        result = subprocess.run(
            [str(self.binary), "token", "--database-url", self.database_url,
             "--base-url", self.public_base, "--scope", scope, *extra],
            capture_output=True, text=True, timeout=60,
        )
        if result.returncode != 0:
            self._fail_start(f"carnet token failed: {result.stderr}")
        return result.stdout.strip()

    def client(self) -> Fhir:
        return Fhir(self.base_url, self.token)

    def __repr__(self) -> str:
        return f"<carnet {self.backend} at {self.base_url}>"


def _psql(sql: str) -> None:
    if shutil.which("psql") is None:
        pytest.fail("psql is not installed: the postgres backend needs it (or set CARNET_BACKENDS=sqlite)")
    result = subprocess.run(
        ["psql", PG_ADMIN_URL, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        pytest.fail(
            f"psql {PG_ADMIN_URL} -c {sql!r} failed ({result.returncode}): {result.stderr.strip()}\n"
            "The postgres backend needs a PostgreSQL server (set CARNET_PG_ADMIN_URL, "
            "or CARNET_BACKENDS=sqlite to leave it out).",
            pytrace=False,
        )


def _database_url(name: str) -> str:
    parts = urlsplit(PG_ADMIN_URL)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@contextlib.contextmanager
def fresh_database(backend: str, workdir: Path, name: str = "carnet"):
    """A new, empty database of `backend` (an SQLite file in `workdir`, or a PostgreSQL
    database created for the purpose and dropped afterwards); yields its URL."""
    if backend == "sqlite":
        yield f"sqlite:{workdir / (name + '.db')}"
        return
    dbname = f"carnet_conf_{secrets.token_hex(6)}"
    _psql(f'CREATE DATABASE "{dbname}"')
    try:
        yield _database_url(dbname)
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@contextlib.contextmanager
def running_server(backend: str, binary: Path, database_url: str, workdir: Path, who: str,
                   **options):
    """A `carnet serve` on `database_url`, stopped afterwards; fails the test if it exited by
    itself meanwhile. `options` go to `CarnetServer`."""
    srv = CarnetServer(backend, binary, database_url, workdir, **options)
    try:
        srv.start()
        yield srv
        crashed = srv.stop()
        if crashed is not None:
            pytest.fail(
                f"carnet ({backend}) exited by itself with status {crashed} during "
                f"{who}; stderr:\n{srv.stderr_tail()}",
                pytrace=False,
            )
    finally:
        srv.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, carnet_bin, tmp_path_factory):
    """A fresh server (fresh database) per test module and backend; yields a `CarnetServer`
    whose `base_url` is the FHIR base `http://127.0.0.1:PORT/fhir`."""
    backend = request.param
    workdir = tmp_path_factory.mktemp(f"carnet-{backend}")
    with fresh_database(backend, workdir) as database_url:
        with running_server(backend, carnet_bin, database_url, workdir, request.module.__name__) as srv:
            yield srv


@pytest.fixture
def fhir(server):
    """A keep-alive HTTP client on the server's FHIR base."""
    client = server.client()
    yield client
    client.close()


# --------------------------------------------------------------------------------------------
# On a failing test, show what the server wrote on stderr meanwhile.
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _carnet_stderr_mark(request):
    if "server" in request.fixturenames:
        srv = request.getfixturevalue("server")
        request.node._carnet_mark = (srv, srv.stderr_offset())
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    mark = getattr(item, "_carnet_mark", None)
    if mark and report.failed and report.when == "call":
        srv, offset = mark
        report.sections.append((f"carnet stderr ({srv.backend}) during this test", srv.stderr_since(offset)))
