//! `POST /fhir` with transaction and batch Bundles, through HTTP, on SQLite and PostgreSQL:
//! reference rewriting, processing order, atomicity, conditional references and interactions,
//! batch statuses, and every refused input leaving nothing stored.

mod common;

use base64::Engine;
use serde_json::{json, Value};

use common::{Response, Server};

const INS: &str = "urn:oid:1.2.250.1.213.1.4.8";
const DEVICES: &str = "urn:oid:1.2.250.1.999";

fn transaction(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

fn batch(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "batch", "entry": entries})
}

fn post(full_url: &str, resource: Value) -> Value {
    let ty = resource["resourceType"].as_str().unwrap().to_string();
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": ty}})
}

fn patient(ins: &str, family: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": INS, "value": ins}],
        "name": [{"family": family}]
    })
}

fn observation(subject: &str, value: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": subject},
        "valueQuantity": {"value": value.parse::<f64>().unwrap(), "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
    })
}

fn send(server: &Server, bundle: &Value) -> Response {
    server.post("", bundle)
}

/// The matches of a search.
fn count(server: &Server, query: &str) -> usize {
    let bundle = server.get(query).ok_json();
    bundle["entry"].as_array().map_or(0, |e| {
        e.iter().filter(|e| e["search"]["mode"] == "match").count()
    })
}

/// `Type/id` from a response entry's location `Type/id/_history/v`.
fn reference_of(entry: &Value) -> String {
    let location = entry["response"]["location"].as_str().unwrap();
    let parts: Vec<&str> = location.split('/').collect();
    assert_eq!(parts.len(), 4, "{location}");
    assert_eq!(parts[2], "_history");
    format!("{}/{}", parts[0], parts[1])
}

/// Asserts a failed request stored nothing at all (no version in system history).
fn nothing_stored(server: &Server) {
    assert_eq!(server.all_versions(), Vec::<String>::new());
}

