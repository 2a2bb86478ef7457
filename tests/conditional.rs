//! Conditional create, update, patch and delete through HTTP, on SQLite and PostgreSQL,
//! including identical conditional creates racing each other.

mod common;

use serde_json::{json, Value};

use common::Server;

const SYSTEM: &str = "urn:oid:1.2.250.1.213.1.4.8";

fn patient(ins: &str, family: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": ins}],
        "name": [{"family": family}]
    })
}

fn count(server: &Server, query: &str) -> usize {
    let bundle = server.get(query).ok_json();
    bundle["entry"].as_array().map_or(0, Vec::len)
}

fn if_none_exist(server: &Server, body: &Value, criteria: &str) -> common::Response {
    server
        .request("POST", "/Patient")
        .header("If-None-Exist", criteria)
        .json(body)
}

backend_tests! {
    fn conditional_create_creates_once(server: &Server) {
        let criteria = format!("identifier={SYSTEM}|1800512345678");
        let first = if_none_exist(server, &patient("1800512345678", "Durand"), &criteria);
        assert_eq!(first.status, 201, "{}", first.text());
        let id = first.json()["id"].as_str().unwrap().to_string();
        let second = if_none_exist(server, &patient("1800512345678", "Other"), &criteria);
        assert_eq!(second.status, 200, "{}", second.text());
        assert_eq!(second.json()["id"], id.as_str());
        assert_eq!(second.json()["name"][0]["family"], "Durand", "the existing resource, unchanged");
        assert_eq!(second.header("etag"), Some("W/\"1\""));
        assert_eq!(count(server, "/Patient"), 1);
        // The criteria may be written as a full query (`Patient?...`).
        let third = if_none_exist(server, &patient("1800512345678", "x"), &format!("Patient?{criteria}"));
        assert_eq!(third.status, 200);

        // Two matches: 412, nothing created.
        server.post("/Patient", &patient("1800512345678", "Twin")).ok_json();
        if_none_exist(server, &patient("1800512345678", "x"), &criteria).outcome(412);
        assert_eq!(count(server, "/Patient"), 2);
        // Bad or empty criteria: 400, nothing created.
        if_none_exist(server, &patient("1", "x"), "colour=blue").outcome_at(400, "colour");
        if_none_exist(server, &patient("1", "x"), "_count=1").outcome(400);
        if_none_exist(server, &patient("1", "x"), "").outcome(400);
        assert_eq!(count(server, "/Patient"), 2);
    }

    fn racing_conditional_creates_create_one_resource(server: &Server) {
        let criteria = format!("identifier={SYSTEM}|2990112345678");
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let criteria = &criteria;
                    s.spawn(move || {
                        if_none_exist(server, &patient("2990112345678", &format!("Racer{i}")), criteria).status
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 7, "{statuses:?}");
        assert_eq!(count(server, &format!("/Patient?{criteria}")), 1);
    }

    fn conditional_update_patch_and_delete(server: &Server) {
        let query = format!("/Patient?identifier={SYSTEM}|1750112345678");
        // No match and no id: created with a server id.
        let created = server.put(&query, &patient("1750112345678", "Martin"));
        assert_eq!(created.status, 201, "{}", created.text());
        let id = created.json()["id"].as_str().unwrap().to_string();
        // One match: that resource is updated.
        let updated = server.put(&query, &patient("1750112345678", "Martin-Moreau"));
        assert_eq!(updated.status, 200, "{}", updated.text());
        assert_eq!(updated.json()["id"], id.as_str());
        assert_eq!(updated.json()["meta"]["versionId"], "2");
        // A body id that contradicts the match: 400.
        let mut wrong = patient("1750112345678", "x");
        wrong["id"] = json!("someone-else");
        server.put(&query, &wrong).outcome(400);
        // No match with an id in the body: created at that id.
        let mut with_id = patient("1111111111111", "Petit");
        with_id["id"] = json!("chosen");
        let response = server.put(&format!("/Patient?identifier={SYSTEM}|1111111111111"), &with_id);
        assert_eq!(response.status, 201, "{}", response.text());
        assert_eq!(response.json()["id"], "chosen");

        // Conditional patch.
        let patched = server
            .request("PATCH", &query)
            .header("Content-Type", "application/json-patch+json")
            .body(br#"[{"op":"replace","path":"/name/0/family","value":"Moreau"}]"#);
        assert_eq!(patched.status, 200, "{}", patched.text());
        assert_eq!(patched.json()["id"], id.as_str());
        assert_eq!(count(server, "/Patient?family=moreau"), 1);
        server
            .request("PATCH", "/Patient?identifier=nobody")
            .header("Content-Type", "application/json-patch+json")
            .body(br#"[{"op":"replace","path":"/active","value":true}]"#)
            .outcome(404);

        // Several matches: 412 for update, patch and delete, and nothing changes.
        server.post("/Patient", &patient("1750112345678", "Twin")).ok_json();
        server.put(&query, &patient("1750112345678", "x")).outcome(412);
        server
            .request("PATCH", &query)
            .header("Content-Type", "application/json-patch+json")
            .body(br#"[{"op":"replace","path":"/active","value":true}]"#)
            .outcome(412);
        server.delete(&query).outcome(412);
        assert_eq!(count(server, &query), 2);

        // Conditional delete of one match (If-Match honoured), then of none.
        let family = "/Patient?family=twin";
        server.request("DELETE", family).header("If-Match", "W/\"99\"").send().outcome(412);
        assert_eq!(count(server, family), 1);
        assert_eq!(server.delete(family).status, 204);
        assert_eq!(count(server, family), 0);
        assert_eq!(server.delete(family).status, 204);
        let told = server.request("DELETE", family).header("Prefer", "return=OperationOutcome").send();
        assert_eq!(told.status, 200, "{}", told.text());
        assert!(told.text().contains("nothing was deleted"), "{}", told.text());
        assert_eq!(count(server, &query), 1);
        assert_eq!(server.get(&format!("/Patient/{id}")).status, 200);
        // Criteria are required.
        server.delete("/Patient").outcome(400);
    }
}
