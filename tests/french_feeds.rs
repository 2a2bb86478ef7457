//! The French document feed end to end, on SQLite and PostgreSQL: an IHE MHD ITI-65 "provide
//! document bundle" as the PDSm guide publishes it (SubmissionSet List, DocumentReference,
//! Binary, all by urn:uuid, the patient named by INS), then what ITI-67 and ITI-68 read back,
//! and a second submission of the same document refused. (The "Mesures de santé" feed is in
//! `tests/transaction.rs`.)

mod common;

use base64::Engine;
use serde_json::{json, Value};

use common::Server;

const INS: &str = "urn:oid:1.2.250.1.213.1.4.8";
const PDSM: &str = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition";
const MHD: &str = "https://profiles.ihe.net/ITI/MHD/StructureDefinition";
const RFC3986: &str = "urn:ietf:rfc:3986";
const PDF: &[u8] = b"%PDF-1.4\n% compte rendu de consultation\n";

/// An ITI-65 provide document bundle: the document `unique_id` (masterIdentifier) of the
/// patient whose INS is `ins`, in the submission set `set_id`.
fn provide_bundle(ins: &str, unique_id: &str, set_id: &str) -> Value {
    let patient = format!("Patient?identifier={INS}|{ins}");
    let data = base64::engine::general_purpose::STANDARD.encode(PDF);
    json!({
        "resourceType": "Bundle",
        "meta": {"profile": [format!("{PDSM}/pdsm-comprehensive-provide-document-bundle")]},
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:1e404af3-077f-4bee-b7a6-a9be97e1ce01",
                "resource": {
                    "resourceType": "List",
                    "meta": {"profile": [format!("{PDSM}/pdsm-submissionset-comprehensive")]},
                    "extension": [
                        {"url": format!("{MHD}/ihe-sourceId"),
                         "valueIdentifier": {"value": "urn:oid:1.2.250.1.999.1.1"}},
                        {"url": format!("{MHD}/ihe-designationType"),
                         "valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "11488-4",
                                                               "display": "Compte rendu de consultation"}]}}
                    ],
                    "identifier": [
                        {"use": "usual", "system": RFC3986, "value": set_id},
                        {"use": "official", "system": RFC3986, "value": "urn:uuid:1e404af3-077f-4bee-b7a6-a9be97e1ce01"}
                    ],
                    "status": "current",
                    "mode": "working",
                    "title": "Soumission d'un compte rendu",
                    "code": {"coding": [{"system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes", "code": "submissionset"}]},
                    "subject": {"reference": patient},
                    "date": "2026-11-27T10:15:00+01:00",
                    "entry": [{"item": {"reference": "urn:uuid:1e404af3-077f-4bee-b7a6-a9be97e1ce02"}}]
                },
                "request": {"method": "POST", "url": "List"}
            },
            {
                "fullUrl": "urn:uuid:1e404af3-077f-4bee-b7a6-a9be97e1ce02",
                "resource": {
                    "resourceType": "DocumentReference",
                    "meta": {"profile": [format!("{PDSM}/pdsm-comprehensive-document-reference")]},
                    "masterIdentifier": {"system": RFC3986, "value": unique_id},
                    "identifier": [{"use": "official", "system": RFC3986, "value": "urn:uuid:1e404af3-077f-4bee-b7a6-a9be97e1ce02"}],
                    "status": "current",
                    "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4", "display": "Compte rendu de consultation"}]},
                    "category": [{"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument",
                                              "code": "10", "display": "Compte rendu"}]}],
                    "subject": {"reference": patient},
                    "date": "2026-11-27T10:15:00+01:00",
                    "author": [{"display": "Dr Martin, médecin généraliste"}],
                    "securityLabel": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]}],
                    "content": [{
                        "attachment": {
                            "contentType": "application/pdf",
                            "language": "fr-FR",
                            "url": "urn:uuid:1e404af3-077f-4bee-b7a6-a9be97e1ce03",
                            "size": PDF.len(),
                            "title": "Compte rendu de consultation",
                            "creation": "2026-11-27T09:50:00+01:00"
                        },
                        "format": {"system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
                                   "code": "urn:ihe:iti:xds-sd:pdf:2008"}
                    }],
                    "context": {
                        "period": {"start": "2026-11-27T09:30:00+01:00"},
                        "practiceSetting": {"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS",
                                                        "code": "MEDECINE_GENERALE"}]}
                    }
                },
                "request": {"method": "POST", "url": "DocumentReference"}
            },
            {
                "fullUrl": "urn:uuid:1e404af3-077f-4bee-b7a6-a9be97e1ce03",
                "resource": {"resourceType": "Binary", "contentType": "application/pdf", "data": data},
                "request": {"method": "POST", "url": "Binary"}
            }
        ]
    })
}

