//! Bulk export (`$export`, HL7 Bulk Data Access 2.0) through HTTP on SQLite and PostgreSQL:
//! exports read back and compared with the data, `_type`, `_since`, `_typeFilter`, Patient and
//! Group levels against compartment searches, status polling, cancellation, jobs bound to the
//! caller, refused kick-offs creating no job, and a job surviving a server restart.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use diesel::{Connection, RunQueryDsl};
use serde_json::{json, Value};

use common::{Backend, Response, Server, TestDatabase};

const LOINC: &str = "http://loinc.org";
const WEIGHT: &str = "29463-7";
const HEIGHT: &str = "8302-2";

/// One test per backend: `export_tests! { fn name(backend: Backend) { ... } }`.
macro_rules! export_tests {
    ($(fn $name:ident($backend:ident: Backend) $body:block)*) => {
        $(fn $name($backend: Backend) $body)*
        mod sqlite {
            $(#[test] fn $name() { super::$name(super::Backend::Sqlite); })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(super::Backend::Postgres); })*
        }
    };
}

/// A server with its own export directory, kept across restarts.
struct Exporting {
    server: Option<Server>,
    dir: PathBuf,
}

impl Exporting {
    fn start(backend: Backend, extra: &[&str]) -> Exporting {
        let dir = std::env::temp_dir().join(format!(
            "carnet-export-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let server = start_on(TestDatabase::new(backend), &dir, extra);
        Exporting {
            server: Some(server),
            dir,
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    /// Stops the server (killing it mid-work) and starts another on the same database and
    /// export directory.
    fn restart(&mut self, extra: &[&str]) {
        let database = Server::take_database(self.server.take().unwrap());
        self.server = Some(start_on(database, &self.dir, extra));
    }

    fn job_count(&self) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let url = &self.server().database.url;
        let sql = "SELECT COUNT(*) AS n FROM export_job";
        let rows: Vec<N> = match url.strip_prefix("sqlite:") {
            Some(path) => {
                let mut conn = diesel::SqliteConnection::establish(path).unwrap();
                diesel::sql_query(sql).load(&mut conn).unwrap()
            }
            None => {
                let mut conn = diesel::PgConnection::establish(url).unwrap();
                diesel::sql_query(sql).load(&mut conn).unwrap()
            }
        };
        rows[0].n
    }
}

impl Drop for Exporting {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_on(database: TestDatabase, dir: &std::path::Path, extra: &[&str]) -> Server {
    let dir = dir.display().to_string();
    let mut args = vec!["--export-dir", dir.as_str()];
    args.extend_from_slice(extra);
    Server::start_on(database, &args, &[])
}

fn put(server: &Server, resource: Value) {
    let path = format!(
        "/{}/{}",
        resource["resourceType"].as_str().unwrap(),
        resource["id"].as_str().unwrap()
    );
    let response = server.put(&path, &resource);
    assert!(
        response.status == 201 || response.status == 200,
        "{path}: {}",
        response.text()
    );
}

fn patient(id: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": format!("Family {id}")}]})
}

fn observation(id: &str, patient: &str, code: &str, value: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": value.parse::<f64>().unwrap(), "unit": "kg",
                          "system": "http://unitsofmeasure.org", "code": "kg"}
    })
}

/// Three patients with observations, a condition, a practitioner and an organization (outside
/// every compartment), and a Group of the first two patients.
fn seed(server: &Server) {
    for p in ["p1", "p2", "p3"] {
        put(server, patient(p));
    }
    put(server, observation("o1", "p1", WEIGHT, "72.5"));
    put(server, observation("o2", "p1", HEIGHT, "180"));
    put(server, observation("o3", "p2", WEIGHT, "1.50"));
    put(server, observation("o4", "p3", WEIGHT, "60"));
    put(server, observation("o5", "p3", HEIGHT, "170"));
    put(
        server,
        json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p2"},
               "code": {"text": "asthma"}}),
    );
    put(
        server,
        json!({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "House"}]}),
    );
    put(
        server,
        json!({"resourceType": "Organization", "id": "org1", "name": "Hôpital"}),
    );
    put(
        server,
        json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true,
               "member": [{"entity": {"reference": "Patient/p1"}},
                          {"entity": {"reference": "Patient/p2"}},
                          {"entity": {"reference": "Patient/p3"}, "inactive": true}]}),
    );
}

