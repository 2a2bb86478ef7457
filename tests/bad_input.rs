//! Bad input gets a clear 4xx OperationOutcome and stores nothing.

mod common;

use serde_json::json;

backend_tests! {
    fn bad_requests_are_refused_and_store_nothing(server: &Server) {
        let post_raw = |path: &str, body: &[u8]| {
            server.request("POST", path).header("Content-Type", "application/fhir+json").body(body)
        };
        // Syntax.
        post_raw("/Patient", b"{\"resourceType\": \"Patient\",").outcome(400);
        post_raw("/Patient", b"").outcome(400);
        post_raw("/Patient", b"[]").outcome(400);
        post_raw("/Patient", b"\"Patient\"").outcome(400);
        post_raw("/Patient", &[0xff, 0xfe, 0x00]).outcome(400);
        let dup = post_raw("/Patient", br#"{"resourceType":"Patient","gender":"male","gender":"female"}"#).outcome(400);
        assert!(dup[0]["diagnostics"].as_str().unwrap().contains("duplicate key"));
        let deep = format!(r#"{{"resourceType":"Patient","extension":{}1{}}}"#, "[".repeat(300), "]".repeat(300));
        let deep = post_raw("/Patient", deep.as_bytes()).outcome(400);
        assert!(deep[0]["diagnostics"].as_str().unwrap().contains("nesting"));
        // Type and identity.
        post_raw("/Patient", br#"{"active":true}"#).outcome_at(400, "resourceType");
        server.post("/Patient", &json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}})).outcome_at(400, "resourceType");
        server.post("/Spaceship", &json!({"resourceType": "Spaceship"})).outcome(404);
        server.post("/Parameters", &json!({"resourceType": "Parameters"})).outcome(404);
        server.get("/Spaceship/1").outcome(404);
        // Validation, each naming the element.
        server.post("/Patient", &json!({"resourceType": "Patient", "colour": "blue"})).outcome_at(400, "Patient.colour");
        server.post("/Patient", &json!({"resourceType": "Patient", "active": "yes"})).outcome_at(400, "Patient.active");
        server.post("/Patient", &json!({"resourceType": "Patient", "birthDate": "2023-02-30"})).outcome_at(400, "Patient.birthDate");
        server.post("/Patient", &json!({"resourceType": "Patient", "gender": "dragon"})).outcome_at(400, "Patient.gender");
        server.post("/Patient", &json!({"resourceType": "Patient", "name": {"family": "x"}})).outcome_at(400, "Patient.name");
        server.post("/Patient", &json!({"resourceType": "Patient", "name": [{"family": ""}]})).outcome_at(400, "Patient.name[0].family");
        server.post("/Observation", &json!({"resourceType": "Observation", "code": {"text": "w"}})).outcome_at(400, "Observation.status");
        server.post("/Observation", &json!({"resourceType": "Observation", "status": "final", "code": {"text": "w"}, "valueString": "a", "valueBoolean": true})).outcome(400);
        let decimal_as_string = br#"{"resourceType":"Observation","status":"final","code":{"text":"w"},"valueQuantity":{"value":"72.5"}}"#;
        post_raw("/Observation", decimal_as_string).outcome_at(400, "Observation.valueQuantity.value");
        let leading_zero = br#"{"resourceType":"Observation","status":"final","code":{"text":"w"},"valueQuantity":{"value":072.5}}"#;
        post_raw("/Observation", leading_zero).outcome(400);
        server.post("/Patient", &json!({"resourceType": "Patient", "meta": {"lastUpdated": "yesterday"}})).outcome_at(400, "Patient.meta.lastUpdated");
        server.post("/Patient", &json!({"resourceType": "Patient", "multipleBirthInteger": 3_000_000_000i64})).outcome_at(400, "Patient.multipleBirthInteger");
        server.post("/Patient", &json!({"resourceType": "Patient", "active": null})).outcome(400);
        // Methods, ids, sizes.
        let wrong = server.request("PATCH", "/Patient/abc/_history").send();
        wrong.outcome(405);
        assert_eq!(wrong.header("allow"), Some("GET"));
        server.request("POST", "/Patient/abc").send().outcome(405);
        server.request("DELETE", "/_history").send().outcome(405);
        server.request("GET", "/nowhere/at/all/really").send().outcome(404);
        server.get("/Patient/a%20b").outcome(400);
        server.get(&format!("/Patient/{}", "x".repeat(65))).outcome(400);
        server.get("/Patient/abc/_history/zero").outcome(404);
        let huge = vec![b' '; 33 * 1024 * 1024];
        server.request("POST", "/Binary").header("Content-Type", "application/octet-stream").body(&huge).outcome(413);

        assert_eq!(server.all_versions(), Vec::<String>::new(), "a refused request stored something");
        assert_eq!(server.get(&format!("http://{}/health", server.addr)).status, 200, "the server survived");
    }

    fn gzip_bodies_are_bounded_after_decompression(server: &Server) {
        use std::io::Write;
        let small = gzip(br#"{"resourceType":"Patient","active":true}"#);
        let created = server.request("POST", "/Patient").header("Content-Type", "application/fhir+json").header("Content-Encoding", "gzip").body(&small);
        assert_eq!(created.status, 201, "{}", created.text());
        // 64 MiB of zeros compress to ~64 KiB: refused by the decompressed-size limit.
        let mut encoder = gzip_tool::Encoder::new();
        let zeros = vec![b'0'; 1024 * 1024];
        for _ in 0..64 {
            encoder.write_all(&zeros).unwrap();
        }
        let bomb = encoder.finish();
        assert!(bomb.len() < 1024 * 1024);
        server.request("POST", "/Binary").header("Content-Type", "application/octet-stream").header("Content-Encoding", "gzip").body(&bomb).outcome(413);
        assert_eq!(server.all_versions().len(), 1);
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = gzip_tool::Encoder::new();
    encoder.write_all(bytes).unwrap();
    encoder.finish()
}

/// gzip through the system `gzip` tool, to avoid a compression crate just for tests.
mod gzip_tool {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};

    pub struct Encoder(Vec<u8>);

    impl Encoder {
        pub fn new() -> Encoder {
            Encoder(Vec::new())
        }

        pub fn finish(self) -> Vec<u8> {
            let mut child = Command::new("gzip")
                .arg("-c")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("gzip");
            let mut stdin = child.stdin.take().unwrap();
            let input = self.0;
            let writer = std::thread::spawn(move || stdin.write_all(&input));
            let mut out = Vec::new();
            child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
            writer.join().unwrap().unwrap();
            child.wait().unwrap();
            out
        }
    }

    impl Write for Encoder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
