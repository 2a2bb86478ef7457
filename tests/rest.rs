//! The REST interactions through HTTP, on SQLite and PostgreSQL.

mod common;

use serde_json::{json, Value};

fn patient(family: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "1800512345678"}],
        "name": [{"family": family, "given": ["Jeanne"]}],
        "gender": "female",
        "birthDate": "1980-05-12"
    })
}

fn weight(patient_id: &str, value: &str) -> String {
    format!(
        r#"{{"resourceType":"Observation","status":"final","code":{{"coding":[{{"system":"http://loinc.org","code":"29463-7"}}]}},"subject":{{"reference":"Patient/{patient_id}"}},"effectiveDateTime":"2026-01-02T08:00:00+01:00","valueQuantity":{{"value":{value},"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}}}"#
    )
}

backend_tests! {
    fn create_then_read_with_fhir_headers(server: &Server) {
        let mut sent = patient("Martin");
        sent["id"] = json!("client-chosen");
        sent["meta"] = json!({"versionId": "99", "lastUpdated": "2001-01-01T00:00:00Z", "profile": ["http://example.org/p"]});
        let created = server.post("/Patient", &sent);
        assert_eq!(created.status, 201, "{}", created.text());
        let body = created.json();
        let id = body["id"].as_str().unwrap().to_string();
        assert_ne!(id, "client-chosen", "create ignores a client id");
        assert_eq!(body["meta"]["versionId"], "1");
        assert_ne!(body["meta"]["lastUpdated"], "2001-01-01T00:00:00Z");
        assert_eq!(body["meta"]["profile"], json!(["http://example.org/p"]));
        assert_eq!(created.header("etag"), Some("W/\"1\""));
        assert_eq!(created.header("location").unwrap(), format!("{}/Patient/{id}/_history/1", server.base));
        assert!(created.header("last-modified").is_some());
        assert!(created.header("content-type").unwrap().starts_with("application/fhir+json"));

        let read = server.get(&format!("/Patient/{id}"));
        assert_eq!(read.status, 200);
        assert_eq!(read.json(), body);
        assert_eq!(read.header("etag"), Some("W/\"1\""));
        let vread = server.get(&format!("/Patient/{id}/_history/1"));
        assert_eq!(vread.json(), body);
        server.get(&format!("/Patient/{id}/_history/2")).outcome(404);
        server.get("/Patient/does-not-exist").outcome(404);
    }

    fn decimals_and_extensions_are_stored_exactly(server: &Server) {
        let p = server.post("/Patient", &patient("Leroy")).ok_json();
        let id = p["id"].as_str().unwrap();
        for value in ["1.50", "107", "0.000000000000000000001", "72.0", "-0.5", "1e2", "1E-22", "-1.000000000000000000E+245", "123456789012345678901234567890.123456789"] {
            let created = server.request("POST", "/Observation")
                .header("Content-Type", "application/fhir+json")
                .body(weight(id, value).as_bytes());
            assert_eq!(created.status, 201, "{value}: {}", created.text());
            let oid = created.json()["id"].as_str().unwrap().to_string();
            let text = server.get(&format!("/Observation/{oid}")).text();
            assert!(text.contains(&format!(r#""value":{value},"#)), "{value} not kept: {text}");
        }
        let mut with_ext = patient("Ext");
        with_ext["birthDate"] = json!("1980-05-12");
        with_ext["_birthDate"] = json!({"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1980-05-12T14:35:45-05:00"}]});
        with_ext["name"][0]["_given"] = json!([{"extension": [{"url": "http://example.org/x", "valueString": "a"}]}]);
        let created = server.post("/Patient", &with_ext).ok_json();
        let read = server.get(&format!("/Patient/{}", created["id"].as_str().unwrap())).json();
        assert_eq!(read["_birthDate"], with_ext["_birthDate"]);
        assert_eq!(read["name"][0]["_given"], with_ext["name"][0]["_given"]);
    }

    fn update_as_create_then_versioned_updates(server: &Server) {
        let mut p = patient("Durand");
        p["id"] = json!("pat-1");
        let first = server.put("/Patient/pat-1", &p);
        assert_eq!(first.status, 201, "{}", first.text());
        assert_eq!(first.header("etag"), Some("W/\"1\""));
        p["active"] = json!(true);
        let second = server.put("/Patient/pat-1", &p);
        assert_eq!(second.status, 200);
        assert_eq!(second.json()["meta"]["versionId"], "2");
        assert_eq!(second.header("location").unwrap(), format!("{}/Patient/pat-1/_history/2", server.base));

        let stale = server.request("PUT", "/Patient/pat-1").header("If-Match", "W/\"1\"").json(&p);
        stale.outcome(412);
        let fresh = server.request("PUT", "/Patient/pat-1").header("If-Match", "W/\"2\"").json(&p);
        assert_eq!(fresh.status, 200, "{}", fresh.text());
        assert_eq!(fresh.json()["meta"]["versionId"], "3");
        server.request("PUT", "/Patient/nobody").header("If-Match", "W/\"1\"").json(&json!({"resourceType":"Patient","id":"nobody"})).outcome(412);
        server.get("/Patient/nobody").outcome(404);
        server.request("PUT", "/Patient/pat-1").header("If-Match", "garbage").json(&p).outcome(400);

        // The body and the URL must agree on the id.
        server.put("/Patient/other", &p).outcome_at(400, "Patient.id");
        let mut no_id = p.clone();
        no_id.as_object_mut().unwrap().remove("id");
        server.put("/Patient/pat-1", &no_id).outcome_at(400, "Patient.id");
        server.put("/Patient/bad$id", &p).outcome(400);
        assert_eq!(server.get("/Patient/pat-1").json()["meta"]["versionId"], "3");
    }

    fn delete_leaves_a_tombstone_and_allows_recreation(server: &Server) {
        let mut p = patient("Petit");
        p["id"] = json!("gone");
        server.put("/Patient/gone", &p).ok_json();
        let deleted = server.delete("/Patient/gone");
        assert_eq!(deleted.status, 204, "{}", deleted.text());
        assert_eq!(deleted.header("etag"), Some("W/\"2\""));
        server.get("/Patient/gone").outcome(410);
        server.get("/Patient/gone/_history/2").outcome(410);
        assert_eq!(server.get("/Patient/gone/_history/1").status, 200);
        assert_eq!(server.delete("/Patient/gone").status, 204, "deleting twice is idempotent");
        let told = server.request("DELETE", "/Patient/gone").header("Prefer", "return=OperationOutcome").send();
        assert_eq!(told.status, 200);
        assert_eq!(told.json()["issue"][0]["severity"], "information");
        server.delete("/Patient/never").outcome(404);
        let history = server.get("/Patient/gone/_history").ok_json();
        assert_eq!(history["total"], 2);
        assert_eq!(history["entry"][0]["request"]["method"], "DELETE");
        assert!(history["entry"][0].get("resource").is_none());
        let again = server.put("/Patient/gone", &p);
        assert_eq!(again.status, 201, "re-creating after a delete is a create");
        assert_eq!(again.json()["meta"]["versionId"], "3");
        server.request("DELETE", "/Patient/gone").header("If-Match", "W/\"1\"").send().outcome(412);
        assert_eq!(server.get("/Patient/gone").status, 200);
    }

    fn history_pages_with_since_and_count(server: &Server) {
        let mut p = patient("Histoire");
        p["id"] = json!("h1");
        for _ in 0..5 {
            server.put("/Patient/h1", &p).ok_json();
        }
        let mut q = patient("Autre");
        q["id"] = json!("h2");
        server.put("/Patient/h2", &q).ok_json();
        let middle = server.get("/Patient/h1/_history/3").ok_json()["meta"]["lastUpdated"].as_str().unwrap().to_string();

        let instance = server.get("/Patient/h1/_history").ok_json();
        assert_eq!(instance["type"], "history");
        assert_eq!(instance["total"], 5);
        let versions: Vec<&str> = instance["entry"].as_array().unwrap().iter().map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap()).collect();
        assert_eq!(versions, ["5", "4", "3", "2", "1"], "newest first");

        let since = server.get(&format!("/Patient/h1/_history?_since={}", urlencode(&middle))).ok_json();
        assert_eq!(since["total"], 3);

        // Paging through type history with _count=2 sees every version exactly once.
        let mut seen = Vec::new();
        let pages = server.pages("/Patient/_history?_count=2");
        for page in &pages {
            for e in page["entry"].as_array().into_iter().flatten() {
                seen.push(format!("{}@{}", e["resource"]["id"].as_str().unwrap(), e["resource"]["meta"]["versionId"].as_str().unwrap()));
            }
        }
        assert_eq!(pages.len(), 3);
        assert_eq!(seen.len(), 6);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 6);
        assert_eq!(server.all_versions().len(), 6);

        server.get("/Patient/_history?_since=yesterday").outcome(400);
        server.get("/Patient/_history?_count=-1").outcome(400);
        server.get("/Patient/_history?_cursor=forged").outcome(400);
        let unknown = server.get("/_history?_bogus=1").outcome(400);
        assert!(unknown[0]["diagnostics"].as_str().unwrap().contains("_bogus"));
        let lenient = server.request("GET", "/_history?_bogus=1").header("Prefer", "handling=lenient").send();
        assert_eq!(lenient.status, 200);
        server.get("/Patient/nobody/_history").outcome(404);
    }

    fn prefer_return_controls_the_body(server: &Server) {
        let minimal = server.request("POST", "/Patient").header("Prefer", "return=minimal").json(&patient("Min"));
        assert_eq!(minimal.status, 201);
        assert!(minimal.body.is_empty());
        assert!(minimal.header("location").is_some());
        // A conditional create honours Prefer too.
        let conditional = server
            .request("POST", "/Patient")
            .header("If-None-Exist", "identifier=x|1")
            .header("Prefer", "return=minimal")
            .json(&patient("Cond"));
        assert_eq!(conditional.status, 201);
        assert!(conditional.body.is_empty());
        let outcome = server.request("POST", "/Patient").header("Prefer", "return=OperationOutcome").json(&patient("Oo"));
        assert_eq!(outcome.status, 201);
        assert_eq!(outcome.json()["resourceType"], "OperationOutcome");
    }

    fn conditional_reads(server: &Server) {
        let created = server.post("/Patient", &patient("Cache"));
        let id = created.json()["id"].as_str().unwrap().to_string();
        let path = format!("/Patient/{id}");
        let same = server.request("GET", &path).header("If-None-Match", "W/\"1\"").send();
        assert_eq!(same.status, 304);
        assert!(same.body.is_empty());
        assert_eq!(server.request("GET", &path).header("If-None-Match", "W/\"7\"").send().status, 200);
        let modified = created.header("last-modified").unwrap().to_string();
        assert_eq!(server.request("GET", &path).header("If-Modified-Since", &modified).send().status, 304);
        assert_eq!(server.request("GET", &path).header("If-Modified-Since", "Mon, 01 Jan 2001 00:00:00 GMT").send().status, 200);
    }

    fn json_patch_is_validated_and_versioned(server: &Server) {
        let id = server.post("/Patient", &patient("Patch")).json()["id"].as_str().unwrap().to_string();
        let path = format!("/Patient/{id}");
        let patch = |ops: Value| server.request("PATCH", &path).header("Content-Type", "application/json-patch+json").json(&ops);
        let ok = patch(json!([{"op": "replace", "path": "/gender", "value": "male"}, {"op": "add", "path": "/active", "value": true}]));
        assert_eq!(ok.status, 200, "{}", ok.text());
        assert_eq!(ok.json()["gender"], "male");
        assert_eq!(ok.json()["meta"]["versionId"], "2");
        assert_eq!(ok.header("etag"), Some("W/\"2\""));

        patch(json!([{"op": "test", "path": "/gender", "value": "female"}])).outcome(422);
        patch(json!([{"op": "replace", "path": "/gender", "value": "dragon"}])).outcome_at(422, "Patient.gender");
        patch(json!([{"op": "add", "path": "/colour", "value": "blue"}])).outcome_at(422, "Patient.colour");
        patch(json!({"op": "replace"})).outcome(400);
        let stale = server.request("PATCH", &path).header("Content-Type", "application/json-patch+json").header("If-Match", "W/\"1\"")
            .json(&json!([{"op": "replace", "path": "/gender", "value": "other"}]));
        stale.outcome(412);
        let fhir_json = server.request("PATCH", &path).json(&json!([{"op": "remove", "path": "/active"}]));
        fhir_json.outcome(415);
        server.request("PATCH", "/Patient/nobody").header("Content-Type", "application/json-patch+json").json(&json!([])).outcome(404);
        assert_eq!(server.get(&path).json()["meta"]["versionId"], "2", "failed patches store nothing");
    }

    fn binary_travels_raw_and_as_json(server: &Server) {
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let created = server.request("POST", "/Binary").header("Content-Type", "application/pdf").header("X-Security-Context", "Patient/p1").body(&bytes);
        assert_eq!(created.status, 201, "{}", created.text());
        let location = created.header("location").unwrap().to_string();
        let id = location.split('/').rev().nth(2).unwrap().to_string();
        let raw = server.request("GET", &format!("/Binary/{id}")).header("Accept", "*/*").send();
        assert_eq!(raw.status, 200);
        assert_eq!(raw.header("content-type"), Some("application/pdf"));
        assert_eq!(raw.header("x-security-context"), Some("Patient/p1"));
        assert_eq!(raw.header("x-content-type-options"), Some("nosniff"));
        assert!(raw.header("content-security-policy").unwrap().contains("sandbox"));
        assert!(raw.body == bytes, "raw content differs");
        let resource = server.request("GET", &format!("/Binary/{id}")).header("Accept", "application/fhir+json").send().ok_json();
        assert_eq!(resource["resourceType"], "Binary");
        assert_eq!(resource["contentType"], "application/pdf");
        assert_eq!(resource["securityContext"]["reference"], "Patient/p1");
        let json_format = server.get(&format!("/Binary/{id}?_format=json")).ok_json();
        assert_eq!(json_format, resource);

        // Raw update at a client id, and a Binary sent as FHIR JSON.
        let put = server.request("PUT", "/Binary/doc-1").header("Content-Type", "text/plain").body(b"bonjour");
        assert_eq!(put.status, 201, "{}", put.text());
        assert_eq!(server.get("/Binary/doc-1").text(), "bonjour");
        let as_json = server.post("/Binary", &json!({"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="}));
        let id = as_json.ok_json()["id"].as_str().unwrap().to_string();
        assert_eq!(server.get(&format!("/Binary/{id}")).text(), "hello");
        server.post("/Binary", &json!({"resourceType": "Binary", "contentType": "text/plain", "data": "%%%"})).outcome_at(400, "Binary.data");
        server.request("POST", "/Patient").header("Content-Type", "application/pdf").body(b"x").outcome(415);
    }

    fn twenty_mebibyte_documents(server: &Server) {
        let bytes: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let created = server.request("POST", "/Binary").header("Content-Type", "application/pdf").body(&bytes);
        assert_eq!(created.status, 201, "{}", created.text());
        let location = created.header("location").unwrap().to_string();
        let raw = server.request("GET", &location.replace("/_history/1", "")).header("Accept", "*/*").send();
        assert!(raw.body == bytes);
    }

    fn content_negotiation(server: &Server) {
        let id = server.post("/Patient", &patient("Format")).json()["id"].as_str().unwrap().to_string();
        let path = format!("/Patient/{id}");
        for accept in ["application/fhir+json", "application/json", "*/*", "application/fhir+json; fhirVersion=4.0", "application/fhir+json; fhirVersion=4.3", "application/fhir+xml;q=0.9, application/fhir+json"] {
            let r = server.request("GET", &path).header("Accept", accept).send();
            assert_eq!(r.status, 200, "Accept {accept}: {}", r.text());
        }
        assert!(server.request("GET", &path).header("Accept", "application/json").send().header("content-type").unwrap().starts_with("application/json"));
        server.request("GET", &path).header("Accept", "application/fhir+xml").send().outcome(406);
        server.request("GET", &path).header("Accept", "application/fhir+json; fhirVersion=3.0").send().outcome(406);
        server.get(&format!("{path}?_format=xml")).outcome(406);
        assert_eq!(server.get(&format!("{path}?_format=json")).status, 200);
        assert_eq!(server.get(&format!("{path}?_format=application/fhir%2Bjson")).status, 200);
        let r43 = server.request("POST", "/Patient").header("Content-Type", "application/fhir+json; fhirVersion=4.3").json(&patient("R4B"));
        assert_eq!(r43.status, 201);
        server.request("POST", "/Patient").header("Content-Type", "application/fhir+json; fhirVersion=5.0").json(&patient("R5")).outcome(415);
        server.request("POST", "/Patient").header("Content-Type", "application/fhir+xml").body(b"<Patient/>").outcome(415);
        server.request("POST", "/Patient").header("Content-Type", "text/plain").body(b"{}").outcome(415);
    }

    fn capability_statement_matches_routes(server: &Server) {
        let cs = server.get("/metadata").ok_json();
        assert_eq!(cs["resourceType"], "CapabilityStatement");
        assert_eq!(cs["fhirVersion"], "4.0.1");
        let resources = cs["rest"][0]["resource"].as_array().unwrap();
        assert_eq!(resources.len(), 144);
        let observation = resources.iter().find(|r| r["type"] == "Observation").unwrap();
        let codes: Vec<&str> = observation["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
        for code in ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create"] {
            assert!(codes.contains(&code), "{code} missing");
        }
        assert!(codes.contains(&"search-type"));
        assert_eq!(cs["rest"][0]["interaction"], json!([{"code": "history-system"}, {"code": "search-system"}, {"code": "transaction"}, {"code": "batch"}]));
        assert_eq!(observation["conditionalCreate"], true);
        assert_eq!(observation["conditionalDelete"], "single");
        let params: Vec<&str> = observation["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        for name in ["code", "patient", "date", "value-quantity", "component-code-value-quantity", "_id", "_lastUpdated"] {
            assert!(params.contains(&name), "{name} missing from {params:?}");
        }
        assert!(!params.contains(&"_text"), "unsupported parameters are not claimed");
        // The same statement is valid FHIR by the server's own rules.
        assert_eq!(server.get(&format!("http://{}/health", server.addr)).status, 200);
        let wrong = server.request("DELETE", "/metadata").send();
        wrong.outcome(405);
        assert_eq!(wrong.header("allow"), Some("GET"));
    }

    fn a_trailing_slash_on_the_base_or_a_path_is_the_same_resource(server: &Server) {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:5d1b4f0e-0000-4000-8000-000000000001", "resource": patient("Slash"),
             "request": {"method": "POST", "url": "Patient"}}]});
        let body = server.post("/", &bundle).ok_json();
        assert_eq!(body["type"], "transaction-response");
        let location = body["entry"][0]["response"]["location"].as_str().unwrap().to_string();
        let id = location.split('/').nth(1).unwrap().to_string();
        let search = server.get("/Patient/").ok_json();
        assert_eq!(search["type"], "searchset");
        assert_eq!(search["entry"].as_array().unwrap().len(), 1);
        let filtered = server.get("/Patient/?family=slash").ok_json();
        assert_eq!(filtered["entry"][0]["resource"]["id"], id.as_str());
        assert_eq!(server.get(&format!("/Patient/{id}/")).ok_json()["id"], id.as_str());
        assert_eq!(server.get("/metadata/").ok_json()["resourceType"], "CapabilityStatement");
        let created = server.post("/Patient/", &patient("Slash2"));
        assert_eq!(created.status, 201, "{}", created.text());
        // Unknown paths stay 404, with an OperationOutcome.
        server.get("/Nothing/here/").outcome(404);
    }
}

fn urlencode(text: &str) -> String {
    text.replace(':', "%3A").replace('+', "%2B")
}