/// `Type/id` of every live resource of the server, with its body as a read returns it.
fn everything(server: &Server) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for page in server.pages("/_history?_count=1000") {
        for entry in page["entry"].as_array().into_iter().flatten() {
            let full = entry["fullUrl"].as_str().unwrap();
            let key = full.rsplit_once("/fhir/").unwrap().1.to_string();
            if seen.insert(key.clone()) {
                let read = server.get(&format!("/{key}"));
                if read.status == 200 {
                    out.insert(key, read.text());
                }
            }
        }
    }
    out
}

fn kickoff(server: &Server, path: &str) -> Response {
    server
        .request("GET", path)
        .header("Prefer", "respond-async")
        .header("Accept", "application/fhir+json")
        .send()
}

/// The status URL of an accepted kick-off.
fn accepted(response: &Response) -> String {
    assert_eq!(response.status, 202, "{}", response.text());
    response
        .header("content-location")
        .expect("Content-Location")
        .to_string()
}

/// Polls until the job completes; checks the in-progress answers on the way. Returns the
/// manifest and how many 202 answers came first.
fn wait(server: &Server, status_url: &str, auth: Option<&str>) -> (Value, usize) {
    let started = Instant::now();
    let mut pending = 0;
    loop {
        let mut request = server.request("GET", status_url);
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send();
        match response.status {
            200 => {
                assert!(response
                    .header("content-type")
                    .unwrap()
                    .starts_with("application/json"));
                return (response.json(), pending);
            }
            202 => {
                pending += 1;
                assert!(response.header("x-progress").is_some());
                assert!(response.header("retry-after").is_some());
            }
            other => panic!("status {other}: {}", response.text()),
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the export did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Downloads every file of a manifest: `Type/id` -> the NDJSON line, asserting that no
/// resource appears twice and that each file holds its type and count.
fn download(server: &Server, manifest: &Value, auth: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for file in manifest["output"].as_array().unwrap() {
        let mut request = server.request("GET", file["url"].as_str().unwrap());
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send();
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(
            response.header("content-type"),
            Some("application/fhir+ndjson")
        );
        let text = response.text();
        assert!(text.ends_with('\n'));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() as u64, file["count"].as_u64().unwrap());
        for line in lines {
            let resource: Value = serde_json::from_str(line).unwrap();
            assert_eq!(resource["resourceType"], file["type"]);
            let key = format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap(),
                resource["id"].as_str().unwrap()
            );
            assert!(
                out.insert(key.clone(), line.to_string()).is_none(),
                "{key} exported twice"
            );
        }
    }
    out
}

fn export(server: &Server, path: &str) -> (Value, BTreeMap<String, String>) {
    let status = accepted(&kickoff(server, path));
    let (manifest, _) = wait(server, &status, None);
    let files = download(server, &manifest, None);
    (manifest, files)
}

/// The resources the manifest's `deleted` files list (`Type/id`, sorted), checking that each
/// line is a transaction Bundle of one `DELETE`.
fn deleted(server: &Server, manifest: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for file in manifest["deleted"].as_array().expect("a deleted array") {
        assert_eq!(file["type"], "Bundle");
        let text = server.get(file["url"].as_str().unwrap()).text();
        assert_eq!(text.lines().count() as u64, file["count"].as_u64().unwrap());
        for line in text.lines() {
            let bundle: Value = serde_json::from_str(line).unwrap();
            assert_eq!(bundle["type"], "transaction");
            assert_eq!(bundle["entry"][0]["request"]["method"], "DELETE");
            out.push(
                bundle["entry"][0]["request"]["url"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    out.sort();
    out
}

/// `meta.lastUpdated` of the resource at `path`, as the server wrote it.
fn last_updated(server: &Server, path: &str) -> String {
    server.get(path).ok_json()["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_string()
}

fn keys(files: &BTreeMap<String, String>) -> Vec<&str> {
    files.keys().map(String::as_str).collect()
}

/// The resources in the compartments of `patients`, by compartment search of every type.
fn compartments(server: &Server, patients: &[&str]) -> BTreeSet<String> {
    let types = [
        "Patient",
        "Observation",
        "Condition",
        "Group",
        "Practitioner",
        "Organization",
    ];
    let mut out = BTreeSet::new();
    for p in patients {
        for ty in types {
            let bundle = server.get(&format!("/Patient/{p}/{ty}?_count=1000"));
            if bundle.status == 404 {
                continue; // a type outside the compartment
            }
            for entry in bundle.ok_json()["entry"].as_array().into_iter().flatten() {
                out.insert(format!(
                    "{ty}/{}",
                    entry["resource"]["id"].as_str().unwrap()
                ));
            }
        }
        out.insert(format!("Patient/{p}"));
    }
    out
}

export_tests! {
    fn system_export_holds_every_resource_once_as_read(backend: Backend) {
        let e = Exporting::start(backend, &[]);
        let server = e.server();
        seed(server);
        // A deleted resource and an updated one: only current versions, no deletions.
        put(server, patient("gone"));
        assert_eq!(server.delete("/Patient/gone").status, 204);
        put(server, observation("o1", "p1", WEIGHT, "73.0"));
        let expected = everything(server);
        assert_eq!(expected.len(), 12);

        let response = kickoff(server, "/$export");
        assert_eq!(response.json()["resourceType"], "OperationOutcome");
        let status = accepted(&response);
        assert!(status.starts_with(&format!("{}/$export-status/", server.base)), "{status}");
        let (manifest, _) = wait(server, &status, None);
        assert_eq!(manifest["request"], format!("{}/$export", server.base));
        assert_eq!(manifest["requiresAccessToken"], true);
        assert_eq!(manifest["error"], json!([]));
        assert!(manifest["transactionTime"].as_str().unwrap().ends_with('Z'));
        let files = download(server, &manifest, None);
        // Every resource once, each line the exact text a read returns.
        assert_eq!(files, expected);
        let types: Vec<&str> = manifest["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["Patient", "Practitioner", "Organization", "Observation", "Condition", "Group"]);
        assert!(files["Observation/o1"].contains("73.0"));
        // A POST kick-off with a Parameters body is the same operation.
        let status = accepted(
            &server
                .request("POST", "/$export")
                .header("Prefer", "respond-async")
                .json(&json!({"resourceType": "Parameters", "parameter": [
                    {"name": "_type", "valueString": "Patient"},
                    {"name": "_outputFormat", "valueString": "application/fhir+ndjson"}]})),
        );
        let (manifest, _) = wait(server, &status, None);
        assert_eq!(manifest["request"], format!("{}/$export", server.base));
        assert_eq!(keys(&download(server, &manifest, None)), ["Patient/p1", "Patient/p2", "Patient/p3"]);
    }

    fn type_since_and_type_filter_select(backend: Backend) {
        let e = Exporting::start(backend, &["--export-max-file-size", "300"]);
        let server = e.server();
        seed(server);
        let since = last_updated(server, "/Group/g1");
        std::thread::sleep(Duration::from_millis(5));
        put(server, observation("o6", "p2", HEIGHT, "150"));
        put(server, patient("p4"));

        let (_, files) = export(server, "/$export?_type=Observation,Condition");
        assert_eq!(keys(&files), ["Condition/c1", "Observation/o1", "Observation/o2", "Observation/o3", "Observation/o4", "Observation/o5", "Observation/o6"]);

        let (_, files) = export(server, &format!("/$export?_since={}", urlencode(&since)));
        assert_eq!(keys(&files), ["Observation/o6", "Patient/p4"]);

        // A filter restricts its own type only; several filters of a type are ORed.
        let filter = urlencode(&format!("Observation?code={LOINC}|{WEIGHT}"));
        let (_, files) = export(server, &format!("/$export?_type=Observation,Patient&_typeFilter={filter}"));
        assert_eq!(keys(&files), ["Observation/o1", "Observation/o3", "Observation/o4", "Patient/p1", "Patient/p2", "Patient/p3", "Patient/p4"]);
        let other = urlencode("Observation?subject=Patient/p3");
        let (_, files) = export(server, &format!("/$export?_type=Observation&_typeFilter={filter}&_typeFilter={other}"));
        assert_eq!(keys(&files), ["Observation/o1", "Observation/o3", "Observation/o4", "Observation/o5"]);
        let (_, files) = export(server, &format!("/$export?_type=Observation&_typeFilter={filter}&_since={}", urlencode(&since)));
        assert!(files.is_empty());
        // Files are split at --export-max-file-size: several parts of one type, nothing lost.
        let (manifest, files) = export(server, "/$export?_type=Observation");
        assert_eq!(files.len(), 6);
        let parts = manifest["output"].as_array().unwrap();
        assert!(parts.len() >= 3, "{manifest}");
        assert!(parts.iter().all(|p| p["type"] == "Observation"));
        let urls: BTreeSet<&str> = parts.iter().map(|p| p["url"].as_str().unwrap()).collect();
        assert_eq!(urls.len(), parts.len());
    }

    fn deletions_since_and_lenient_warnings_are_in_the_manifest(backend: Backend) {
        let e = Exporting::start(backend, &[]);
        let server = e.server();
        seed(server);
        put(server, observation("o9", "p1", WEIGHT, "70"));
        assert_eq!(server.delete("/Observation/o9").status, 204);
        std::thread::sleep(Duration::from_millis(5));
        put(server, patient("p5"));
        let since = last_updated(server, "/Patient/p5");
        std::thread::sleep(Duration::from_millis(5));
        // After `_since`: o1 and c1 deleted; o2 deleted then created again; o7 created and
        // deleted; o9 was deleted before.
        for path in ["/Observation/o1", "/Condition/c1", "/Observation/o2"] {
            assert_eq!(server.delete(path).status, 204, "{path}");
        }
        put(server, observation("o2", "p1", HEIGHT, "181"));
        put(server, observation("o7", "p3", WEIGHT, "61"));
        assert_eq!(server.delete("/Observation/o7").status, 204);

        let since = urlencode(&since);
        let (manifest, files) = export(server, &format!("/$export?_since={since}"));
        assert_eq!(keys(&files), ["Observation/o2"]);
        assert_eq!(deleted(server, &manifest), ["Condition/c1", "Observation/o1", "Observation/o7"]);
        assert_eq!(manifest["error"], json!([]));
        // Levels and `_type` apply to deletions too.
        let (manifest, _) = export(server, &format!("/Group/g1/$export?_since={since}"));
        assert_eq!(deleted(server, &manifest), ["Condition/c1", "Observation/o1"]);
        let (manifest, _) = export(server, &format!("/Patient/$export?_type=Observation&_since={since}"));
        assert_eq!(deleted(server, &manifest), ["Observation/o1", "Observation/o7"]);
        // Without `_since` there is nothing to be deleted relative to.
        let (manifest, _) = export(server, "/$export?_type=Observation");
        assert!(manifest.get("deleted").is_none(), "{manifest}");

        // What lenient handling ignored is reported in the error file.
        let filter = urlencode(&format!("Observation?code={LOINC}|{WEIGHT}"));
        let status = accepted(
            &server
                .request("GET", &format!("/$export?_type=Patient,Nope&_elements=id&_typeFilter={filter}"))
                .header("Prefer", "respond-async, handling=lenient")
                .send(),
        );
        let (manifest, _) = wait(server, &status, None);
        assert_eq!(download(server, &manifest, None).len(), 4);
        let errors = manifest["error"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{manifest}");
        assert_eq!(errors[0]["type"], "OperationOutcome");
        assert_eq!(errors[0]["count"], 3);
        let text = server.get(errors[0]["url"].as_str().unwrap()).text();
        let diagnostics: Vec<String> = text
            .lines()
            .map(|line| {
                let outcome: Value = serde_json::from_str(line).unwrap();
                assert_eq!(outcome["resourceType"], "OperationOutcome");
                assert_eq!(outcome["issue"][0]["severity"], "warning");
                outcome["issue"][0]["diagnostics"].as_str().unwrap().to_string()
            })
            .collect();
        assert!(diagnostics[0].contains("_elements"), "{diagnostics:?}");
        assert!(diagnostics[1].contains("Nope"), "{diagnostics:?}");
        assert!(diagnostics[2].contains("_typeFilter"), "{diagnostics:?}");
    }

    fn group_members_added_after_since_are_exported_whole(backend: Backend) {
        let e = Exporting::start(backend, &[]);
        let server = e.server();
        seed(server);
        let since = last_updated(server, "/Group/g1");
        std::thread::sleep(Duration::from_millis(5));
        put(server, observation("o6", "p1", HEIGHT, "150"));
        // p3 becomes active: the client has none of its data yet.
        put(
            server,
            json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true,
                   "member": [{"entity": {"reference": "Patient/p1"}},
                              {"entity": {"reference": "Patient/p2"}},
                              {"entity": {"reference": "Patient/p3"}}]}),
        );
        let (_, files) = export(server, &format!("/Group/g1/$export?_since={}", urlencode(&since)));
        assert_eq!(keys(&files), ["Group/g1", "Observation/o4", "Observation/o5", "Observation/o6", "Patient/p3"]);
        // Before the Group existed, every member is new.
        let (_, files) = export(server, "/Group/g1/$export?_since=2000-01-01T00:00:00Z");
        assert_eq!(files.len(), compartments(server, &["p1", "p2", "p3"]).len());
    }

    fn patient_and_group_levels_hold_exactly_the_compartments(backend: Backend) {
        let e = Exporting::start(backend, &[]);
        let server = e.server();
        seed(server);
        let (_, files) = export(server, "/Patient/$export");
        let exported: BTreeSet<String> = files.keys().cloned().collect();
        assert_eq!(exported, compartments(server, &["p1", "p2", "p3"]));
        assert!(!exported.contains("Practitioner/dr1"));
        assert!(!exported.contains("Organization/org1"));

        // The Group's active members: p1 and p2 (p3 is inactive).
        let (manifest, files) = export(server, "/Group/g1/$export");
        assert_eq!(manifest["request"], format!("{}/Group/g1/$export", server.base));
        let exported: BTreeSet<String> = files.keys().cloned().collect();
        assert_eq!(exported, compartments(server, &["p1", "p2"]));
        assert!(exported.contains("Observation/o3") && !exported.contains("Observation/o4"));
        let (_, files) = export(server, "/Group/g1/$export?_type=Observation");
        assert_eq!(keys(&files), ["Observation/o1", "Observation/o2", "Observation/o3"]);
        // Outside the compartment: refused, or ignored under lenient handling.
        kickoff(server, "/Patient/$export?_type=Practitioner").outcome(400);
        let status = accepted(
            &server
                .request("GET", "/Patient/$export?_type=Practitioner,Condition")
                .header("Prefer", "respond-async, handling=lenient")
                .send(),
        );
        let (manifest, _) = wait(server, &status, None);
        assert_eq!(keys(&download(server, &manifest, None)), ["Condition/c1"]);
    }

    fn status_polls_show_progress_then_the_manifest(backend: Backend) {
        let e = Exporting::start(backend, &["--export-batch-size", "2", "--export-throttle-ms", "100"]);
        let server = e.server();
        seed(server);
        let status = accepted(&kickoff(server, "/$export"));
        let mut progress = Vec::new();
        loop {
            let response = server.get(&status);
            if response.status == 200 {
                break;
            }
            assert_eq!(response.status, 202, "{}", response.text());
            assert_eq!(response.header("retry-after"), Some("1"));
            progress.push(response.header("x-progress").unwrap().to_string());
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            progress.iter().any(|p| p.contains("resources (type ")),
            "{progress:?}"
        );
        let (manifest, pending) = wait(server, &status, None);
        assert_eq!(pending, 0);
        assert_eq!(download(server, &manifest, None).len(), 12);
    }

    fn delete_cancels_and_removes_the_files(backend: Backend) {
        let e = Exporting::start(backend, &["--export-batch-size", "1", "--export-throttle-ms", "200"]);
        let server = e.server();
        seed(server);
        let status = accepted(&kickoff(server, "/$export"));
        let job = status.rsplit('/').next().unwrap().to_string();
        // Wait until the worker has written something.
        let started = Instant::now();
        while !e.dir.join(&job).exists() {
            assert!(started.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(20));
        }
        let response = server.delete(&status);
        assert_eq!(response.status, 202, "{}", response.text());
        server.get(&status).outcome(404);
        server.delete(&status).outcome(404);
        // The worker stops at its next batch and removes what it wrote meanwhile.
        std::thread::sleep(Duration::from_millis(1000));
        assert!(!e.dir.join(&job).exists(), "files left behind");
        assert_eq!(e.job_count(), 0);
        // A completed job is removed the same way, files included.
        let status = accepted(&kickoff(server, "/$export?_type=Patient"));
        let (manifest, _) = wait(server, &status, None);
        let url = manifest["output"][0]["url"].as_str().unwrap().to_string();
        assert_eq!(server.get(&url).status, 200);
        assert_eq!(server.delete(&status).status, 202);
        server.get(&url).outcome(404);
        assert!(!e.dir.join(status.rsplit('/').next().unwrap()).exists());
    }

    fn jobs_belong_to_whoever_started_them(backend: Backend) {
        let e = Exporting::start(backend, &[]);
        let server = e.server();
        seed(server);
        let alice = format!(
            "Bearer {}",
            server.token_for("system/*.rs", &["--fhir-user", "Practitioner/alice"])
        );
        let bob = format!(
            "Bearer {}",
            server.token_for("system/*.rs", &["--fhir-user", "Practitioner/bob"])
        );
        let (alice, bob) = (alice.as_str(), bob.as_str());
        let status = accepted(
            &server
                .request("GET", "/$export?_type=Patient")
                .header("Prefer", "respond-async")
                .header("Authorization", alice)
                .send(),
        );
        let (manifest, _) = wait(server, &status, Some(alice));
        assert_eq!(manifest["requiresAccessToken"], true);
        let url = manifest["output"][0]["url"].as_str().unwrap().to_string();
        for other in [Some(bob), None] {
            let get = |u: &str| {
                let mut r = server.request("GET", u);
                if let Some(a) = other {
                    r = r.header("Authorization", a);
                }
                r.send()
            };
            get(&status).outcome(404);
            get(&url).outcome(404);
            let mut delete = server.request("DELETE", &status);
            if let Some(a) = other {
                delete = delete.header("Authorization", a);
            }
            delete.send().outcome(404);
        }
        assert_eq!(download(server, &manifest, Some(alice)).len(), 3);
        // The operator's job (the default token) is not Alice's either.
        let status = accepted(&kickoff(server, "/$export?_type=Patient"));
        let (manifest, _) = wait(server, &status, None);
        let url = manifest["output"][0]["url"].as_str().unwrap();
        server.request("GET", url).header("Authorization", alice).send().outcome(404);
        // Names outside the job's files are not served.
        let job_base = url.rsplit_once('/').unwrap().0;
        server.get(&format!("{job_base}/..%2F..%2Fcarnet.db")).outcome(404);
        server.get(&format!("{job_base}/Observation-1.ndjson")).outcome(404);
    }

    fn the_capability_statement_declares_the_operations(backend: Backend) {
        let e = Exporting::start(backend, &[]);
        let cs = e.server().get("/metadata").ok_json();
        let bulk = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/";
        assert_eq!(cs["instantiates"], json!(["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]));
        assert_eq!(cs["rest"][0]["operation"], json!([{"name": "export", "definition": format!("{bulk}export")}]));
        let resources = cs["rest"][0]["resource"].as_array().unwrap();
        let of = |t: &str| resources.iter().find(|r| r["type"] == t).unwrap()["operation"].clone();
        assert_eq!(of("Patient"), json!([{"name": "export", "definition": format!("{bulk}patient-export")}]));
        assert_eq!(of("Group"), json!([{"name": "export", "definition": format!("{bulk}group-export")}]));
        assert_eq!(of("Observation"), Value::Null);
    }

    fn bad_kickoffs_are_refused_and_create_no_job(backend: Backend) {
        let e = Exporting::start(backend, &[]);
        let server = e.server();
        seed(server);
        // No Prefer: respond-async.
        server.get("/$export").outcome(400);
        for query in [
            "_outputFormat=application/fhir%2Bjson",
            "_outputFormat=text/csv",
            "_type=Nope",
            "_type=Observation&_typeFilter=Observation%3Fnope%3D1",
            "_typeFilter=Observation",
            "_typeFilter=Observation%3Fcode%3D1%26_count%3D5",
            "_typeFilter=Observation%3Fdate%3Dyesterday",
            "_typeFilter=Nope%3Fcode%3D1",
            "_since=yesterday",
            "_since=2026-01-01&_since=2026-01-02",
            "patient=Patient/p1",
            "_elements=id",
            "includeAssociatedData=LatestProvenanceResources",
            "nope=1",
        ] {
            kickoff(server, &format!("/$export?{query}")).outcome(400);
        }
        kickoff(server, "/Group/nope/$export").outcome(404);
        kickoff(server, "/Group/bad%20id/$export").outcome(400);
        server
            .request("POST", "/$export")
            .header("Prefer", "respond-async")
            .json(&json!({"resourceType": "Patient"}))
            .outcome(400);
        server
            .request("POST", "/$export")
            .header("Prefer", "respond-async")
            .json(&json!({"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Nope"}]}))
            .outcome(400);
        server
            .request("POST", "/$export")
            .header("Prefer", "respond-async")
            .header("Content-Type", "text/plain")
            .body(b"_type=Patient")
            .outcome(415);
        server.get("/$export-status/nope").outcome(404);
        server.get("/$export-file/nope/Patient-1.ndjson").outcome(404);
        assert_eq!(e.job_count(), 0);
        // Unsupported parameters are ignored under lenient handling; the accepted formats.
        for format in ["application/fhir%2Bndjson", "application/ndjson", "ndjson", "application/fhir+ndjson"] {
            let response = server
                .request("GET", &format!("/$export?_type=Patient&_elements=id&_outputFormat={format}"))
                .header("Prefer", "respond-async, handling=lenient")
                .send();
            let (manifest, _) = wait(server, &accepted(&response), None);
            assert_eq!(download(server, &manifest, None).len(), 3);
        }
        assert_eq!(e.job_count(), 4);
    }

    fn a_job_survives_a_restart(backend: Backend) {
        let mut e = Exporting::start(backend, &["--export-batch-size", "3", "--export-throttle-ms", "150", "--export-max-file-size", "2000"]);
        for i in 0..40 {
            put(e.server(), observation(&format!("x{i}"), "p1", WEIGHT, &format!("{i}.5")));
        }
        seed(e.server());
        let expected = everything(e.server());
        let status = accepted(&kickoff(e.server(), "/$export"));
        // Stop the server once the worker is well into the job (the count is the checkpoint's).
        let exported = |response: &Response| -> u64 {
            let progress = response.header("x-progress").unwrap();
            progress
                .rsplit_once("; ")
                .and_then(|(_, rest)| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        let started = Instant::now();
        let before = loop {
            let response = e.server().get(&status);
            assert_eq!(response.status, 202, "finished too early: {}", response.text());
            let done = exported(&response);
            if done >= 12 {
                break done;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{response:?}");
            std::thread::sleep(Duration::from_millis(50));
        };
        e.restart(&["--export-batch-size", "3", "--export-throttle-ms", "150", "--export-max-file-size", "2000"]);
        // The new server listens on another port: same job, same path. It resumes from the
        // checkpoint rather than starting over.
        let status = e.server().url(status.split_once("/fhir").unwrap().1);
        let response = e.server().get(&status);
        assert_eq!(response.status, 202, "{}", response.text());
        assert!(exported(&response) >= before, "{response:?}");
        let (manifest, _) = wait(e.server(), &status, None);
        assert_eq!(manifest["output"][0]["url"].as_str().unwrap().split_once("/fhir").unwrap().0,
                   e.server().base.split_once("/fhir").unwrap().0);
        let files = download(e.server(), &manifest, None);
        assert_eq!(files, expected);
        assert_eq!(files.len(), 52);
    }
}

fn urlencode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
