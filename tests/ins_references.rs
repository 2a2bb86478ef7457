//! Patients referred to by INS, through HTTP, on SQLite and PostgreSQL: a write whose patient
//! reference carries only an INS identifier (as the French feeds send `subject.identifier`) is
//! attached to the Patient holding it (the literal reference added, the identifier kept) and
//! lands in the patient's record; an unknown INS is a 422 naming it, with nothing stored; the
//! same in transactions, where the Patient may be created by the same Bundle.

mod common;

use serde_json::{json, Value};

use common::Server;

const INS: &str = "urn:oid:1.2.250.1.213.1.4.8";
const INS_TEST: &str = "urn:oid:1.2.250.1.213.1.4.10";

fn patient(system: &str, ins: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"use": "official", "system": system, "value": ins}],
        "name": [{"family": "Moreau", "given": ["Léa"]}]
    })
}

/// A weight whose subject is given by identifier only, as the measures feed sends it.
fn weight(system: &str, ins: &str, kg: f64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"identifier": {"system": system, "value": ins}},
        "effectiveDateTime": "2026-12-01T08:00:00+01:00",
        "valueQuantity": {"value": kg, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
    })
}

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
    bundle["total"].as_i64().unwrap()
}

fn id_of(created: &Value) -> String {
    created["id"].as_str().unwrap().to_string()
}

/// `Type/id` from a response entry's location `Type/id/_history/v`.
fn reference_of(entry: &Value) -> String {
    let location = entry["response"]["location"].as_str().unwrap();
    location.split("/_history").next().unwrap().to_string()
}

