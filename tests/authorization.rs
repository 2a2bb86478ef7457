//! Authorization through the HTTP API: tokens refused in every malformed or forged shape,
//! scopes enforced per interaction (transactions entry by entry), patient tokens held to their
//! compartment, query-limited scopes applied, backend services' signed assertions checked.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use carnet::auth::jwt::SigningKey;
use common::{Backend, Server};
use diesel::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use serde_json::{json, Value};

const LAB: &str = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
const VITALS: &str = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The server's signing key, read from its database (as anyone who can read it could).
fn server_key(server: &Server) -> SigningKey {
    diesel::table! { server_key (name) { name -> Text, key -> Binary, } }
    let url = &server.database.url;
    let key: Vec<u8> = if let Some(path) = url.strip_prefix("sqlite:") {
        let mut conn = SqliteConnection::establish(path).unwrap();
        server_key::table
            .filter(server_key::name.eq("token-signing-rsa"))
            .select(server_key::key)
            .first(&mut conn)
            .unwrap()
    } else {
        let mut conn = PgConnection::establish(url).unwrap();
        server_key::table
            .filter(server_key::name.eq("token-signing-rsa"))
            .select(server_key::key)
            .first(&mut conn)
            .unwrap()
    };
    SigningKey::from_pkcs8(&key).unwrap()
}

fn claims(server: &Server) -> Value {
    json!({
        "iss": server.issuer, "aud": server.issuer, "sub": "x", "client_id": "x",
        "scope": "system/*.cruds", "iat": now(), "exp": now() + 300, "jti": "not-recorded",
    })
}

fn status_with(server: &Server, token: &str) -> u16 {
    server
        .request("GET", "/Patient")
        .bearer(token)
        .send()
        .status
}

fn patient(server: &Server, id: &str) {
    let r = server.put(
        &format!("/Patient/{id}"),
        &json!({"resourceType": "Patient", "id": id}),
    );
    assert!(r.status < 300, "{}", r.text());
}

fn observation(server: &Server, id: &str, patient: &str, category: &str) {
    let (system, code) = category.split_once('|').unwrap();
    let body = json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": system, "code": code}]}],
        "code": {"text": id},
        "subject": {"reference": format!("Patient/{patient}")},
    });
    let r = server.put(&format!("/Observation/{id}"), &body);
    assert!(r.status < 300, "{}", r.text());
}

fn ids(bundle: &Value) -> Vec<String> {
    let mut out: Vec<String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

fn form(server: &Server, path: &str, body: &str) -> common::Response {
    let url = format!("{}{path}", server.base.trim_end_matches("/fhir"));
    server
        .request("POST", &url)
        .anonymous()
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.as_bytes())
}