fn reference_of(entry: &Value) -> String {
    let location = entry["response"]["location"].as_str().unwrap();
    let parts: Vec<&str> = location.split('/').collect();
    format!("{}/{}", parts[0], parts[1])
}

fn matches(server: &Server, query: &str) -> Vec<String> {
    let bundle = server.get(query).ok_json();
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect()
}

backend_tests! {
    fn mhd_provide_document_bundle_end_to_end(server: &Server) {
        let ins = "2800175123456";
        let patient = server.post("/Patient", &json!({
            "resourceType": "Patient",
            "identifier": [{"use": "official", "system": INS, "value": ins}],
            "name": [{"family": "Durand", "given": ["Zoé"]}],
            "birthDate": "1980-01-17"
        })).ok_json();
        let patient_ref = format!("Patient/{}", patient["id"].as_str().unwrap());

        let unique_id = "urn:oid:1.2.250.1.999.1.2.3.4.5";
        let bundle = provide_bundle(ins, unique_id, "urn:oid:1.2.250.1.999.1.2.3.4.1");
        let body = server.post("", &bundle).ok_json();
        assert_eq!(body["type"], "transaction-response");
        let entries = body["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 3);
        for entry in entries {
            assert_eq!(entry["response"]["status"], "201 Created", "{entry}");
        }
        let list_ref = reference_of(&entries[0]);
        let doc_ref = reference_of(&entries[1]);
        let binary_ref = reference_of(&entries[2]);
        assert!(list_ref.starts_with("List/") && doc_ref.starts_with("DocumentReference/") && binary_ref.starts_with("Binary/"));

        // The DocumentReference points at the Binary and the patient found by INS.
        let doc = server.get(&format!("/{doc_ref}")).ok_json();
        assert_eq!(doc["content"][0]["attachment"]["url"], binary_ref.as_str());
        assert_eq!(doc["subject"]["reference"], patient_ref.as_str());
        assert_eq!(doc["masterIdentifier"]["value"], unique_id);
        assert_eq!(doc["meta"]["profile"][0], format!("{PDSM}/pdsm-comprehensive-document-reference"));
        // The SubmissionSet lists the document, with its extensions as sent.
        let list = server.get(&format!("/{list_ref}")).ok_json();
        assert_eq!(list["entry"][0]["item"]["reference"], doc_ref.as_str());
        assert_eq!(list["subject"]["reference"], patient_ref.as_str());
        assert_eq!(list["extension"][1]["valueCodeableConcept"]["coding"][0]["code"], "11488-4");
        assert_eq!(list["meta"]["profile"][0], format!("{PDSM}/pdsm-submissionset-comprehensive"));
        // ITI-68: the document itself, raw, at attachment.url.
        let binary = server.get(&format!("/{binary_ref}"));
        assert_eq!(binary.status, 200);
        assert_eq!(binary.header("content-type"), Some("application/pdf"));
        assert_eq!(binary.body, PDF);
        // ITI-67: found by patient, by patient INS (chained), by uniqueId, by type.
        assert_eq!(matches(server, &format!("/DocumentReference?patient={patient_ref}")), vec![doc_ref.clone()]);
        assert_eq!(matches(server, &format!("/DocumentReference?patient.identifier={INS}|{ins}")), vec![doc_ref.clone()]);
        assert_eq!(matches(server, &format!("/DocumentReference?identifier={RFC3986}|{unique_id}")), vec![doc_ref.clone()]);
        assert_eq!(matches(server, &format!("/DocumentReference?patient={patient_ref}&type=http://loinc.org|11488-4&status=current")), vec![doc_ref.clone()]);
        assert_eq!(matches(server, &format!("/List?patient={patient_ref}&code=submissionset")), vec![list_ref.clone()]);

        // The same document again (same masterIdentifier, new submission set): MHD's uniqueId
        // is unique, so the submission is refused whole, naming the entry and the holder.
        let before = server.all_versions();
        let again = provide_bundle(ins, unique_id, "urn:oid:1.2.250.1.999.1.2.3.4.2");
        let response = server.post("", &again);
        let issues = response.outcome(409);
        let text = issues[0]["diagnostics"].as_str().unwrap();
        assert!(text.contains("entry 1 (urn:uuid:1e404af3-077f-4bee-b7a6-a9be97e1ce02)"), "{text}");
        assert!(text.contains(&doc_ref) && text.contains(unique_id), "{text}");
        assert_eq!(issues[0]["code"], "duplicate");
        assert_eq!(server.all_versions(), before, "nothing stored");
        // Nor through the REST API, nor twice in one Bundle.
        let mut single = again["entry"][1]["resource"].clone();
        single["content"][0]["attachment"]["url"] = json!(binary_ref);
        single["subject"]["reference"] = json!(patient_ref);
        server.post("/DocumentReference", &single).outcome(409);
        let mut twice = provide_bundle(ins, "urn:oid:1.2.250.1.999.1.2.3.4.6", "urn:oid:1.2.250.1.999.1.2.3.4.3");
        let mut second_doc = twice["entry"][1].clone();
        second_doc["fullUrl"] = json!("urn:uuid:1e404af3-077f-4bee-b7a6-a9be97e1ce04");
        twice["entry"].as_array_mut().unwrap().push(second_doc);
        let text = server.post("", &twice).outcome(409)[0]["diagnostics"].as_str().unwrap().to_string();
        assert!(text.contains("entry 3 (urn:uuid:1e404af3-077f-4bee-b7a6-a9be97e1ce04)"), "{text}");
        assert_eq!(server.all_versions(), before, "nothing stored");
        // A retry that wants to be harmless says so: ifNoneExist on the uniqueId.
        let mut idempotent = again.clone();
        idempotent["entry"][1]["request"]["ifNoneExist"] = json!(format!("identifier={RFC3986}|{unique_id}"));
        let body = server.post("", &idempotent).ok_json();
        assert_eq!(body["entry"][1]["response"]["status"], "200 OK");
        assert_eq!(reference_of(&body["entry"][1]), doc_ref);
        assert_eq!(server.get(&format!("/{}", reference_of(&body["entry"][0]))).ok_json()["entry"][0]["item"]["reference"], doc_ref.as_str());
        // Updating the document's metadata keeps its own uniqueId.
        let mut update = server.get(&format!("/{doc_ref}")).ok_json();
        update["status"] = json!("superseded");
        assert_eq!(server.put(&format!("/{doc_ref}"), &update).status, 200);
        // Once deleted, the uniqueId is free again.
        assert_eq!(server.delete(&format!("/{doc_ref}")).status, 204);
        server.post("/DocumentReference", &single).ok_json();
    }

    fn racing_submissions_of_one_document_store_it_once(server: &Server) {
        let ins = "2800175123457";
        server.post("/Patient", &json!({"resourceType": "Patient",
            "identifier": [{"system": INS, "value": ins}]})).ok_json();
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| s.spawn(move || {
                    let bundle = provide_bundle(ins, "urn:oid:1.2.250.1.999.1.2.3.9", &format!("urn:oid:1.2.250.1.999.1.2.3.9.{i}"));
                    let response = server.post("", &bundle);
                    if response.status != 200 {
                        assert_eq!(response.outcome(409)[0]["code"], "duplicate");
                    }
                    response.status
                }))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
        assert_eq!(matches(server, "/DocumentReference").len(), 1);
        assert_eq!(matches(server, "/List").len(), 1);
        assert_eq!(matches(server, "/Binary").len(), 1);
    }
}