backend_tests! {
    fn a_write_naming_its_patient_by_ins_lands_in_the_record(server: &Server) {
        let p = id_of(&server.post("/Patient", &patient(INS, "279035121518989")).ok_json());
        server.post("/Patient", &patient(INS, "180017512345678")).ok_json();
        // Create.
        let o = server.post("/Observation", &weight(INS, "279035121518989", 61.5)).ok_json();
        assert_eq!(
            o["subject"].to_string(),
            json!({"reference": format!("Patient/{p}"),
                   "identifier": {"system": INS, "value": "279035121518989"}}).to_string()
        );
        let oid = id_of(&o);
        let read = server.get(&format!("/Observation/{oid}")).ok_json();
        assert_eq!(read["subject"], o["subject"]);
        assert_eq!(total(server, &format!("Observation?patient={p}")), 1);
        assert_eq!(total(server, &format!("Patient/{p}/Observation")), 1);
        assert_eq!(total(server, &format!("Observation?subject:identifier={INS}|279035121518989")), 1);
        // Update, at a client id (update as create) and again.
        let mut w = weight(INS_TEST, "299990000000042", 70.0);
        let t = id_of(&server.post("/Patient", &patient(INS_TEST, "299990000000042")).ok_json());
        w["id"] = json!("w1");
        let put = server.put("/Observation/w1", &w).ok_json();
        assert_eq!(put["subject"]["reference"], format!("Patient/{t}"));
        w["valueQuantity"]["value"] = json!(70.5);
        server.put("/Observation/w1", &w).ok_json();
        assert_eq!(total(server, &format!("Patient/{t}/Observation")), 1);
        // Conditional create (If-None-Exist) and conditional update.
        let mut c = weight(INS, "279035121518989", 62.0);
        c["identifier"] = json!([{"system": "urn:oid:1.2.250.1.999", "value": "m-1"}]);
        let created = server
            .request("POST", "/Observation")
            .header("If-None-Exist", "identifier=urn:oid:1.2.250.1.999|m-1")
            .json(&c);
        assert_eq!(created.status, 201, "{}", created.text());
        assert_eq!(created.json()["subject"]["reference"], format!("Patient/{p}"));
        c["valueQuantity"]["value"] = json!(62.5);
        let updated = server.put("/Observation?identifier=urn:oid:1.2.250.1.999|m-1", &c).ok_json();
        assert_eq!(updated["subject"]["reference"], format!("Patient/{p}"));
        assert_eq!(total(server, &format!("Patient/{p}/Observation")), 2);
        // $everything finds them.
        let everything = server.get(&format!("/Patient/{p}/$everything")).ok_json();
        assert_eq!(everything["entry"].as_array().unwrap().len(), 3, "{everything}");
    }

    fn an_unknown_ins_is_422_naming_it_and_nothing_is_stored(server: &Server) {
        server.post("/Patient", &patient(INS, "279035121518989")).ok_json();
        let r = server.post("/Observation", &weight(INS, "100000000000000", 61.5));
        r.outcome_at(422, "Observation.subject.identifier");
        assert!(r.text().contains("urn:oid:1.2.250.1.213.1.4.8|100000000000000"), "{}", r.text());
        let mut w = weight(INS, "100000000000000", 61.5);
        w["id"] = json!("w1");
        server.put("/Observation/w1", &w).outcome_at(422, "Observation.subject.identifier");
        server.get("/Observation/w1").outcome(404);
        // A repeated element is named at its position.
        let mut proc = json!({"resourceType": "Procedure", "status": "completed",
            "subject": {"identifier": {"system": INS, "value": "279035121518989"}},
            "performer": [{"actor": {"reference": "Practitioner/x"}},
                          {"actor": {"type": "Patient", "identifier": {"system": INS, "value": "100000000000001"}}}]});
        server.post("/Procedure", &proc).outcome_at(422, "Procedure.performer[1].actor.identifier");
        proc["performer"].as_array_mut().unwrap().pop();
        server.post("/Procedure", &proc).ok_json();
        assert_eq!(total(server, "Observation"), 0);
        assert_eq!(total(server, "Procedure"), 1);
        // The Patient deleted: its INS names no one any more.
        let p = server.get(&format!("/Patient?identifier={INS}|279035121518989")).ok_json();
        let pid = p["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
        assert_eq!(server.delete(&format!("/Patient/{pid}")).status, 204);
        server.post("/Observation", &weight(INS, "279035121518989", 61.5))
            .outcome_at(422, "Observation.subject.identifier");
        assert_eq!(total(server, "Observation"), 0);
    }

    fn other_identifiers_and_literal_references_are_stored_as_sent(server: &Server) {
        let p = id_of(&server.post("/Patient", &patient(INS, "279035121518989")).ok_json());
        // A local identifier (IPP) is not an INS: kept as a logical reference.
        let ipp = server.post("/Observation", &weight("urn:oid:1.2.250.1.999.1", "IPP-7", 60.0)).ok_json();
        assert!(ipp["subject"].get("reference").is_none(), "{ipp}");
        // A reference that has both keeps its literal part.
        let mut both = weight(INS, "100000000000000", 60.0);
        both["subject"]["reference"] = json!(format!("Patient/{p}"));
        let o = server.post("/Observation", &both).ok_json();
        assert_eq!(o["subject"]["reference"], format!("Patient/{p}"));
        assert_eq!(total(server, &format!("Patient/{p}/Observation")), 1);
        // An INS on a reference typed as another resource is not looked up.
        let mut typed = weight(INS, "100000000000000", 60.0);
        typed["subject"]["type"] = json!("Group");
        let g = server.post("/Observation", &typed).ok_json();
        assert!(g["subject"].get("reference").is_none(), "{g}");
    }

    fn in_a_transaction_the_patient_may_come_from_the_same_bundle(server: &Server) {
        let stored = id_of(&server.post("/Patient", &patient(INS, "279035121518989")).ok_json());
        let response = server.post("", &transaction(vec![
            post("urn:uuid:a1b2c3d4-0000-4000-8000-000000000001", patient(INS, "180017512345678")),
            post("urn:uuid:a1b2c3d4-0000-4000-8000-000000000002", weight(INS, "180017512345678", 80.0)),
            post("urn:uuid:a1b2c3d4-0000-4000-8000-000000000003", weight(INS, "279035121518989", 61.0)),
        ])).ok_json();
        let entries = response["entry"].as_array().unwrap();
        let new_patient = reference_of(&entries[0]);
        let o1 = server.get(&format!("/{}", reference_of(&entries[1]))).ok_json();
        assert_eq!(o1["subject"]["reference"], new_patient);
        assert_eq!(o1["subject"]["identifier"]["value"], "180017512345678");
        let o2 = server.get(&format!("/{}", reference_of(&entries[2]))).ok_json();
        assert_eq!(o2["subject"]["reference"], format!("Patient/{stored}"));
        assert_eq!(total(server, &format!("{new_patient}/Observation")), 1);
        assert_eq!(total(server, &format!("Patient/{stored}/Observation")), 1);
        // A conditional create of the Patient (as feeds send it) that matches the stored one.
        let response = server.post("", &transaction(vec![
            json!({"fullUrl": "urn:uuid:a1b2c3d4-0000-4000-8000-000000000004",
                   "resource": patient(INS, "279035121518989"),
                   "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier={INS}|279035121518989")}}),
            post("urn:uuid:a1b2c3d4-0000-4000-8000-000000000005", weight(INS, "279035121518989", 61.2)),
        ])).ok_json();
        assert!(response["entry"][0]["response"]["status"].as_str().unwrap().starts_with("200"));
        assert_eq!(total(server, &format!("Patient/{stored}/Observation")), 2);
        assert_eq!(total(server, "Patient"), 2);
    }

    fn in_a_transaction_an_unknown_ins_stores_nothing(server: &Server) {
        let r = server.post("", &transaction(vec![
            post("urn:uuid:b1b2c3d4-0000-4000-8000-000000000001", patient(INS, "180017512345678")),
            post("urn:uuid:b1b2c3d4-0000-4000-8000-000000000002", weight(INS, "180017512345678", 80.0)),
            post("urn:uuid:b1b2c3d4-0000-4000-8000-000000000003", weight(INS, "100000000000000", 61.0)),
        ]));
        r.outcome_at(422, "Bundle.entry[2].resource.subject.identifier");
        assert!(r.text().contains("100000000000000"), "{}", r.text());
        assert_eq!(total(server, "Patient"), 0);
        assert_eq!(total(server, "Observation"), 0);
        // In a batch, only that entry fails.
        let b = server.post("", &json!({"resourceType": "Bundle", "type": "batch", "entry": [
            post("urn:uuid:b1b2c3d4-0000-4000-8000-000000000004", weight(INS, "100000000000000", 61.0)),
            post("urn:uuid:b1b2c3d4-0000-4000-8000-000000000005", patient(INS, "180017512345678")),
        ]})).ok_json();
        assert!(b["entry"][0]["response"]["status"].as_str().unwrap().starts_with("422"), "{b}");
        assert!(b["entry"][1]["response"]["status"].as_str().unwrap().starts_with("201"), "{b}");
        assert_eq!(total(server, "Observation"), 0);
    }
}