fn diagnostics(issues: &[Value]) -> String {
    issues
        .iter()
        .map(|i| i["diagnostics"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join(" | ")
}

backend_tests! {
    fn creates_and_rewrites_references_everywhere(server: &Server) {
        let pdf = base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.4 letter");
        let mut patient = patient("1800512345678", "Durand");
        patient["text"] = json!({
            "status": "generated",
            "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Durand, see <a href=\"urn:uuid:0c3b6c5e-0000-4000-8000-000000000003\">the letter</a></div>"
        });
        let document = json!({
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": "urn:uuid:0c3b6c5e-0000-4000-8000-000000000001"},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"urn:uuid:0c3b6c5e-0000-4000-8000-000000000002\">PDF</a></div>"},
            "content": [{"attachment": {"contentType": "application/pdf", "url": "urn:uuid:0c3b6c5e-0000-4000-8000-000000000002"}}]
        });
        let bundle = transaction(vec![
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000003", document),
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000004", observation("urn:uuid:0c3b6c5e-0000-4000-8000-000000000001", "72.5")),
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000001", patient),
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000002", json!({"resourceType": "Binary", "contentType": "application/pdf", "data": pdf})),
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000005", observation("urn:uuid:0c3b6c5e-0000-4000-8000-000000000001", "1.50")),
        ]);
        let response = send(server, &bundle);
        let body = response.ok_json();
        assert_eq!(response.status, 200);
        assert_eq!(body["resourceType"], "Bundle");
        assert_eq!(body["type"], "transaction-response");
        let entries = body["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 5);
        for entry in entries {
            assert_eq!(entry["response"]["status"], "201 Created", "{entry}");
            assert_eq!(entry["response"]["etag"], "W/\"1\"");
            assert!(entry["response"]["lastModified"].is_string());
            assert!(entry["response"]["location"].as_str().unwrap().ends_with("/_history/1"));
        }
        // Entries answer in the Bundle's order.
        let document_ref = reference_of(&entries[0]);
        let patient_ref = reference_of(&entries[2]);
        let binary_ref = reference_of(&entries[3]);
        assert!(document_ref.starts_with("DocumentReference/"));
        assert!(patient_ref.starts_with("Patient/"));
        assert!(binary_ref.starts_with("Binary/"));
        // The resource is returned (Prefer: return=representation is the default), rewritten.
        assert_eq!(entries[1]["resource"]["subject"]["reference"], patient_ref.as_str());

        let stored = server.get(&format!("/{document_ref}")).ok_json();
        assert_eq!(stored["subject"]["reference"], patient_ref.as_str());
        assert_eq!(stored["content"][0]["attachment"]["url"], binary_ref.as_str());
        let div = stored["text"]["div"].as_str().unwrap();
        assert!(div.contains(&format!("href=\"{binary_ref}\"")), "{div}");
        let stored_patient = server.get(&format!("/{patient_ref}")).ok_json();
        assert!(stored_patient["text"]["div"].as_str().unwrap().contains(&format!("href=\"{document_ref}\"")));
        let obs = server.get(&format!("/{}", reference_of(&entries[4]))).ok_json();
        assert_eq!(obs["subject"]["reference"], patient_ref.as_str());
        // Indexed with the rewritten references, compartments included.
        assert_eq!(count(server, &format!("/Observation?subject={patient_ref}")), 2);
        let patient_id = patient_ref.split('/').nth(1).unwrap();
        assert_eq!(count(server, &format!("/Patient/{patient_id}/Observation")), 2);
        assert_eq!(count(server, &format!("/DocumentReference?patient={patient_ref}")), 1);
        // Decimals keep their text (the Bundle is parsed strictly, once).
        let raw = format!(r#"{{"resourceType":"Bundle","type":"transaction","entry":[{{"fullUrl":"urn:uuid:0c3b6c5e-0000-4000-8000-000000000006","resource":{{"resourceType":"Observation","status":"final","code":{{"text":"weight"}},"subject":{{"reference":"{patient_ref}"}},"valueQuantity":{{"value":72.50,"unit":"kg"}}}},"request":{{"method":"POST","url":"Observation"}}}}]}}"#);
        let response = server.request("POST", "").header("Content-Type", "application/fhir+json").body(raw.as_bytes());
        let location = reference_of(&response.ok_json()["entry"][0]);
        let text = server.get(&format!("/{location}")).text();
        assert!(text.contains(r#""value":72.50"#), "{text}");
        // The Binary is there, raw.
        let binary = server.get(&format!("/{binary_ref}"));
        assert_eq!(binary.body, b"%PDF-1.4 letter");
    }

    fn entries_run_delete_post_put_get(server: &Server) {
        let old = server.post("/Patient", &patient("1", "Order")).ok_json();
        let old_id = old["id"].as_str().unwrap().to_string();
        let bundle = transaction(vec![
            json!({"request": {"method": "GET", "url": "Patient?family=order"}}),
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000010", patient("2", "Order")),
            json!({"request": {"method": "DELETE", "url": format!("Patient/{old_id}")}}),
        ]);
        let body = send(server, &bundle).ok_json();
        let entries = body["entry"].as_array().unwrap();
        assert_eq!(entries[0]["response"]["status"], "200 OK");
        assert_eq!(entries[1]["response"]["status"], "201 Created");
        assert_eq!(entries[2]["response"]["status"], "204 No Content");
        assert_eq!(entries[2]["response"]["etag"], "W/\"2\"");
        // The search ran last: it sees the new Patient and not the deleted one.
        let searchset = &entries[0]["resource"];
        assert_eq!(searchset["type"], "searchset");
        let found: Vec<&str> = searchset["entry"].as_array().unwrap().iter()
            .map(|e| e["resource"]["id"].as_str().unwrap()).collect();
        let new_id = reference_of(&entries[1]).split('/').nth(1).unwrap().to_string();
        assert_eq!(found, vec![new_id.as_str()]);
        // The deletion came before the creation.
        let deleted_at = entries[2]["response"]["lastModified"].as_str().unwrap();
        let created_at = entries[1]["response"]["lastModified"].as_str().unwrap();
        assert!(deleted_at < created_at, "{deleted_at} {created_at}");
        assert_eq!(server.get(&format!("/Patient/{old_id}")).status, 410);
    }

    fn a_failing_entry_rolls_everything_back(server: &Server) {
        let mut invalid = observation("urn:uuid:0c3b6c5e-0000-4000-8000-000000000020", "80");
        invalid["status"] = json!("bogus");
        let bundle = transaction(vec![
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000020", patient("3", "Rollback")),
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000021", observation("urn:uuid:0c3b6c5e-0000-4000-8000-000000000020", "81")),
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000022", invalid),
        ]);
        let response = send(server, &bundle);
        let issues = response.outcome(400);
        let text = diagnostics(&issues);
        assert!(text.contains("entry 2 (urn:uuid:0c3b6c5e-0000-4000-8000-000000000022)"), "{text}");
        response.outcome_at(400, "Bundle.entry[2].resource.status");
        nothing_stored(server);
        assert_eq!(count(server, "/Patient?family=rollback"), 0);
        assert_eq!(count(server, "/Observation"), 0);

        // A failure while writing (a version precondition) undoes the writes already made.
        let existing = server.post("/Patient", &patient("4", "Versioned")).ok_json();
        let id = existing["id"].as_str().unwrap().to_string();
        let mut update = existing.clone();
        update["name"][0]["family"] = json!("Changed");
        let bundle = transaction(vec![
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000023", observation(&format!("Patient/{id}"), "70")),
            json!({"fullUrl": format!("{}/Patient/{id}", server.base), "resource": update,
                   "request": {"method": "PUT", "url": format!("Patient/{id}"), "ifMatch": "W/\"2\""}}),
        ]);
        let response = send(server, &bundle);
        let text = diagnostics(&response.outcome(412));
        assert!(text.contains("entry 1"), "{text}");
        assert_eq!(server.all_versions(), vec![format!("Patient/{id}@W/\"1\"")]);
        assert_eq!(count(server, "/Observation"), 0);
        assert_eq!(server.get(&format!("/Patient/{id}")).json()["name"][0]["family"], "Versioned");
        // With the right version it goes through.
        let mut bundle = bundle;
        bundle["entry"][1]["request"]["ifMatch"] = json!("W/\"1\"");
        let body = send(server, &bundle).ok_json();
        assert_eq!(body["entry"][1]["response"]["status"], "200 OK");
        assert_eq!(body["entry"][1]["response"]["etag"], "W/\"2\"");
    }

    fn conditional_references_resolve_to_one(server: &Server) {
        let created = server.post("/Patient", &patient("1750112345678", "Cond")).ok_json();
        let id = created["id"].as_str().unwrap().to_string();
        let reference = format!("Patient?identifier={INS}|1750112345678");
        let bundle = transaction(vec![
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000030", observation(&reference, "60")),
        ]);
        let body = send(server, &bundle).ok_json();
        assert_eq!(body["entry"][0]["resource"]["subject"]["reference"], format!("Patient/{id}"));
        assert_eq!(count(server, &format!("/Observation?subject=Patient/{id}")), 1);

        // None matches: 400 naming the entry, nothing stored.
        let before = server.all_versions();
        let none = transaction(vec![
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000031", observation(&format!("Patient?identifier={INS}|0000000000000"), "61")),
        ]);
        let response = send(server, &none);
        let text = diagnostics(&response.outcome(400));
        assert!(text.contains("entry 0") && text.contains("no Patient matches"), "{text}");
        // Several match: 412.
        server.post("/Patient", &patient("1750112345678", "Twin")).ok_json();
        let before_twin = server.all_versions();
        assert_eq!(before_twin.len(), before.len() + 1);
        let response = send(server, &bundle);
        let text = diagnostics(&response.outcome(412));
        assert!(text.contains("entry 0"), "{text}");
        assert_eq!(server.all_versions(), before_twin);
        // An unknown parameter in the criteria is a 400.
        let bad = transaction(vec![
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000032", observation("Patient?colour=blue", "61")),
        ]);
        send(server, &bad).outcome(400);
        assert_eq!(server.all_versions(), before_twin);
    }

    fn measures_feed_creates_the_device_once(server: &Server) {
        let patient = server.post("/Patient", &patient("2990112345678", "Mesure")).ok_json();
        let subject = format!("Patient/{}", patient["id"].as_str().unwrap());
        let feed = |value: &str| {
            let mut obs = observation(&subject, value);
            obs["device"] = json!({"reference": "urn:uuid:0c3b6c5e-0000-4000-8000-000000000041"});
            transaction(vec![
                post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000040", obs),
                json!({
                    "fullUrl": "urn:uuid:0c3b6c5e-0000-4000-8000-000000000041",
                    "resource": {
                        "resourceType": "Device",
                        "identifier": [{"system": DEVICES, "value": "dev-1"}],
                        "manufacturer": "Balances SA"
                    },
                    "request": {"method": "POST", "url": "Device", "ifNoneExist": format!("identifier={DEVICES}|dev-1")}
                }),
            ])
        };
        let first = send(server, &feed("70.1")).ok_json();
        assert_eq!(first["entry"][1]["response"]["status"], "201 Created");
        let device = reference_of(&first["entry"][1]);
        assert_eq!(first["entry"][0]["resource"]["device"]["reference"], device.as_str());
        let second = send(server, &feed("70.3")).ok_json();
        assert_eq!(second["entry"][1]["response"]["status"], "200 OK");
        assert_eq!(second["entry"][1]["response"]["etag"], "W/\"1\"");
        assert_eq!(reference_of(&second["entry"][1]), device);
        assert_eq!(second["entry"][0]["response"]["status"], "201 Created");
        assert_eq!(second["entry"][0]["resource"]["device"]["reference"], device.as_str());
        assert_eq!(count(server, "/Device"), 1);
        assert_eq!(count(server, &format!("/Observation?device={device}")), 2);
    }

    fn racing_feeds_create_one_device(server: &Server) {
        let patient = server.post("/Patient", &patient("2990112345679", "Course")).ok_json();
        let subject = format!("Patient/{}", patient["id"].as_str().unwrap());
        let statuses: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let subject = &subject;
                    s.spawn(move || {
                        let mut obs = observation(subject, &format!("7{i}.0"));
                        obs["device"] = json!({"reference": "urn:uuid:0c3b6c5e-0000-4000-8000-000000000091"});
                        let bundle = transaction(vec![
                            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000090", obs),
                            json!({"fullUrl": "urn:uuid:0c3b6c5e-0000-4000-8000-000000000091",
                                   "resource": {"resourceType": "Device", "identifier": [{"system": DEVICES, "value": "dev-race"}]},
                                   "request": {"method": "POST", "url": "Device", "ifNoneExist": format!("identifier={DEVICES}|dev-race")}}),
                        ]);
                        let body = send(server, &bundle).ok_json();
                        body["entry"][1]["response"]["status"].as_str().unwrap().to_string()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(statuses.iter().filter(|s| *s == "201 Created").count(), 1, "{statuses:?}");
        assert_eq!(count(server, "/Device"), 1);
        assert_eq!(count(server, "/Observation"), 8);
    }

    fn conditional_update_patch_delete_and_reads_in_a_transaction(server: &Server) {
        let a = server.post("/Patient", &patient("5", "Alpha")).ok_json();
        let b = server.post("/Patient", &patient("6", "Beta")).ok_json();
        let (a_id, b_id) = (a["id"].as_str().unwrap().to_string(), b["id"].as_str().unwrap().to_string());
        let patch = base64::engine::general_purpose::STANDARD
            .encode(br#"[{"op":"replace","path":"/name/0/family","value":"Beta-Patched"}]"#);
        let bundle = transaction(vec![
            json!({"fullUrl": "urn:uuid:0c3b6c5e-0000-4000-8000-000000000050",
                   "resource": patient("7", "Gamma"),
                   "request": {"method": "PUT", "url": format!("Patient?identifier={INS}|7")}}),
            json!({"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch},
                   "request": {"method": "PATCH", "url": format!("Patient/{b_id}"), "ifMatch": "W/\"1\""}}),
            json!({"request": {"method": "DELETE", "url": format!("Patient?identifier={INS}|5")}}),
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000051", observation("urn:uuid:0c3b6c5e-0000-4000-8000-000000000050", "55")),
            json!({"request": {"method": "GET", "url": format!("Patient/{b_id}")}}),
            json!({"request": {"method": "GET", "url": format!("Patient/{b_id}/_history/1")}}),
        ]);
        let body = send(server, &bundle).ok_json();
        let e = body["entry"].as_array().unwrap();
        assert_eq!(e[0]["response"]["status"], "201 Created", "{body}");
        let gamma = reference_of(&e[0]);
        assert_eq!(e[1]["response"]["status"], "200 OK");
        assert_eq!(e[1]["resource"]["name"][0]["family"], "Beta-Patched");
        assert_eq!(e[2]["response"]["status"], "204 No Content");
        assert_eq!(e[3]["resource"]["subject"]["reference"], gamma.as_str());
        assert_eq!(e[4]["resource"]["name"][0]["family"], "Beta-Patched", "reads see the writes");
        assert_eq!(e[4]["response"]["etag"], "W/\"2\"");
        assert_eq!(e[5]["resource"]["name"][0]["family"], "Beta");
        assert_eq!(server.get(&format!("/Patient/{a_id}")).status, 410);
        assert_eq!(count(server, "/Patient?family=gamma"), 1);

        // A conditional update that now matches updates in place.
        let mut gamma2 = patient("7", "Gamma-Two");
        gamma2["active"] = json!(true);
        let again = transaction(vec![json!({"resource": gamma2,
            "request": {"method": "PUT", "url": format!("Patient?identifier={INS}|7")}})]);
        let body = send(server, &again).ok_json();
        assert_eq!(body["entry"][0]["response"]["status"], "200 OK");
        assert_eq!(reference_of(&body["entry"][0]), gamma);

        // Two entries writing one resource: 400, nothing changes.
        let before = server.all_versions();
        let mut b2 = server.get(&format!("/Patient/{b_id}")).json();
        b2.as_object_mut().unwrap().remove("meta");
        let twice = transaction(vec![
            json!({"resource": b2.clone(), "request": {"method": "PUT", "url": format!("Patient/{b_id}")}}),
            json!({"resource": b2, "request": {"method": "PUT", "url": format!("Patient/{b_id}")}}),
        ]);
        let text = diagnostics(&send(server, &twice).outcome(400));
        assert!(text.contains("both act on"), "{text}");
        // The same conditional criteria twice: 400.
        let same = transaction(vec![
            json!({"resource": patient("8", "X"), "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=a|8"}}),
            json!({"resource": patient("8", "Y"), "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=a|8"}}),
        ]);
        send(server, &same).outcome(400);
        // A PATCH in another format: 400.
        let fhirpath = transaction(vec![json!({"resource": {"resourceType": "Binary", "contentType": "application/fhir+json", "data": "e30="},
            "request": {"method": "PATCH", "url": format!("Patient/{b_id}")}})]);
        send(server, &fhirpath).outcome(400);
        // Reading something missing fails the transaction.
        let missing = transaction(vec![
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000052", patient("9", "Ghost")),
            json!({"request": {"method": "GET", "url": "Patient/nobody"}}),
        ]);
        send(server, &missing).outcome(404);
        assert_eq!(server.all_versions(), before);
    }

    fn batch_entries_succeed_or_fail_alone(server: &Server) {
        let mut invalid = observation("Patient/x", "80");
        invalid["status"] = json!("bogus");
        let mut linked = observation("urn:uuid:0c3b6c5e-0000-4000-8000-000000000060", "81");
        linked["id"] = json!("ignored");
        let bundle = batch(vec![
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000060", patient("10", "Batch")),
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000061", invalid),
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000062", linked),
            json!({"request": {"method": "GET", "url": "Patient?family=batch"}}),
            json!({"request": {"method": "DELETE"}}),
        ]);
        let response = send(server, &bundle);
        let body = response.ok_json();
        assert_eq!(body["type"], "batch-response");
        let e = body["entry"].as_array().unwrap();
        assert_eq!(e.len(), 5);
        assert_eq!(e[0]["response"]["status"], "201 Created");
        assert_eq!(e[1]["response"]["status"], "400 Bad Request");
        assert_eq!(e[1]["response"]["outcome"]["resourceType"], "OperationOutcome");
        let issue = &e[1]["response"]["outcome"]["issue"][0];
        assert_eq!(issue["expression"][0], "Bundle.entry[1].resource.status");
        // Batch entries may not refer to each other.
        assert_eq!(e[2]["response"]["status"], "400 Bad Request");
        let text = e[2]["response"]["outcome"]["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(text.contains("batch"), "{text}");
        assert_eq!(e[3]["response"]["status"], "200 OK");
        assert_eq!(e[3]["resource"]["entry"].as_array().unwrap().len(), 1);
        assert_eq!(e[4]["response"]["status"], "400 Bad Request");
        assert_eq!(count(server, "/Patient"), 1);
        assert_eq!(count(server, "/Observation"), 0);
        assert_eq!(server.all_versions().len(), 1);
    }

    fn refused_bundles_store_nothing(server: &Server) {
        // Not a Bundle, or not a transaction or batch.
        server.post("", &patient("11", "NotABundle")).outcome(400);
        let collection = json!({"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": patient("11", "x")}]});
        server.post("", &collection).outcome_at(400, "Bundle.type");
        server.request("POST", "").body(b"[1,2]").outcome(400);
        server.request("POST", "").body(b"{\"resourceType\": \"Bundle\", \"type\": \"transaction\", \"type\": \"batch\"}").outcome(400);
        // Duplicate fullUrl.
        let dup = transaction(vec![
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000070", patient("12", "a")),
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000070", patient("13", "b")),
        ]);
        let text = diagnostics(&send(server, &dup).outcome(400));
        assert!(text.contains("same fullUrl"), "{text}");
        // A urn:uuid that no entry declares.
        let unknown = transaction(vec![
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000071", patient("14", "c")),
            post("urn:uuid:0c3b6c5e-0000-4000-8000-000000000072", observation("urn:uuid:0c3b6c5e-0000-4000-8000-0000000000ff", "1")),
        ]);
        let response = send(server, &unknown);
        let text = diagnostics(&response.outcome(400));
        assert!(text.contains("entry 1 (urn:uuid:0c3b6c5e-0000-4000-8000-000000000072)"), "{text}");
        assert!(text.contains("urn:uuid:0c3b6c5e-0000-4000-8000-0000000000ff"), "{text}");
        response.outcome_at(400, "Bundle.entry[1].resource.subject.reference");
        // Missing method, url or resource; a resource of the wrong type.
        let envelope = transaction(vec![json!({"resource": patient("15", "d"), "request": {"url": "Patient"}})]);
        send(server, &envelope).outcome_at(400, "Bundle.entry[0].request.method");
        let envelope = transaction(vec![json!({"request": {"method": "POST", "url": "Patient"}})]);
        send(server, &envelope).outcome_at(400, "Bundle.entry[0].resource");
        let envelope = transaction(vec![json!({"resource": patient("15", "d"), "request": {"method": "POST", "url": "Observation"}})]);
        send(server, &envelope).outcome(400);
        let envelope = transaction(vec![json!({"resource": {"resourceType": "Unicorn"}, "request": {"method": "POST", "url": "Unicorn"}})]);
        send(server, &envelope).outcome(404);
        // Not FHIR JSON.
        server.request("POST", "").header("Content-Type", "text/plain").body(b"hello").outcome(415);
        nothing_stored(server);
        // An empty transaction is fine and does nothing.
        let body = send(server, &transaction(vec![])).ok_json();
        assert_eq!(body["type"], "transaction-response");
        nothing_stored(server);
    }

    fn a_large_bundle_is_written_in_chunks(server: &Server) {
        // 30 patients with 20 observations each: more rows than one multi-row INSERT holds.
        let mut entries = Vec::new();
        for p in 0..30 {
            let patient_url = format!("urn:uuid:0c3b6c5e-0000-4000-8001-{p:012}");
            entries.push(post(&patient_url, patient(&format!("9{p:012}"), &format!("Bulk{p}"))));
            for o in 0..20 {
                let url = format!("urn:uuid:0c3b6c5e-0000-4000-8002-{:012}", p * 100 + o);
                entries.push(post(&url, observation(&patient_url, &format!("{}.5", 50 + o))));
            }
        }
        let started = std::time::Instant::now();
        let body = send(server, &transaction(entries)).ok_json();
        eprintln!("630 entries in {:?}", started.elapsed());
        let e = body["entry"].as_array().unwrap();
        assert_eq!(e.len(), 630);
        assert!(e.iter().all(|e| e["response"]["status"] == "201 Created"));
        let first_patient = reference_of(&e[0]);
        let last_patient = reference_of(&e[21 * 29]);
        assert_eq!(e[630 - 1]["resource"]["subject"]["reference"], last_patient.as_str());
        assert_eq!(count(server, &format!("/Observation?subject={first_patient}&_count=100")), 20);
        let last_id = last_patient.split('/').nth(1).unwrap();
        assert_eq!(count(server, &format!("/Patient/{last_id}/Observation?_count=100")), 20);
        assert_eq!(count(server, "/Patient?family=bulk29"), 1);
        assert_eq!(server.all_versions().len(), 630);
    }

    fn a_matched_if_none_exist_resolves_nothing_inside(server: &Server) {
        // The Device exists: the entry writes nothing, so the conditional reference inside its
        // resource (which matches no Patient) is never searched.
        let device = server.post("/Device", &json!({"resourceType": "Device",
            "identifier": [{"system": DEVICES, "value": "dev-known"}]})).ok_json();
        let device_ref = format!("Device/{}", device["id"].as_str().unwrap());
        let feed = |value: &str| {
            let mut obs = observation(&format!("Patient?identifier={INS}|1111111111111"), value);
            obs["subject"] = json!({"display": "not linked"});
            obs["device"] = json!({"reference": "urn:uuid:0c3b6c5e-0000-4000-8000-0000000000a1"});
            transaction(vec![
                post("urn:uuid:0c3b6c5e-0000-4000-8000-0000000000a0", obs),
                json!({"fullUrl": "urn:uuid:0c3b6c5e-0000-4000-8000-0000000000a1",
                       "resource": {"resourceType": "Device",
                                    "identifier": [{"system": DEVICES, "value": "dev-known"}],
                                    "patient": {"reference": format!("Patient?identifier={INS}|0000000000000")}},
                       "request": {"method": "POST", "url": "Device", "ifNoneExist": format!("identifier={DEVICES}|dev-known")}}),
            ])
        };
        let body = send(server, &feed("70")).ok_json();
        assert_eq!(body["entry"][1]["response"]["status"], "200 OK");
        assert_eq!(reference_of(&body["entry"][1]), device_ref);
        assert_eq!(body["entry"][0]["resource"]["device"]["reference"], device_ref.as_str());
        assert!(body["entry"][1]["resource"].get("patient").is_none(), "the stored Device, unchanged");
        assert_eq!(count(server, "/Device"), 1);
        // When the Device does not exist it is created, and then its reference must resolve.
        let before = server.all_versions();
        let mut missing = feed("71");
        missing["entry"][1]["request"]["ifNoneExist"] = json!(format!("identifier={DEVICES}|dev-new"));
        let text = diagnostics(&send(server, &missing).outcome(400));
        assert!(text.contains("entry 1 (urn:uuid:0c3b6c5e-0000-4000-8000-0000000000a1)") && text.contains("no Patient matches"), "{text}");
        assert_eq!(server.all_versions(), before);
    }

    fn a_matched_if_none_exist_and_a_put_of_the_same_resource_overlap(server: &Server) {
        let device = server.post("/Device", &json!({"resourceType": "Device",
            "identifier": [{"system": DEVICES, "value": "dev-twice"}]})).ok_json();
        let id = device["id"].as_str().unwrap().to_string();
        let before = server.all_versions();
        let bundle = transaction(vec![
            json!({"fullUrl": "urn:uuid:0c3b6c5e-0000-4000-8000-0000000000b0",
                   "resource": {"resourceType": "Device", "identifier": [{"system": DEVICES, "value": "dev-twice"}]},
                   "request": {"method": "POST", "url": "Device", "ifNoneExist": format!("identifier={DEVICES}|dev-twice")}}),
            json!({"fullUrl": format!("{}/Device/{id}", server.base),
                   "resource": {"resourceType": "Device", "id": id, "manufacturer": "Other"},
                   "request": {"method": "PUT", "url": format!("Device/{id}")}}),
        ]);
        let response = send(server, &bundle);
        let text = diagnostics(&response.outcome(400));
        assert!(text.contains("entry 0 (urn:uuid:0c3b6c5e-0000-4000-8000-0000000000b0) (its ifNoneExist matched it)"), "{text}");
        assert!(text.contains(&format!("entry 1 ({}/Device/{id})", server.base)), "{text}");
        assert!(text.contains(&format!("Device/{id}")), "{text}");
        assert_eq!(server.all_versions(), before);
        assert!(server.get(&format!("/Device/{id}")).json().get("manufacturer").is_none());
        // Two ifNoneExist entries whose different criteria match the same resource: the same.
        let both = transaction(vec![
            bundle["entry"][0].clone(),
            json!({"resource": {"resourceType": "Device"},
                   "request": {"method": "POST", "url": "Device", "ifNoneExist": format!("_id={id}")}}),
        ]);
        let text = diagnostics(&send(server, &both).outcome(400));
        assert!(text.contains("both act on"), "{text}");
        assert_eq!(server.all_versions(), before);
    }

    fn preconditions_that_mean_nothing_are_refused(server: &Server) {
        let existing = server.post("/Patient", &patient("12", "Pre")).ok_json();
        let id = existing["id"].as_str().unwrap().to_string();
        let patch = base64::engine::general_purpose::STANDARD
            .encode(br#"[{"op":"replace","path":"/active","value":false}]"#);
        let patch_entry = json!({"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch},
                                 "request": {"method": "PATCH", "url": format!("Patient/{id}")}});
        let delete_entry = json!({"request": {"method": "DELETE", "url": format!("Patient/{id}")}});
        let mut cases = Vec::new();
        let mut with = |entry: &Value, key: &str, value: &str| {
            let mut e = entry.clone();
            e["request"][key] = json!(value);
            cases.push((e, key.to_string()));
        };
        let create = post("urn:uuid:0c3b6c5e-0000-4000-8000-0000000000c0", patient("13", "New"));
        with(&create, "ifMatch", "W/\"1\"");
        with(&create, "ifNoneMatch", "*");
        with(&patch_entry, "ifNoneMatch", "*");
        with(&delete_entry, "ifNoneMatch", "W/\"1\"");
        for (entry, key) in cases {
            let response = send(server, &transaction(vec![entry.clone()]));
            response.outcome_at(400, &format!("Bundle.entry[0].request.{key}"));
            let text = diagnostics(&response.outcome(400));
            assert!(text.contains("entry 0") && text.contains(&format!("request.{key}")), "{text}");
            // In a batch, that entry fails alone.
            let ok = post("urn:uuid:0c3b6c5e-0000-4000-8000-0000000000c1", patient("14", "Fine"));
            let body = send(server, &batch(vec![ok, entry])).ok_json();
            assert_eq!(body["entry"][1]["response"]["status"], "400 Bad Request", "{body}");
            assert_eq!(body["entry"][1]["response"]["outcome"]["issue"][0]["expression"][0],
                format!("Bundle.entry[1].request.{key}"));
            assert_eq!(body["entry"][0]["response"]["status"], "201 Created");
            let created = reference_of(&body["entry"][0]);
            server.delete(&format!("/{created}"));
        }
        // ifNoneMatch other than * on a PUT.
        let mut update = existing.clone();
        update.as_object_mut().unwrap().remove("meta");
        let put = json!({"resource": update, "request": {"method": "PUT", "url": format!("Patient/{id}"), "ifNoneMatch": "W/\"1\""}});
        send(server, &transaction(vec![put])).outcome_at(400, "Bundle.entry[0].request.ifNoneMatch");
        assert_eq!(count(server, "/Patient"), 1);
        assert_eq!(server.get(&format!("/Patient/{id}/_history")).ok_json()["total"], 1);

        // The REST API refuses the same headers, by the same table.
        let before = server.all_versions();
        let cases: Vec<(&str, String, &str, &str)> = vec![
            ("POST", "/Patient".into(), "If-Match", "W/\"1\""),
            ("POST", "/Patient".into(), "If-None-Match", "*"),
            ("PATCH", format!("/Patient/{id}"), "If-None-Match", "*"),
            ("DELETE", format!("/Patient/{id}"), "If-None-Match", "*"),
            ("PUT", format!("/Patient/{id}"), "If-None-Exist", "identifier=a|b"),
            ("PUT", format!("/Patient/{id}"), "If-None-Match", "W/\"1\""),
            ("DELETE", format!("/Patient?identifier={INS}|12"), "If-None-Match", "*"),
        ];
        for (method, path, header, value) in cases {
            let request = server.request(method, &path).header(header, value);
            let response = if method == "PATCH" {
                request.header("Content-Type", "application/json-patch+json").json(&json!([{"op": "replace", "path": "/active", "value": false}]))
            } else if method == "DELETE" {
                request.send()
            } else {
                let mut body = patient("15", "Rest");
                if method == "PUT" {
                    body["id"] = json!(id);
                }
                request.json(&body)
            };
            let issues = response.outcome(400);
            assert_eq!(issues[0]["expression"][0], header, "{method} {path} {header}");
            assert!(diagnostics(&issues).contains(header), "{issues:?}");
        }
        // If-None-Match: * on a REST PUT means create only, as in a Bundle.
        let mut again = existing.clone();
        again["active"] = json!(false);
        let response = server.request("PUT", &format!("/Patient/{id}")).header("If-None-Match", "*").json(&again);
        response.outcome(412);
        let fresh = json!({"resourceType": "Patient", "id": "create-only"});
        assert_eq!(server.request("PUT", "/Patient/create-only").header("If-None-Match", "*").json(&fresh).status, 201);
        server.request("PUT", "/Patient/create-only").header("If-None-Match", "*").json(&fresh).outcome(412);
        assert_eq!(server.get("/Patient/create-only/_history").ok_json()["total"], 1);
        let mut expected = before.clone();
        expected.push("Patient/create-only@W/\"1\"".to_string());
        let mut versions = server.all_versions();
        versions.sort();
        expected.sort();
        assert_eq!(versions, expected, "refused requests stored nothing");
        assert_eq!(server.get(&format!("/Patient/{id}")).json()["meta"]["versionId"], "1");
    }

    fn criteria_may_name_other_entries_but_not_in_a_cycle(server: &Server) {
        // The Observation's ifNoneExist names the Patient entry, which is itself conditional:
        // the Patient is resolved first, then the Observation's criteria search for it.
        let patient_id = server.post("/Patient", &patient("1850112345678", "Ordre")).ok_json()["id"].as_str().unwrap().to_string();
        let mut obs = observation(&format!("Patient/{patient_id}"), "80");
        obs["identifier"] = json!([{"system": DEVICES, "value": "obs-1"}]);
        let obs_id = server.post("/Observation", &obs).ok_json()["id"].as_str().unwrap().to_string();
        let before = server.all_versions();
        let bundle = transaction(vec![
            json!({"fullUrl": "urn:uuid:0c3b6c5e-0000-4000-8000-0000000000d1",
                   "resource": observation("urn:uuid:0c3b6c5e-0000-4000-8000-0000000000d0", "80"),
                   "request": {"method": "POST", "url": "Observation",
                               "ifNoneExist": "subject=urn:uuid:0c3b6c5e-0000-4000-8000-0000000000d0&code=http://loinc.org|29463-7"}}),
            json!({"fullUrl": "urn:uuid:0c3b6c5e-0000-4000-8000-0000000000d0",
                   "resource": patient("1850112345678", "Ordre"),
                   "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier={INS}|1850112345678")}}),
        ]);
        let body = send(server, &bundle).ok_json();
        assert_eq!(body["entry"][1]["response"]["status"], "200 OK");
        assert_eq!(reference_of(&body["entry"][1]), format!("Patient/{patient_id}"));
        assert_eq!(body["entry"][0]["response"]["status"], "200 OK", "{body}");
        assert_eq!(reference_of(&body["entry"][0]), format!("Observation/{obs_id}"));
        assert_eq!(server.all_versions(), before);
        // A conditional update naming a new entry: the new resource has nothing yet, so it
        // creates, and its criteria name the new id.
        let update = transaction(vec![
            post("urn:uuid:0c3b6c5e-0000-4000-8000-0000000000d2", patient("1850112345679", "Neuf")),
            json!({"resource": observation("urn:uuid:0c3b6c5e-0000-4000-8000-0000000000d2", "81"),
                   "request": {"method": "PUT", "url": "Observation?subject=urn:uuid:0c3b6c5e-0000-4000-8000-0000000000d2"}}),
        ]);
        let body = send(server, &update).ok_json();
        assert_eq!(body["entry"][1]["response"]["status"], "201 Created");
        assert_eq!(body["entry"][1]["resource"]["subject"]["reference"], reference_of(&body["entry"][0]).as_str());
        let before = server.all_versions();

        // Criteria naming each other: no order resolves them.
        let cycle = transaction(vec![
            json!({"fullUrl": "urn:uuid:0c3b6c5e-0000-4000-8000-0000000000e0", "resource": patient("1", "A"),
                   "request": {"method": "POST", "url": "Patient", "ifNoneExist": "link=urn:uuid:0c3b6c5e-0000-4000-8000-0000000000e1"}}),
            json!({"fullUrl": "urn:uuid:0c3b6c5e-0000-4000-8000-0000000000e1", "resource": patient("2", "B"),
                   "request": {"method": "PUT", "url": "Patient?link=urn:uuid:0c3b6c5e-0000-4000-8000-0000000000e0"}}),
        ]);
        let response = send(server, &cycle);
        let text = diagnostics(&response.outcome(400));
        assert!(text.contains("entry 0 (urn:uuid:0c3b6c5e-0000-4000-8000-0000000000e0)")
            && text.contains("entry 1 (urn:uuid:0c3b6c5e-0000-4000-8000-0000000000e1)"), "{text}");
        response.outcome_at(400, "Bundle.entry[0].request");
        // An entry naming itself.
        let own = transaction(vec![json!({"fullUrl": "urn:uuid:0c3b6c5e-0000-4000-8000-0000000000e2", "resource": patient("3", "C"),
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": "link=urn:uuid:0c3b6c5e-0000-4000-8000-0000000000e2"}})]);
        let text = diagnostics(&send(server, &own).outcome(400));
        assert!(text.contains("its own fullUrl"), "{text}");
        // A urn:uuid that no entry declares.
        let unknown = transaction(vec![json!({"resource": patient("4", "D"),
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": "link=urn:uuid:0c3b6c5e-0000-4000-8000-0000000000ff"}})]);
        let text = diagnostics(&send(server, &unknown).outcome(400));
        assert!(text.contains("entry 0") && text.contains("no entry of the Bundle declares"), "{text}");
        // A conditional delete runs first: it may not wait for a conditional entry.
        let delete = transaction(vec![
            json!({"fullUrl": "urn:uuid:0c3b6c5e-0000-4000-8000-0000000000e3", "resource": patient("5", "E"),
                   "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier={INS}|5")}}),
            json!({"request": {"method": "DELETE", "url": "Observation?subject=urn:uuid:0c3b6c5e-0000-4000-8000-0000000000e3"}}),
        ]);
        let text = diagnostics(&send(server, &delete).outcome(400));
        assert!(text.contains("entry 1") && text.contains("conditional delete"), "{text}");
        // In a batch, criteria naming another entry fail that entry.
        let body = send(server, &batch(vec![
            post("urn:uuid:0c3b6c5e-0000-4000-8000-0000000000e4", patient("6", "F")),
            json!({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
                   "request": {"method": "POST", "url": "Observation", "ifNoneExist": "subject=urn:uuid:0c3b6c5e-0000-4000-8000-0000000000e4"}}),
        ])).ok_json();
        assert_eq!(body["entry"][0]["response"]["status"], "201 Created");
        assert_eq!(body["entry"][1]["response"]["status"], "400 Bad Request");
        let created = reference_of(&body["entry"][0]);
        assert_eq!(server.all_versions().len(), before.len() + 1);
        assert!(server.all_versions().iter().any(|v| v.starts_with(&created)));
        // Cycles through references (not criteria) stay allowed.
        let mut a = patient("7", "G");
        a["link"] = json!([{"other": {"reference": "urn:uuid:0c3b6c5e-0000-4000-8000-0000000000e6"}, "type": "seealso"}]);
        let mut b = patient("8", "H");
        b["link"] = json!([{"other": {"reference": "urn:uuid:0c3b6c5e-0000-4000-8000-0000000000e5"}, "type": "seealso"}]);
        send(server, &transaction(vec![post("urn:uuid:0c3b6c5e-0000-4000-8000-0000000000e5", a), post("urn:uuid:0c3b6c5e-0000-4000-8000-0000000000e6", b)])).ok_json();
    }

    fn metadata_lists_transaction_and_batch(server: &Server) {
        let capability = server.get("/metadata").ok_json();
        let codes: Vec<&str> = capability["rest"][0]["interaction"].as_array().unwrap().iter()
            .map(|i| i["code"].as_str().unwrap()).collect();
        assert!(codes.contains(&"transaction") && codes.contains(&"batch"), "{codes:?}");
        // Other methods on the base are refused with the allowed ones.
        let response = server.request("PUT", "").body(b"{}");
        assert_eq!(response.status, 405);
        assert_eq!(response.header("allow"), Some("GET, POST"));
    }
}

fn entry_limit(server: &Server) {
    let three = transaction(
        (0..3)
            .map(|i| {
                post(
                    &format!("urn:uuid:0c3b6c5e-0000-4000-8000-00000000008{i}"),
                    patient(&i.to_string(), "Limit"),
                )
            })
            .collect(),
    );
    let response = send(server, &three);
    let text = diagnostics(&response.outcome(413));
    assert!(text.contains("at most 2"), "{text}");
    send(server, &batch(three["entry"].as_array().unwrap().clone())).outcome(413);
    nothing_stored(server);
    // Conditional references are searches: as many as entries at most.
    let mut list =
        json!({"resourceType": "List", "status": "current", "mode": "working", "entry": []});
    for i in 0..3 {
        list["entry"]
            .as_array_mut()
            .unwrap()
            .push(json!({"item": {"reference": format!("Patient?identifier={INS}|{i}")}}));
    }
    let text = diagnostics(
        &send(
            server,
            &transaction(vec![post(
                "urn:uuid:0c3b6c5e-0000-4000-8000-000000000090",
                list,
            )]),
        )
        .outcome(413),
    );
    assert!(text.contains("conditional references"), "{text}");
    nothing_stored(server);
    let two = transaction(three["entry"].as_array().unwrap()[..2].to_vec());
    send(server, &two).ok_json();
    assert_eq!(count(server, "/Patient"), 2);
}

#[test]
fn entry_limit_sqlite() {
    entry_limit(&Server::start_with(
        common::Backend::Sqlite,
        &["--max-bundle-entries", "2"],
    ));
}

#[test]
fn entry_limit_postgres() {
    entry_limit(&Server::start_with(
        common::Backend::Postgres,
        &["--max-bundle-entries", "2"],
    ));
}