backend_tests! {
    fn requests_without_a_valid_token_are_refused(server: &Server) {
        let anonymous = server.request("GET", "/Patient").anonymous().send();
        anonymous.outcome(401);
        assert!(anonymous.header("www-authenticate").unwrap().starts_with("Bearer"));
        let metadata = server.request("GET", "/metadata").anonymous().send().ok_json();
        let security = &metadata["rest"][0]["security"];
        assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
        assert!(security["extension"][0]["extension"].as_array().unwrap().iter().any(|e| e["url"] == "token"));
        let root = server.base.trim_end_matches("/fhir");
        let discovery = server
            .request("GET", &format!("{root}/.well-known/smart-configuration"))
            .anonymous()
            .header("Origin", "https://app.example")
            .send();
        assert_eq!(discovery.status, 200);
        assert_eq!(discovery.header("access-control-allow-origin"), Some("*"));
        let doc = discovery.json();
        assert_eq!(doc["token_endpoint"], format!("{root}/auth/token"));
        assert!(doc["capabilities"].as_array().unwrap().iter().any(|c| c == "permission-v2"));
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(server.request("GET", &format!("{root}/health")).anonymous().send().status, 200);
        server.request("GET", "/Patient").header("Authorization", "Basic eDp5").send().outcome(401);
        server.request("GET", "/Patient").bearer("not-a-jwt").send().outcome(401);
        // Nothing is written without a token.
        server
            .request("POST", "/Patient")
            .anonymous()
            .json(&json!({"resourceType": "Patient"}))
            .outcome(401);
        assert_eq!(server.get("/Patient?_summary=count").ok_json()["total"], 0);
    }

    fn forged_expired_and_foreign_tokens_are_refused(server: &Server) {
        let key = server_key(server);
        let valid_body = claims(server);
        // alg none, with or without a signature.
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt", "kid": key.kid()}).to_string()),
            URL_SAFE_NO_PAD.encode(valid_body.to_string())
        );
        assert_eq!(status_with(server, &unsigned), 401);
        // HS256 keyed with the public key (the JWKS modulus and the whole JWK).
        let jwk = key.jwk();
        for secret in [jwk["n"].as_str().unwrap().to_string(), jwk.to_string()] {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "at+jwt", "kid": key.kid()}).to_string()),
                URL_SAFE_NO_PAD.encode(valid_body.to_string())
            );
            let mac = ring::hmac::sign(
                &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()),
                input.as_bytes(),
            );
            let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
            assert_eq!(status_with(server, &token), 401);
        }
        // Another key, under the server's kid and under its own.
        let other = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        let foreign = other.sign("at+jwt", &valid_body);
        assert_eq!(status_with(server, &foreign), 401);
        let mut parts: Vec<String> = foreign.split('.').map(str::to_string).collect();
        parts[0] = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "typ": "at+jwt", "kid": key.kid()}).to_string());
        assert_eq!(status_with(server, &parts.join(".")), 401);
        // Signed by the server, but: not recorded, an id_token, exp as a string, wrong audience.
        assert_eq!(status_with(server, &key.sign("at+jwt", &valid_body)), 401);
        let real = server.token_for("system/*.cruds", &[]);
        let jwt: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD.decode(real.split('.').nth(1).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(status_with(server, &key.sign("JWT", &jwt)), 401, "an id_token is not an access token");
        let mut text_exp = jwt.clone();
        text_exp["exp"] = json!(jwt["exp"].to_string());
        let refused = server.request("GET", "/Patient").bearer(&key.sign("at+jwt", &text_exp)).send();
        refused.outcome(401);
        assert!(refused.header("www-authenticate").unwrap().contains("invalid_token"));
        assert_eq!(status_with(server, &key.sign("at+jwt", &jwt)), 200, "the same claims, well typed");
        let elsewhere = common::cli_token(
            &server.database.url,
            "https://elsewhere.example/fhir",
            "system/*.cruds",
            &[],
        );
        assert_eq!(status_with(server, &elsewhere), 401);
        // Expired.
        let short = server.token_for("system/*.cruds", &["--ttl", "1"]);
        assert_eq!(status_with(server, &short), 200);
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert_eq!(status_with(server, &short), 401);
    }

    fn revoked_tokens_stop_at_the_next_request(server: &Server) {
        let token = server.token_for("system/Patient.rs", &[]);
        let active = form(server, "/auth/introspect", &format!("token={token}")).ok_json();
        assert_eq!(active["active"], true);
        assert_eq!(active["scope"], "system/Patient.rs");
        assert_eq!(active["client_id"], "carnet-cli");
        assert_eq!(status_with(server, &token), 200);
        let revoked = form(server, "/auth/revoke", &format!("token={token}"));
        assert_eq!(revoked.status, 200);
        assert_eq!(revoked.header("cache-control"), Some("no-store"));
        assert_eq!(status_with(server, &token), 401);
        assert_eq!(
            form(server, "/auth/introspect", &format!("token={token}")).ok_json(),
            json!({"active": false})
        );
        assert_eq!(
            form(server, "/auth/introspect", "token=invalid_token_value").ok_json(),
            json!({"active": false})
        );
        assert_eq!(form(server, "/auth/introspect", "").status, 400);
    }

    fn scopes_are_enforced_per_interaction(server: &Server) {
        patient(server, "a");
        observation(server, "o1", "a", VITALS);
        let read_only = server.token_for("system/Patient.r", &[]);
        let as_reader = |method: &str, path: &str| server.request(method, path).bearer(&read_only);
        assert_eq!(as_reader("GET", "/Patient/a").send().status, 200);
        let refused = as_reader("GET", "/Patient").send();
        let issues = refused.outcome(403);
        assert!(issues[0]["diagnostics"].as_str().unwrap().contains("'s' on Patient"), "{issues:?}");
        as_reader("GET", "/Observation/o1").send().outcome(403);
        as_reader("GET", "/Patient/a/_history").send();
        let rs = server.token_for("system/*.rs", &[]);
        for (method, path, body) in [
            ("POST", "/Patient", Some(json!({"resourceType": "Patient"}))),
            ("PUT", "/Patient/a", Some(json!({"resourceType": "Patient", "id": "a", "active": true}))),
            ("DELETE", "/Patient/a", None),
            ("PUT", "/Patient?_id=a", Some(json!({"resourceType": "Patient", "active": true}))),
        ] {
            let request = server.request(method, path).bearer(&rs);
            let response = match body {
                Some(b) => request.json(&b),
                None => request.send(),
            };
            response.outcome(403);
        }
        // A transaction is checked entry by entry: one forbidden entry refuses it all.
        let writer = server.token_for("system/Patient.cruds", &[]);
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
             "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"}},
             "request": {"method": "POST", "url": "Observation"}},
        ]});
        server.request("POST", "").bearer(&writer).json(&bundle).outcome(403);
        assert_eq!(server.get("/Patient?_summary=count").ok_json()["total"], 1);
        // $reindex and SearchParameter writes need system scopes.
        server.request("POST", "/$reindex").bearer(&rs).send().outcome(403);
        let patient_token = server.token_for("patient/*.cruds", &["--patient", "a"]);
        server
            .request("POST", "/SearchParameter")
            .bearer(&patient_token)
            .json(&json!({"resourceType": "SearchParameter", "url": "https://x.example/sp",
                "name": "x", "status": "active", "description": "x", "code": "x-code",
                "base": ["Patient"], "type": "token", "expression": "Patient.gender"}))
            .outcome(403);
    }

    fn patient_tokens_reach_only_their_compartment(server: &Server) {
        patient(server, "a");
        patient(server, "b");
        observation(server, "oa", "a", VITALS);
        observation(server, "ob", "b", VITALS);
        let token = server.token_for("patient/*.cruds", &["--patient", "a"]);
        let get = |path: &str| server.request("GET", path).bearer(&token).send();
        assert_eq!(get("/Patient/a").status, 200);
        get("/Patient/b").outcome(404);
        get("/Observation/ob").outcome(404);
        get("/Observation/ob/_history/1").outcome(404);
        get("/Patient/b/$everything").outcome(404);
        assert_eq!(ids(&get("/Observation").ok_json()), vec!["Observation/oa"]);
        assert_eq!(get("/Observation?_summary=count").ok_json()["total"], 1);
        let included = get("/Observation?_include=Observation:subject").ok_json();
        assert_eq!(ids(&included), vec!["Observation/oa", "Patient/a"]);
        let revincluded = get("/Patient?_revinclude=Observation:subject").ok_json();
        assert_eq!(ids(&revincluded), vec!["Observation/oa", "Patient/a"]);
        let every = get("/Patient/a/$everything").ok_json();
        assert_eq!(ids(&every), vec!["Observation/oa", "Patient/a"]);
        assert_eq!(ids(&get("/Patient?_has:Observation:subject:_id=ob").ok_json()), Vec::<String>::new());
        assert_eq!(ids(&get("/Observation?subject.identifier=x").ok_json()), Vec::<String>::new());
        let history = get("/_history").ok_json();
        assert!(ids(&history).iter().all(|i| i.ends_with("/a") || i.ends_with("/oa")), "{history}");
        // Writing into another patient's record.
        let into_b = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                            "subject": {"reference": "Patient/b"}});
        let status = server.request("POST", "/Observation").bearer(&token).json(&into_b).status;
        assert!(status == 403 || status == 404, "{status}");
        assert_eq!(server.get("/Observation?subject=b&_summary=count").ok_json()["total"], 1);
        // $export is for system scopes.
        server.request("GET", "/$export").bearer(&token).header("Prefer", "respond-async").send().outcome(403);
    }

    fn query_limited_scopes_filter_reads_and_searches(server: &Server) {
        patient(server, "a");
        observation(server, "vitals", "a", VITALS);
        observation(server, "lab", "a", LAB);
        let scope = format!("patient/Observation.rs?category={VITALS} patient/Patient.rs");
        let token = server.token_for(&scope, &["--patient", "a"]);
        let get = |path: &str| server.request("GET", path).bearer(&token).send();
        assert_eq!(ids(&get("/Observation").ok_json()), vec!["Observation/vitals"]);
        assert_eq!(get("/Observation?_summary=count").ok_json()["total"], 1);
        assert_eq!(get("/Observation/vitals").status, 200);
        get("/Observation/lab").outcome(404);
        get("/Observation/lab/_history/1").outcome(404);
        assert_eq!(ids(&get("/Patient/a/$everything").ok_json()), vec!["Patient/a"]);
        // Not through a Bundle either.
        let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "Observation/lab"}}]});
        let answer = server.request("POST", "").bearer(&token).json(&bundle).ok_json();
        assert_eq!(answer["entry"][0]["response"]["status"], "403 Forbidden");
        // Two queries on one parameter: either category.
        let both = server.token_for(
            &format!("patient/Observation.rs?category={VITALS} patient/Observation.rs?category={LAB}"),
            &["--patient", "a"],
        );
        let all = server.request("GET", "/Observation").bearer(&both).send().ok_json();
        assert_eq!(ids(&all), vec!["Observation/lab", "Observation/vitals"]);
    }

    fn backend_services_sign_their_assertions(server: &Server) {
        patient(server, "a");
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref();
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-384", "kid": "k1", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..49]), "y": URL_SAFE_NO_PAD.encode(&point[49..])}]});
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_carnet"))
            .args(["client", "add", "lab-feed", "--kind", "backend", "--scope", "system/Patient.rs system/Observation.cruds",
                   "--database-url", &server.database.url, "--jwks", &jwks.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let root = server.base.trim_end_matches("/fhir").to_string();
        let token_url = format!("{root}/auth/token");
        let sign = |claims: Value, kid: &str| {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(json!({"alg": "ES384", "typ": "JWT", "kid": kid}).to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let sig = pair.sign(&rng, input.as_bytes()).unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        };
        let assertion = |jti: &str, aud: &str, exp: i64, iss: &str| {
            json!({"iss": iss, "sub": "lab-feed", "aud": aud, "exp": exp, "jti": jti})
        };
        let request = |assertion: &str, scope: &str| {
            form(server, "/auth/token", &serde_urlencoded::to_string([
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", assertion),
            ]).unwrap())
        };
        let good = sign(assertion("j1", &token_url, now() + 240, "lab-feed"), "k1");
        let issued = request(&good, "system/*.rs system/Observation.c");
        assert_eq!(issued.status, 200, "{}", issued.text());
        assert_eq!(issued.header("cache-control"), Some("no-store"));
        let body = issued.json();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["scope"], "system/Patient.rs system/Observation.rs system/Observation.c");
        assert!(body["expires_in"].as_i64().unwrap() <= 300);
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(status_with(server, token), 200);
        server.request("DELETE", "/Patient/a").bearer(token).send().outcome(403);
        // Replayed, too far ahead, wrong audience, iss not the client, unknown key, bad type.
        let refused = request(&good, "system/*.rs");
        assert_eq!(refused.status, 401);
        assert_eq!(refused.json()["error"], "invalid_client");
        for bad in [
            sign(assertion("j2", &token_url, now() + 3600, "lab-feed"), "k1"),
            sign(assertion("j3", &server.base, now() + 240, "lab-feed"), "k1"),
            sign(assertion("j4", &token_url, now() + 240, "someone-else"), "k1"),
            sign(assertion("j5", &token_url, now() + 240, "lab-feed"), "k2"),
            sign(assertion("j6", &token_url, now() - 120, "lab-feed"), "k1"),
        ] {
            let r = request(&bad, "system/*.rs");
            assert_eq!(r.status, 401, "{}", r.text());
            assert_eq!(r.json()["error"], "invalid_client");
        }
        let mut exp_text = assertion("j7", &token_url, now() + 240, "lab-feed");
        exp_text["exp"] = json!((now() + 240).to_string());
        assert_eq!(request(&sign(exp_text, "k1"), "system/*.rs").status, 401);
        let wrong_type = form(server, "/auth/token", &format!(
            "grant_type=client_credentials&scope=system/*.rs&client_assertion_type=not_an_assertion_type&client_assertion={}",
            sign(assertion("j8", &token_url, now() + 240, "lab-feed"), "k1")));
        assert_eq!(wrong_type.status, 401);
        let grant = form(server, "/auth/token", "grant_type=not_a_grant_type");
        assert_eq!(grant.status, 400);
        assert_eq!(grant.json()["error"], "unsupported_grant_type");
        // Scopes the client may not have are not granted.
        let none = request(&sign(assertion("j9", &token_url, now() + 240, "lab-feed"), "k1"), "system/Condition.rs");
        assert_eq!(none.status, 400);
        assert_eq!(none.json()["error"], "invalid_scope");
        // Removing the client revokes its tokens.
        let removed = std::process::Command::new(env!("CARGO_BIN_EXE_carnet"))
            .args(["client", "remove", "lab-feed", "--database-url", &server.database.url])
            .status()
            .unwrap();
        assert!(removed.success());
        assert_eq!(status_with(server, token), 401);
    }
}

#[test]
fn insecure_mode_is_explicit_and_loopback_only() {
    let server = Server::start_with(Backend::Sqlite, &["--insecure-no-auth"]);
    assert_eq!(
        server.request("GET", "/Patient").anonymous().send().status,
        200
    );
    assert!(server.stop().contains("authorization is OFF"));
    let db = common::TestDatabase::new(Backend::Sqlite);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_carnet"))
        .args([
            "serve",
            "--insecure-no-auth",
            "--listen",
            "0.0.0.0:0",
            "--database-url",
            &db.url,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
}

#[test]
fn clients_are_registered_with_what_their_kind_needs() {
    let db = common::TestDatabase::new(Backend::Sqlite);
    let carnet = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_carnet"))
            .args(args)
            .args(["--database-url", &db.url])
            .output()
            .unwrap()
    };
    let out = carnet(&[
        "client",
        "add",
        "feed",
        "--kind",
        "backend",
        "--scope",
        "system/*.rs",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--jwks"));
    let out = carnet(&[
        "client",
        "add",
        "app",
        "--kind",
        "confidential",
        "--scope",
        "user/*.rs",
        "--redirect-uri",
        "https://app.example/cb",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("secret (shown once)"));
    let out = carnet(&[
        "client",
        "add",
        "app",
        "--kind",
        "public",
        "--scope",
        "user/*.rs",
        "--redirect-uri",
        "https://app.example/cb",
    ]);
    assert!(!out.status.success(), "a taken id");
    let out = carnet(&[
        "client",
        "add",
        "x",
        "--kind",
        "public",
        "--scope",
        "banana",
        "--redirect-uri",
        "https://app.example/cb",
    ]);
    assert!(!out.status.success(), "no known scope");
    let list = String::from_utf8(carnet(&["client", "list"]).stdout).unwrap();
    assert!(list.starts_with("app\tconfidential"), "{list}");
    let out = carnet(&["token", "--scope", "system/*.rs", "--ttl", "7200"]);
    assert!(
        !out.status.success(),
        "an access token lives at most an hour"
    );
}
