//! Concurrent writers never lose a version, and Bundles that touch the same resources in
//! opposite orders queue behind each other instead of deadlocking.

mod common;

use serde_json::{json, Value};

const WRITERS: usize = 8;
const UPDATES_EACH: usize = 10;
/// Pairs of threads sending opposite Bundles, and Bundles each thread sends.
const PAIRS: usize = 4;
const ROUNDS: usize = 8;

backend_tests! {
    fn parallel_if_match_writers_lose_nothing(server: &Server) {
        let body = json!({"resourceType": "Patient", "id": "shared", "active": true});
        server.put("/Patient/shared", &body).ok_json();
        std::thread::scope(|s| {
            for writer in 0..WRITERS {
                s.spawn(move || {
                    let mut done = 0;
                    let mut conflicts = 0;
                    while done < UPDATES_EACH {
                        let current = server.get("/Patient/shared");
                        let etag = current.header("etag").unwrap().to_string();
                        let mut next = current.json();
                        next["name"] = json!([{"family": format!("w{writer}-{done}")}]);
                        let put = server.request("PUT", "/Patient/shared").header("If-Match", &etag).json(&next);
                        match put.status {
                            200 => done += 1,
                            412 => conflicts += 1,
                            other => panic!("unexpected {other}: {}", put.text()),
                        }
                        assert!(conflicts < 10_000, "writer {writer} starved");
                    }
                });
            }
        });
        let expected = 1 + WRITERS * UPDATES_EACH;
        let current = server.get("/Patient/shared").json();
        assert_eq!(current["meta"]["versionId"], expected.to_string());
        let history = server.get("/Patient/shared/_history?_count=1000").ok_json();
        assert_eq!(history["total"], expected);
        let mut versions: Vec<usize> = history["entry"].as_array().unwrap().iter()
            .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap().parse().unwrap()).collect();
        versions.sort();
        assert_eq!(versions, (1..=expected).collect::<Vec<_>>(), "every version exactly once");
        // Every successful write is there: one name per (writer, update).
        let mut names: Vec<String> = history["entry"].as_array().unwrap().iter()
            .filter_map(|e| e["resource"]["name"][0]["family"].as_str().map(String::from)).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), WRITERS * UPDATES_EACH);
    }

    fn parallel_blind_writers_and_patches_all_land(server: &Server) {
        server.put("/Patient/blind", &json!({"resourceType": "Patient", "id": "blind"})).ok_json();
        std::thread::scope(|s| {
            for writer in 0..WRITERS {
                s.spawn(move || {
                    for i in 0..UPDATES_EACH {
                        let r = if i % 2 == 0 {
                            server.put("/Patient/blind", &json!({"resourceType": "Patient", "id": "blind", "gender": "other"}))
                        } else {
                            server.request("PATCH", "/Patient/blind").header("Content-Type", "application/json-patch+json")
                                .json(&json!([{"op": "add", "path": "/birthDate", "value": format!("19{:02}-01-01", writer * 10 + i)}]))
                        };
                        assert_eq!(r.status, 200, "{}", r.text());
                    }
                });
            }
        });
        let expected = 1 + WRITERS * UPDATES_EACH;
        assert_eq!(server.get("/Patient/blind").json()["meta"]["versionId"], expected.to_string());
        assert_eq!(server.get("/Patient/blind/_history?_count=0").ok_json()["total"], expected);
    }

    fn parallel_creates_of_one_id_make_one_resource(server: &Server) {
        std::thread::scope(|s| {
            for _ in 0..WRITERS {
                s.spawn(|| {
                    let r = server.put("/Patient/race", &json!({"resourceType": "Patient", "id": "race"}));
                    assert!(r.status == 200 || r.status == 201, "{}", r.text());
                });
            }
        });
        let history = server.get("/Patient/race/_history").ok_json();
        assert_eq!(history["total"], WRITERS);
        let created: Vec<_> = history["entry"].as_array().unwrap().iter().filter(|e| e["resource"]["meta"]["versionId"] == "1").collect();
        assert_eq!(created.len(), 1);
    }

    fn failing_writers_do_not_spoil_their_neighbours(server: &Server) {
        // Under SQLite's group commit, concurrent writes share a transaction: a write refused
        // halfway (an invalid patch result) must roll back alone.
        server.put("/Patient/mixed", &json!({"resourceType": "Patient", "id": "mixed"})).ok_json();
        std::thread::scope(|s| {
            for writer in 0..WRITERS {
                s.spawn(move || {
                    for i in 0..UPDATES_EACH {
                        let (value, expected) = if (writer + i) % 2 == 0 { ("male", 200) } else { ("dragon", 422) };
                        let r = server.request("PATCH", "/Patient/mixed").header("Content-Type", "application/json-patch+json")
                            .json(&json!([{"op": "add", "path": "/gender", "value": value}]));
                        assert_eq!(r.status, expected, "{}", r.text());
                        let created = server.post("/Observation", &json!({"resourceType": "Observation", "status": "final", "code": {"text": format!("{writer}-{i}")}}));
                        assert_eq!(created.status, 201, "{}", created.text());
                    }
                });
            }
        });
        let good = (0..WRITERS).flat_map(|w| (0..UPDATES_EACH).map(move |i| (w + i) % 2 == 0)).filter(|g| *g).count();
        assert_eq!(server.get("/Patient/mixed/_history?_count=0").ok_json()["total"], 1 + good);
        assert_eq!(server.get("/Patient/mixed").json()["gender"], "male");
        assert_eq!(server.all_versions().len(), 1 + good + WRITERS * UPDATES_EACH);
    }

    fn opposite_order_bundles_all_succeed(server: &Server) {
        // PUT A then PUT B against PUT B then PUT A, on rows that exist (row locks) and on new
        // ids that both create (unique-index waits); batches of conditional creates in
        // opposite orders (advisory locks). None may deadlock into a 500.
        for id in ["opp-a", "opp-b"] {
            server.put(&format!("/Patient/{id}"), &json!({"resourceType": "Patient", "id": id})).ok_json();
        }
        let put = |id: &str, family: String| json!({
            "fullUrl": format!("{}/Patient/{id}", server.base),
            "resource": {"resourceType": "Patient", "id": id, "name": [{"family": family}]},
            "request": {"method": "PUT", "url": format!("Patient/{id}")}
        });
        let device = |value: String| json!({
            "resource": {"resourceType": "Device", "identifier": [{"system": "urn:oid:1.2.250.1.999", "value": value}]},
            "request": {"method": "POST", "url": "Device", "ifNoneExist": format!("identifier=urn:oid:1.2.250.1.999|{value}")}
        });
        let ok = std::sync::atomic::AtomicUsize::new(0);
        let transient = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for thread in 0..PAIRS * 2 {
                let (put, device, ok, transient) = (&put, &device, &ok, &transient);
                s.spawn(move || {
                    let pair = thread / 2;
                    for round in 0..ROUNDS {
                        let fresh = (format!("opp-{pair}-{round}-x"), format!("opp-{pair}-{round}-y"));
                        let mut entries = vec![
                            put("opp-a", format!("t{thread}r{round}")),
                            put("opp-b", format!("t{thread}r{round}")),
                            put(&fresh.0, format!("t{thread}")),
                            put(&fresh.1, format!("t{thread}")),
                        ];
                        let mut devices = vec![device(format!("{pair}-{round}-x")), device(format!("{pair}-{round}-y"))];
                        if thread % 2 == 1 {
                            entries.reverse();
                            devices.reverse();
                        }
                        let r = server.post("", &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}));
                        match r.status {
                            200 => { ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed); }
                            409 => {
                                assert!(r.text().contains("transient"), "{}", r.text());
                                transient.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            other => panic!("transaction answered {other}: {}", r.text()),
                        }
                        let r = server.post("", &json!({"resourceType": "Bundle", "type": "batch", "entry": devices}));
                        assert_eq!(r.status, 200, "{}", r.text());
                        for e in r.json()["entry"].as_array().unwrap() {
                            let status = e["response"]["status"].as_str().unwrap();
                            assert!(status == "201 Created" || status == "200 OK", "{e}");
                        }
                    }
                });
            }
        });
        let ok = ok.into_inner();
        assert_eq!(transient.into_inner(), 0, "locks in one order: nothing to retry");
        assert_eq!(ok, PAIRS * 2 * ROUNDS);
        // Every committed transaction wrote both rows once.
        for id in ["opp-a", "opp-b"] {
            assert_eq!(server.get(&format!("/Patient/{id}/_history?_count=0")).ok_json()["total"], 1 + ok);
        }
        // Each new id created once and updated once; each device created once.
        for pair in 0..PAIRS {
            for round in 0..ROUNDS {
                for suffix in ["x", "y"] {
                    let history = server.get(&format!("/Patient/opp-{pair}-{round}-{suffix}/_history?_count=0")).ok_json();
                    assert_eq!(history["total"], 2);
                    let devices: Value = server.get(&format!("/Device?identifier=urn:oid:1.2.250.1.999|{pair}-{round}-{suffix}")).ok_json();
                    assert_eq!(devices["entry"].as_array().map_or(0, Vec::len), 1);
                }
            }
        }
    }
}
