"""SMART App Launch through the real flows, against a real upstream OpenID provider.

An OpenID Certified provider nobody here wrote (npm oidc-provider, conformance/idp/provider.mjs)
plays Pro Santé Connect (served at PSC's own discovery path, with PSC-shaped claims) and a
patients' federation (INS in userinfo only). These tests play the browser with `requests`
through the whole authorization code flow: authorize -> upstream sign-in -> callback -> patient
choice -> approval -> code -> token -> FHIR calls; a SMART client library (authlib, PKCE) does
a launch of its own; the id_token and a backend service's assertion are handled with PyJWT.
Every refusal the issue lists is tried (PKCE missing, blank, wrong or equal to the challenge;
reused code; redirect mismatch; wrong aud; refresh reuse and widening).
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import BACKENDS, fresh_database, running_server

IDP_DIR = Path(__file__).parent / "idp"
INS = "urn:oid:1.2.250.1.213.1.4.8"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
ALICE_INS = "2850399000001"
APP_REDIRECT = "http://127.0.0.1:9/app/callback"  # never fetched: the tests read the redirect
APP_SCOPES = "openid fhirUser launch/patient offline_access patient/*.rs user/*.rs"
# What a patient-facing launch asks for (Inferno's default).
PATIENT_APP = "launch/patient openid fhirUser offline_access patient/*.rs"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is needed for oidc-provider")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class Smart:
    """A Carnet server with two upstream providers, its clients, and a seeded record."""

    def __init__(self, server, idp_root: str, workdir: Path):
        self.server = server
        self.idp = idp_root
        self.root = server.root_url
        self.base = server.base_url
        self.workdir = workdir
        self.operator = server.client()

    def carnet(self, *args: str) -> str:
        result = subprocess.run(
            [str(self.server.binary), *args, "--database-url", self.server.database_url],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def authorize_params(self, challenge: str, **overrides) -> dict:
        params = {
            "response_type": "code",
            "client_id": "app",
            "redirect_uri": APP_REDIRECT,
            "scope": APP_SCOPES,
            "state": secrets.token_urlsafe(8),
            "aud": self.base,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v is not None}

    def browse(self, session: requests.Session, url: str, login: str, provider: str,
               ins: str = ALICE_INS, method: str = "GET", data: dict | None = None,
               redirect_prefix: str = APP_REDIRECT, decision: str = "allow") -> str:
        """Plays a person's browser from `url` until it is sent to `redirect_prefix`; returns
        that URL. Signs in upstream as `login`, picks the patient by `ins`, then `decision`."""
        for _ in range(30):
            r = session.request(method, url, data=data, allow_redirects=False, timeout=30)
            method, data = "GET", None
            if r.is_redirect or r.status_code in (301, 302, 303, 307, 308):
                url = urljoin(url, r.headers["Location"])
                if url.startswith(redirect_prefix):
                    return url
                continue
            assert r.status_code == 200, f"{r.status_code} at {url}: {r.text[:1500]}"
            page = r.text
            if url.startswith(self.idp):
                action = html.unescape(re.search(r'<form[^>]*action="([^"]+)"', page).group(1))
                fields = dict(re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page))
                if 'name="login"' in page:
                    fields.update({"login": login, "password": "any"})
                url, method, data = urljoin(url, action), "POST", fields
            elif 'id="signin-' in page:
                href = re.search(rf'id="signin-{provider}" href="([^"]+)"', page).group(1)
                url = urljoin(url, html.unescape(href))
            elif 'name="ins"' in page:
                request_id = re.search(r'name="request" value="([^"]+)"', page).group(1)
                url, method, data = urljoin(url, "/auth/patient"), "POST", {"request": request_id, "ins": ins}
            elif 'id="allow"' in page:
                request_id = re.search(r'name="request" value="([^"]+)"', page).group(1)
                url, method, data = urljoin(url, "/auth/consent"), "POST", {"request": request_id, "decision": decision}
            else:
                raise AssertionError(f"unexpected page at {url}: {page[:1500]}")
        raise AssertionError("the flow did not end")

    def code(self, login: str = "899700218896", provider: str = "psc", **overrides) -> tuple[str, str, dict]:
        """A fresh authorization code: (code, verifier, the redirect's parameters)."""
        verifier, challenge = pkce()
        session = requests.Session()
        params = self.authorize_params(challenge, **overrides)
        url = f"{self.root}/auth/authorize?" + requests.compat.urlencode(params)
        final = self.browse(session, url, login, provider)
        answer = {k: v[0] for k, v in parse_qs(urlsplit(final).query).items()}
        assert answer.get("state") == params["state"], answer
        return answer.get("code"), verifier, answer

    def token(self, **form) -> requests.Response:
        return requests.post(f"{self.root}/auth/token", data=form, timeout=30)

    def exchange(self, code: str, verifier: str | None, **extra) -> requests.Response:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": APP_REDIRECT,
                "client_id": "app", "code_verifier": verifier}
        form.update(extra)
        return self.token(**{k: v for k, v in form.items() if v is not None})

    def get(self, token: str, path: str) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base}/{path}"
        return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture(scope="module", params=BACKENDS)
