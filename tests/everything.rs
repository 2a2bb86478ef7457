//! `Patient/[id]/$everything` through HTTP, on SQLite and PostgreSQL: the compartment and what
//! it references, `_type`, `_since`, paging, and refusals.

mod common;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use common::Server;

fn observation(id: &str, patient: &str, performer: Option<&str>) -> Value {
    let mut o = json!({"resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}});
    if let Some(p) = performer {
        o["performer"] = json!([{"reference": format!("Practitioner/{p}")}]);
    }
    o
}

fn load(server: &Server) {
    for r in [
        json!({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "House"}]}),
        json!({"resourceType": "Practitioner", "id": "dr2", "name": [{"family": "Wilson"}]}),
        json!({"resourceType": "Patient", "id": "pA", "generalPractitioner": [{"reference": "Practitioner/dr1"}]}),
        json!({"resourceType": "Patient", "id": "pB"}),
        observation("oA1", "pA", Some("dr1")),
        observation("oA2", "pA", None),
        observation("oA3", "pA", None),
        observation("oB1", "pB", Some("dr2")),
        json!({"resourceType": "Condition", "id": "cA", "subject": {"reference": "Patient/pA"}}),
        json!({"resourceType": "AllergyIntolerance", "id": "aB", "patient": {"reference": "Patient/pB"}}),
    ] {
        let path = format!(
            "/{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        server.put(&path, &r).ok_json();
    }
}

/// `(mode, Type/id)` of every entry of every page, following `next` links.
fn all_pages(server: &Server, path: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for bundle in server.pages(path) {
        assert_eq!(bundle["type"], "searchset", "{bundle}");
        for e in bundle["entry"].as_array().into_iter().flatten() {
            let r = &e["resource"];
            out.push((
                e["search"]["mode"].as_str().unwrap().to_string(),
                format!(
                    "{}/{}",
                    r["resourceType"].as_str().unwrap(),
                    r["id"].as_str().unwrap()
                ),
            ));
        }
    }
    out
}

fn of(mode: &str, entries: &[(String, String)]) -> BTreeSet<String> {
    entries
        .iter()
        .filter(|(m, _)| m == mode)
        .map(|(_, r)| r.clone())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

backend_tests! {
    fn the_compartment_and_what_it_references(server: &Server) {
        load(server);
        let entries = all_pages(server, "/Patient/pA/$everything");
        assert_eq!(of("match", &entries), set(&["Patient/pA", "Observation/oA1", "Observation/oA2", "Observation/oA3", "Condition/cA"]));
        assert_eq!(of("include", &entries), set(&["Practitioner/dr1"]));
        // Paged: the same matches, each once.
        let paged = all_pages(server, "/Patient/pA/$everything?_count=2");
        let matches: Vec<&String> = paged.iter().filter(|(m, _)| m == "match").map(|(_, r)| r).collect();
        assert_eq!(matches.len(), 5, "{paged:?}");
        assert_eq!(of("match", &paged), of("match", &entries));
        let first = server.get("/Patient/pA/$everything?_count=2").ok_json();
        let next = first["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap();
        assert!(next["url"].as_str().unwrap().contains("/Patient/pA/$everything?"), "{next}");
    }

    fn types_and_since_narrow_it(server: &Server) {
        load(server);
        let observations = all_pages(server, "/Patient/pA/$everything?_type=Observation,Condition");
        assert_eq!(of("match", &observations), set(&["Observation/oA1", "Observation/oA2", "Observation/oA3", "Condition/cA"]));
        let repeated = all_pages(server, "/Patient/pA/$everything?_type=Observation&_type=Condition");
        assert_eq!(of("match", &repeated), of("match", &observations));
        std::thread::sleep(std::time::Duration::from_millis(20));
        let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        std::thread::sleep(std::time::Duration::from_millis(20));
        server.put("/Observation/oA2", &observation("oA2", "pA", Some("dr1"))).ok_json();
        let changed = all_pages(server, &format!("/Patient/pA/$everything?_since={}", since.replace('+', "%2B")));
        assert_eq!(of("match", &changed), set(&["Observation/oA2"]));
        assert_eq!(of("include", &changed), set(&["Patient/pA", "Practitioner/dr1"]));
    }

    fn refusals(server: &Server) {
        load(server);
        server.get("/Patient/nobody/$everything").outcome(404);
        server.delete("/Patient/pB");
        server.get("/Patient/pB/$everything").outcome(404);
        server.get("/Patient/pA/$everything?_type=Practitioner").outcome_at(400, "_type");
        server.get("/Patient/pA/$everything?code=29463-7").outcome_at(400, "code");
        server.get("/Patient/pA/$everything?_since=yesterday").outcome(400);
        server.get("/Observation/oA1/$everything").outcome(404);
        let lenient = server.request("GET", "/Patient/pA/$everything?start=2020").header("Prefer", "handling=lenient").send();
        assert_eq!(lenient.status, 200, "{}", lenient.text());
    }
}