def smart(request, carnet_bin, tmp_path_factory):
    backend = request.param
    workdir = tmp_path_factory.mktemp(f"smart-{backend}")
    idp_port = free_port()
    idp = f"http://127.0.0.1:{idp_port}"
    config = workdir / "carnet.toml"
    config.write_text(f"""
[[identity_provider]]
id = "psc"
name = "Pro Santé Connect"
signs_in = "professional"
issuer = "{idp}/auth/realms/esante-wallet"
discovery_url = "{idp}/auth/realms/esante-wallet/.well-known/wallet-openid-configuration"
client_id = "carnet"
client_secret = "carnet-test-secret"
scopes = ["openid", "scope_all"]
acr_values = "eidas1"
identifier_claim = "SubjectNameID"
identifier_system = "{RPPS}"
profession_claim = "SubjectRole"
auto_provision = true

[[identity_provider]]
id = "patients"
name = "the patients' federation"
signs_in = "patient"
issuer = "{idp}/patients"
client_id = "carnet"
client_secret = "carnet-test-secret"
scopes = ["openid", "ins"]
identifier_claim = "ins"
identifier_system = "{INS}"
""")
    if not (IDP_DIR / "node_modules" / "oidc-provider").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=IDP_DIR, check=True, timeout=600)
    with fresh_database(backend, workdir) as database_url:
        with running_server(backend, carnet_bin, database_url, workdir, "test_smart",
                            extra_args=("--config", str(config)), public_base=None) as srv:
            log = open(workdir / "idp.log", "w")
            node = subprocess.Popen(
                ["node", str(IDP_DIR / "provider.mjs"), str(idp_port), f"{srv.root_url}/auth/callback"],
                stdout=subprocess.PIPE, stderr=log, text=True,
            )
            try:
                line = node.stdout.readline()
                assert "listening" in line, f"oidc-provider did not start: {line}"
                smart = Smart(srv, idp, workdir)
                smart.carnet("client", "add", "app", "--kind", "public", "--scope", APP_SCOPES,
                             "--redirect-uri", APP_REDIRECT, "--name", "Carnet test app")
                put = smart.operator.put
                r = put("Patient/alice", {"resourceType": "Patient", "id": "alice",
                                          "identifier": [{"system": INS, "value": ALICE_INS}]})
                assert r.status_code in (200, 201), r.text
                r = put("Patient/bob", {"resourceType": "Patient", "id": "bob"})
                assert r.status_code in (200, 201), r.text
                for pid in ("alice", "bob"):
                    r = put(f"Observation/w-{pid}", {
                        "resourceType": "Observation", "id": f"w-{pid}", "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                        "subject": {"reference": f"Patient/{pid}"},
                        "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}})
                    assert r.status_code in (200, 201), r.text
                yield smart
            finally:
                node.terminate()
                node.wait(10)
                log.close()


def test_a_professional_signs_in_through_psc_and_reads_the_chosen_patient(smart):
    code, verifier, answer = smart.code(scope=PATIENT_APP)
    assert code and answer["iss"] == smart.base
    r = smart.exchange(code, verifier)
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] <= 3600
    assert body["patient"] == "alice"
    assert set(body["scope"].split()) == set(PATIENT_APP.split())
    # The id_token, checked with a JOSE library against the server's JWKS.
    jwks = requests.get(f"{smart.root}/auth/jwks", timeout=30).json()
    assert jwt.get_unverified_header(body["id_token"])["alg"] == "RS256"
    key = jwt.PyJWK(jwks["keys"][0]).key
    claims = jwt.decode(body["id_token"], key, algorithms=["RS256"], audience="app", issuer=smart.base)
    assert claims["fhirUser"].startswith(f"{smart.base}/Practitioner/")
    # The fhirUser reads back with the access token: auto-provisioned from PSC's claims.
    practitioner = smart.get(body["access_token"], claims["fhirUser"])
    assert practitioner.status_code == 200, practitioner.text
    p = practitioner.json()
    assert p["identifier"] == [{"system": RPPS, "value": "899700218896"}]
    assert p["name"][0]["family"] == "Martin"
    assert p["qualification"][0]["code"]["coding"][0] == {"system": "urn:oid:1.2.250.1.213.1.1.5.5", "code": "10"}
    # patient/ scopes reach Alice's record only.
    token = body["access_token"]
    seen = smart.get(token, "Observation").json()
    assert [e["resource"]["id"] for e in seen.get("entry", [])] == ["w-alice"]
    assert smart.get(token, "Observation/w-bob").status_code == 404
    # Introspection reports the grant and its context.
    info = requests.post(f"{smart.root}/auth/introspect", data={"token": token}, timeout=30).json()
    assert info["active"] is True and info["patient"] == "alice" and info["client_id"] == "app"
    # A second sign-in finds the same Practitioner.
    code2, verifier2, _ = smart.code()
    again = smart.exchange(code2, verifier2).json()
    assert jwt.decode(again["id_token"], key, algorithms=["RS256"], audience="app")["fhirUser"] == claims["fhirUser"]


def test_codes_need_the_right_verifier_once_and_the_same_redirect(smart):
    for verifier in (None, "", "wrong-" + secrets.token_urlsafe(48)):
        code, _, _ = smart.code()
        r = smart.exchange(code, verifier)
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    # The verifier equal to the challenge.
    verifier, challenge = pkce()
    code, _, _ = smart.code(code_challenge=challenge)
    assert smart.exchange(code, challenge).status_code == 400
    # Reused: the second exchange fails, and the tokens of the first are revoked.
    code, verifier, _ = smart.code()
    first = smart.exchange(code, verifier).json()
    assert smart.get(first["access_token"], "Patient/alice").status_code == 200
    again = smart.exchange(code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert smart.get(first["access_token"], "Patient/alice").status_code == 401
    # Another redirect_uri at the token endpoint.
    code, verifier, _ = smart.code()
    r = smart.exchange(code, verifier, redirect_uri="http://127.0.0.1:9/elsewhere")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    # Unknown code, unknown client.
    assert smart.exchange("BAD_CODE", verifier).status_code == 400
    r = smart.exchange("BAD_CODE", verifier, client_id="BAD_CLIENT_ID")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_the_authorize_request_is_checked_before_anyone_signs_in(smart):
    verifier, challenge = pkce()
    # Wrong aud: back to the app with an error and no code.
    params = smart.authorize_params(challenge, aud="https://inferno.healthit.gov/invalid_aud")
    r = requests.get(f"{smart.root}/auth/authorize", params=params, allow_redirects=False, timeout=30)
    assert r.status_code == 303
    answer = parse_qs(urlsplit(r.headers["Location"]).query)
    assert answer["error"] == ["invalid_request"] and "code" not in answer
    # No PKCE, or plain.
    for overrides in ({"code_challenge": None}, {"code_challenge_method": "plain"}):
        r = requests.get(f"{smart.root}/auth/authorize", params=smart.authorize_params(challenge, **overrides),
                         allow_redirects=False, timeout=30)
        assert parse_qs(urlsplit(r.headers["Location"]).query)["error"] == ["invalid_request"]
    # An unregistered redirect_uri is never redirected to.
    r = requests.get(f"{smart.root}/auth/authorize",
                     params=smart.authorize_params(challenge, redirect_uri="https://evil.example/cb"),
                     allow_redirects=False, timeout=30)
    assert r.status_code == 400 and "text/html" in r.headers["Content-Type"]
    # POST works too.
    r = requests.post(f"{smart.root}/auth/authorize", data=smart.authorize_params(challenge), timeout=30)
    assert r.status_code == 200 and 'id="signin-psc"' in r.text


def test_refresh_tokens_rotate_and_never_widen(smart):
    code, verifier, _ = smart.code()
    first = smart.exchange(code, verifier).json()
    r = smart.token(grant_type="refresh_token", refresh_token=first["refresh_token"], client_id="app")
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"] and second["patient"] == "alice"
    assert smart.get(second["access_token"], "Patient/alice").status_code == 200
    # Narrower on request, never wider.
    r = smart.token(grant_type="refresh_token", refresh_token=second["refresh_token"], client_id="app",
                    scope="patient/Observation.rs system/*.cruds")
    third = r.json()
    assert third["scope"] == "patient/Observation.rs", third
    assert smart.get(third["access_token"], "Patient/alice").status_code == 403
    # A used refresh token revokes the whole family.
    replay = smart.token(grant_type="refresh_token", refresh_token=first["refresh_token"], client_id="app")
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert smart.get(third["access_token"], "Observation").status_code == 401
    r = smart.token(grant_type="refresh_token", refresh_token=third["refresh_token"], client_id="app")
    assert r.status_code == 400
    assert smart.token(grant_type="refresh_token", refresh_token="random", client_id="app").status_code == 400


def test_a_patient_signs_in_with_their_ins_and_sees_their_own_record(smart):
    code, verifier, _ = smart.code(login="patient-alice", provider="patients")
    body = smart.exchange(code, verifier).json()
    assert body["patient"] == "alice"
    key = jwt.PyJWK(requests.get(f"{smart.root}/auth/jwks", timeout=30).json()["keys"][0]).key
    claims = jwt.decode(body["id_token"], key, algorithms=["RS256"], audience="app")
    assert claims["fhirUser"] == f"{smart.base}/Patient/alice"
    token = body["access_token"]
    assert smart.get(token, "Patient/alice").status_code == 200
    assert smart.get(token, "Patient/bob").status_code == 404
    found = smart.get(token, "Observation?_summary=count").json()
    assert found["total"] == 1


def test_unknown_people_get_a_clear_page(smart):
    session = requests.Session()
    _, challenge = pkce()
    url = f"{smart.root}/auth/authorize?" + requests.compat.urlencode(smart.authorize_params(challenge))
    with pytest.raises(AssertionError, match="403"):
        smart.browse(session, url, "patient-unknown", "patients")


def test_a_smart_client_library_completes_a_launch(smart):
    """authlib's OAuth2Session builds the request (PKCE S256) and exchanges the code."""
    client = OAuth2Session("app", scope=APP_SCOPES, redirect_uri=APP_REDIRECT,
                           code_challenge_method="S256", token_endpoint_auth_method="none")
    verifier = secrets.token_urlsafe(48)
    url, state = client.create_authorization_url(f"{smart.root}/auth/authorize", code_verifier=verifier,
                                                 aud=smart.base)
    final = smart.browse(requests.Session(), url, "899700218896", "psc")
    token = client.fetch_token(f"{smart.root}/auth/token", authorization_response=final,
                               code_verifier=verifier)
    assert token["patient"] == "alice"
    r = client.get(f"{smart.base}/Observation?patient=alice")
    assert r.status_code == 200 and r.json()["entry"][0]["resource"]["id"] == "w-alice"
    refreshed = client.refresh_token(f"{smart.root}/auth/token")
    assert refreshed["access_token"] != token["access_token"]


def test_a_backend_service_signs_its_assertion_with_pyjwt(smart, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": "rs1", "alg": "RS384", "use": "sig"})
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [public]}))
    smart.carnet("client", "add", f"feed-{secrets.token_hex(3)}", "--kind", "backend",
                 "--scope", "system/Observation.rs", "--jwks", f"@{jwks}")
    listed = smart.carnet("client", "list")
    client_id = [line.split("\t")[0] for line in listed.splitlines() if line.startswith("feed-")][-1]
    token_url = f"{smart.root}/auth/token"

    def assertion(**overrides):
        claims = {"iss": client_id, "sub": client_id, "aud": token_url,
                  "exp": int(time.time()) + 240, "jti": secrets.token_hex(8)}
        claims.update(overrides)
        return jwt.encode(claims, key, algorithm="RS384", headers={"kid": "rs1"})

    def ask(signed):
        return smart.token(grant_type="client_credentials", scope="system/Observation.rs",
                           client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                           client_assertion=signed)

    signed = assertion()
    r = ask(signed)
    assert r.status_code == 200, r.text
    assert r.json()["expires_in"] <= 300
    assert smart.get(r.json()["access_token"], "Observation").status_code == 200
    assert ask(signed).status_code == 401  # replayed jti
    assert ask(assertion(aud=smart.base)).status_code == 401
    assert ask(assertion(exp=int(time.time()) + 3600)).status_code == 401
    assert ask(assertion(iss="someone-else")).status_code == 401


def test_people_see_and_withdraw_the_apps_they_authorised(smart):
    code, verifier, _ = smart.code(login="patient-alice", provider="patients")
    body = smart.exchange(code, verifier).json()
    session = requests.Session()
    final = smart.browse(session, f"{smart.root}/auth/manage", "patient-alice", "patients",
                         redirect_prefix=f"{smart.root}/auth/manage")
    page = session.get(final, timeout=30)
    assert 'id="revoke-app"' in page.text, page.text
    r = session.post(f"{smart.root}/auth/manage/revoke", data={"client_id": "app"}, timeout=30)
    assert r.status_code == 200 and 'id="none"' in r.text, r.text
    assert smart.get(body["access_token"], "Patient/alice").status_code == 401
    r = smart.token(grant_type="refresh_token", refresh_token=body["refresh_token"], client_id="app")
    assert r.status_code == 400


@pytest.mark.skipif(shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists(),
                    reason="Debian's chromium is needed")
def test_a_person_signs_in_with_a_real_browser(smart):
    """The pages work as a person sees them: headless Chromium clicks through every one."""
    verifier, challenge = pkce()
    params = smart.authorize_params(challenge, scope=PATIENT_APP)
    url = f"{smart.root}/auth/authorize?" + requests.compat.urlencode(params)
    run = subprocess.run(
        ["node", str(IDP_DIR / "browser.mjs"), url, APP_REDIRECT, "899700218896", ALICE_INS,
         str(smart.workdir)],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["user"].startswith("Practitioner/")
    answer = {k: v[0] for k, v in parse_qs(urlsplit(result["url"]).query).items()}
    assert answer["state"] == params["state"]
    body = smart.exchange(answer["code"], verifier).json()
    assert body["patient"] == "alice"
    assert smart.get(body["access_token"], "Observation/w-alice").status_code == 200
    assert (smart.workdir / "consent.png").stat().st_size > 0


def test_revoking_a_refresh_token_ends_its_grant(smart):
    code, verifier, _ = smart.code()
    body = smart.exchange(code, verifier).json()
    r = requests.post(f"{smart.root}/auth/revoke", data={"token": body["refresh_token"]}, timeout=30)
    assert r.status_code == 200
    r = smart.token(grant_type="refresh_token", refresh_token=body["refresh_token"], client_id="app")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert smart.get(body["access_token"], "Patient/alice").status_code == 401
