use serde_json::{json, Value};

use super::extract::{date_range, extract_param, number, parse_reference};
use super::fhirpath::{Item, Ty};
use super::*;
use crate::fhir::definitions::ROOT_NODE;

/// The values of one parameter, evaluated even when [`extract`] skips it as derived.
fn values(resource: &Value, code: &str) -> Vec<IndexValue> {
    let params = r4();
    let ty = resource["resourceType"].as_str().unwrap();
    let root = Item {
        value: resource,
        ty: Ty::Complex(params.definitions.resource_type(ty).unwrap(), ROOT_NODE),
    };
    let mut out = Vec::new();
    extract_param(
        params.definitions,
        params.get(ty, code).unwrap(),
        root,
        &mut out,
    );
    out.into_iter().map(|e| e.value).collect()
}

fn token(system: Option<&str>, code: &str) -> IndexValue {
    IndexValue::Token {
        system: system.map(str::to_string),
        code: code.to_string(),
    }
}

fn string(normalized: &str, exact: &str) -> IndexValue {
    IndexValue::String {
        normalized: normalized.to_string(),
        exact: exact.to_string(),
    }
}

fn reference(ty: &str, id: &str, version: Option<&str>, url: Option<&str>) -> IndexValue {
    IndexValue::Reference {
        resource_type: Some(ty.to_string()),
        id: Some(id.to_string()),
        version: version.map(str::to_string),
        url: url.map(str::to_string),
    }
}

fn micros(text: &str) -> i64 {
    crate::fhir::instant::parse_instant(text).unwrap()
}

/// Parses like the server does (numbers keep their text).
fn resource(value: Value) -> Value {
    crate::fhir::json::parse_resource(value.to_string().as_bytes()).unwrap()
}

#[test]
fn the_table_covers_every_served_type_and_compiles() {
    let params = r4();
    assert_eq!(params.fhir_version(), "4.0.1");
    for ty in crate::fhir::served::served_types() {
        assert!(params.for_type(ty).count() > 8, "{ty}");
        assert!(params.get(ty, "_id").is_some(), "{ty}");
        assert!(params.get(ty, "_lastUpdated").is_some(), "{ty}");
    }
    let obs = params.get("Observation", "code-value-quantity").unwrap();
    assert_eq!(obs.kind, ParamType::Composite);
    assert_eq!(obs.components.len(), 2);
    assert_eq!(obs.components[1].kind, ParamType::Quantity);
    assert_eq!(
        params
            .get("Patient", "general-practitioner")
            .unwrap()
            .target,
        ["Organization", "Practitioner", "PractitionerRole"]
    );
}

/// Exactly these parameters cannot be extracted; anything else failing to compile is a defect.
#[test]
fn unsupported_parameters_are_a_known_short_list() {
    let mut unsupported: Vec<(String, String, String)> = r4()
        .all()
        .iter()
        .filter_map(|p| {
            p.unsupported()
                .map(|why| (p.base.clone(), p.code.clone(), why))
        })
        .collect();
    unsupported.sort();
    let pairs: Vec<(&str, &str)> = unsupported
        .iter()
        .map(|(b, c, _)| (b.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            // `Bundle.entry[0].resource`: the FHIRPath subset has no indexer.
            ("Bundle", "composition"),
            ("Bundle", "message"),
            ("DomainResource", "_text"),
            // Components written `%resource.referenceSeq...`: no environment variables.
            ("MolecularSequence", "chromosome-variant-coordinate"),
            ("MolecularSequence", "referenceseqid-variant-coordinate"),
            ("Resource", "_content"),
            ("Resource", "_filter"),
            ("Resource", "_query"),
        ],
        "{unsupported:#?}"
    );
    for (base, _, why) in &unsupported {
        match base.as_str() {
            "Bundle" | "MolecularSequence" => {
                assert!(why.contains("unsupported FHIRPath"), "{why}")
            }
            _ => assert_eq!(why, "no expression"),
        }
    }
}

#[test]
fn strings_of_names_and_addresses() {
    let patient = resource(json!({
        "resourceType": "Patient",
        "name": [{"family": "Lefèvre", "given": ["Élodie", "Marie"], "prefix": ["Mme"],
                  "text": "Élodie LEFÈVRE"}],
        "address": [{"line": ["3 rue de l'Église"], "city": "Besançon", "postalCode": "25000",
                     "country": "FR"}]
    }));
    assert_eq!(values(&patient, "family"), [string("lefevre", "Lefèvre")]);
    assert_eq!(
        values(&patient, "given"),
        [string("elodie", "Élodie"), string("marie", "Marie")]
    );
    assert_eq!(
        values(&patient, "name"),
        [
            string("lefevre", "Lefèvre"),
            string("elodie", "Élodie"),
            string("marie", "Marie"),
            string("mme", "Mme"),
            string("elodie lefevre", "Élodie LEFÈVRE"),
        ]
    );
    assert_eq!(
        values(&patient, "address"),
        [
            string("3 rue de l'eglise", "3 rue de l'Église"),
            string("besancon", "Besançon"),
            string("25000", "25000"),
            string("fr", "FR"),
        ]
    );
    assert_eq!(
        values(&patient, "address-city"),
        [string("besancon", "Besançon")]
    );
}

#[test]
fn tokens_of_every_shape() {
    let patient = resource(json!({
        "resourceType": "Patient", "id": "p1", "active": true, "gender": "female",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "2770799999999",
                        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                             "code": "NI"}], "text": "INS"}}],
        "telecom": [{"system": "phone", "value": "+33 6 00 00 00 00"},
                    {"system": "email", "value": "e@example.fr"}],
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "fr",
                                                    "display": "French"}], "text": "français"}}],
        "meta": {"tag": [{"system": "http://example.org/tags", "code": "vip"}]}
    }));
    assert_eq!(values(&patient, "_id"), [token(None, "p1")]);
    assert_eq!(values(&patient, "active"), [token(None, "true")]);
    assert_eq!(values(&patient, "gender"), [token(None, "female")]);
    assert_eq!(values(&patient, "deceased"), [token(None, "false")]);
    assert_eq!(
        values(&patient, "identifier"),
        [
            token(Some("urn:oid:1.2.250.1.213.1.4.8"), "2770799999999"),
            IndexValue::TokenOfType {
                type_system: Some("http://terminology.hl7.org/CodeSystem/v2-0203".into()),
                type_code: "NI".into(),
                value: "2770799999999".into(),
            },
            IndexValue::TokenText("INS".into()),
        ]
    );
    assert_eq!(
        values(&patient, "phone"),
        [token(None, "+33 6 00 00 00 00")]
    );
    assert_eq!(values(&patient, "email"), [token(None, "e@example.fr")]);
    assert_eq!(values(&patient, "telecom").len(), 2);
    assert_eq!(
        values(&patient, "language"),
        [
            token(Some("urn:ietf:bcp:47"), "fr"),
            IndexValue::TokenText("French".into()),
            IndexValue::TokenText("français".into()),
        ]
    );
    assert_eq!(
        values(&patient, "_tag"),
        [token(Some("http://example.org/tags"), "vip")]
    );
    let dead = resource(json!({"resourceType": "Patient", "deceasedDateTime": "2020-01-01"}));
    assert_eq!(values(&dead, "deceased"), [token(None, "true")]);
    assert_eq!(
        values(&dead, "death-date"),
        [IndexValue::Date {
            low: micros("2020-01-01"),
            high: micros("2020-01-02")
        }]
    );
    let alive = resource(json!({"resourceType": "Patient", "deceasedBoolean": false}));
    assert_eq!(values(&alive, "deceased"), [token(None, "false")]);
}

fn blood_pressure() -> Value {
    resource(json!({
        "resourceType": "Observation", "id": "bp", "status": "final",
        "meta": {"lastUpdated": "2026-11-22T10:00:00.123456Z",
                 "profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "https://carnet.example/fhir/Practitioner/d1/_history/3"},
                      {"reference": "#contained"},
                      {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810000000000"}}],
        "effectiveDateTime": "2026-11-22T09:30:00+01:00",
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
             "valueQuantity": {"value": 107, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                               "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
             "valueQuantity": {"value": 60.5, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                               "code": "mm[Hg]"}}
        ]
    }))
}

#[test]
fn references() {
    let bp = blood_pressure();
    assert_eq!(
        values(&bp, "subject"),
        [reference("Patient", "p1", None, None)]
    );
    assert_eq!(
        values(&bp, "patient"),
        [reference("Patient", "p1", None, None)]
    );
    assert_eq!(
        values(&bp, "performer"),
        [
            reference(
                "Practitioner",
                "d1",
                Some("3"),
                Some("https://carnet.example/fhir/Practitioner/d1/_history/3")
            ),
            IndexValue::ReferenceIdentifier {
                system: Some("urn:oid:1.2.250.1.71.4.2.1".into()),
                value: "810000000000".into()
            },
        ]
    );
    let group = resource(json!({"resourceType": "Observation", "status": "final",
        "code": {"text": "x"}, "subject": {"reference": "Group/g"}}));
    assert_eq!(values(&group, "patient"), []);
    assert_eq!(
        values(&group, "subject"),
        [reference("Group", "g", None, None)]
    );
    let bundle_ref = resource(json!({"resourceType": "Observation", "status": "final",
        "code": {"text": "x"}, "subject": {"reference": "urn:uuid:9d5c", "type": "Patient"}}));
    assert_eq!(
        values(&bundle_ref, "subject"),
        [IndexValue::Reference {
            resource_type: Some("Patient".into()),
            id: None,
            version: None,
            url: Some("urn:uuid:9d5c".into())
        }]
    );
    assert_eq!(parse_reference("Patient"), None);
    assert_eq!(parse_reference("Patient/a b"), None);
    assert_eq!(parse_reference("patient/1"), None);
}

#[test]
fn dates_are_intervals() {
    let bp = blood_pressure();
    let at = micros("2026-11-22T08:30:00Z");
    assert_eq!(
        values(&bp, "date"),
        [IndexValue::Date {
            low: at,
            high: at + 1_000_000
        }]
    );
    let lu = micros("2026-11-22T10:00:00.123456Z");
    assert_eq!(
        values(&bp, "_lastUpdated"),
        [IndexValue::Date {
            low: lu,
            high: lu + 1
        }]
    );
    assert_eq!(
        date_range("2026"),
        Some((micros("2026-01-01"), micros("2027-01-01")))
    );
    assert_eq!(
        date_range("2024-02"),
        Some((micros("2024-02-01"), micros("2024-03-01")))
    );
    assert_eq!(
        date_range("2026-12"),
        Some((micros("2026-12-01"), micros("2027-01-01")))
    );
    let ms = micros("2026-01-02T03:04:05.250Z");
    assert_eq!(
        date_range("2026-01-02T03:04:05.25+00:00"),
        Some((ms, ms + 10_000))
    );
    let minute = micros("2026-01-02T02:04:00Z");
    assert_eq!(
        date_range("2026-01-02T03:04+01:00"),
        Some((minute, minute + 60_000_000))
    );
    for bad in [
        "",
        "26",
        "2026-13",
        "2026-02-30",
        "2026-01-02T25:00:00Z",
        "2026-01-02T03:04:05+1",
    ] {
        assert_eq!(date_range(bad), None, "{bad}");
    }
    let consent = resource(json!({"resourceType": "Consent", "status": "active",
        "scope": {"text": "x"}, "category": [{"text": "x"}],
        "provision": {"period": {"start": "2026-01"}}}));
    assert_eq!(
        values(&consent, "period"),
        [IndexValue::Date {
            low: micros("2026-01-01"),
            high: i64::MAX
        }]
    );
}

#[test]
fn numbers_and_quantities_keep_text_and_precision() {
    assert_eq!(number(&json!("5.4")).map(|n| n.0), Some("5.4".to_string()));
    let (_, low, high) = number(&json!("5.4")).unwrap();
    assert!((low - 5.35).abs() < 1e-12 && (high - 5.45).abs() < 1e-12);
    let (_, low, high) = number(&json!("100")).unwrap();
    assert_eq!((low, high), (99.5, 100.5));
    let (_, low, high) = number(&json!("1.50e2")).unwrap();
    assert_eq!((low, high), (149.5, 150.5));

    let bp = blood_pressure();
    let combo = values(&bp, "combo-value-quantity");
    assert_eq!(combo.len(), 2);
    let IndexValue::Quantity {
        text,
        low,
        high,
        system,
        code,
        unit,
    } = &combo[1]
    else {
        panic!("{combo:?}")
    };
    assert_eq!(text, "60.5");
    assert!((low - 60.45).abs() < 1e-9 && (high - 60.55).abs() < 1e-9);
    assert_eq!(system.as_deref(), Some("http://unitsofmeasure.org"));
    assert_eq!(code.as_deref(), Some("mm[Hg]"));
    assert_eq!(unit.as_deref(), Some("mmHg"));
    assert_eq!(values(&bp, "value-quantity"), []);

    let condition = resource(
        json!({"resourceType": "Condition", "subject": {"reference": "Patient/p"},
        "onsetRange": {"low": {"value": 2, "code": "a", "system": "http://unitsofmeasure.org"},
                       "high": {"value": 5.0, "code": "a", "system": "http://unitsofmeasure.org"}}}),
    );
    let IndexValue::Quantity {
        low, high, code, ..
    } = &values(&condition, "onset-age")[0]
    else {
        panic!()
    };
    assert_eq!((*low, *high, code.as_deref()), (1.5, 5.05, Some("a")));
}

#[test]
fn uris_and_composites() {
    let bp = blood_pressure();
    assert_eq!(
        values(&bp, "_profile"),
        [IndexValue::Uri(
            "http://hl7.org/fhir/StructureDefinition/vitalsigns".into()
        )]
    );
    let composites = values(&bp, "component-code-value-quantity");
    assert_eq!(composites.len(), 2);
    let IndexValue::Composite(parts) = &composites[0] else {
        panic!()
    };
    assert_eq!(parts[0], token(Some("http://loinc.org"), "8480-6"));
    assert!(matches!(&parts[1], IndexValue::Quantity { text, .. } if text == "107"));
    // The Observation itself has no value: code-value-quantity has no tuple.
    assert_eq!(values(&bp, "code-value-quantity"), []);
    // combo: the Observation's own code with no value, then each component.
    assert_eq!(values(&bp, "combo-code-value-quantity").len(), 2);
    assert_eq!(values(&bp, "combo-code").len(), 3);
    // ... which are answered from the parameters they derive from, so not indexed.
    let indexed: Vec<&str> = extract(r4(), &bp).unwrap().iter().map(|e| e.code).collect();
    assert!(indexed.contains(&"component-code-value-quantity"));
    for derived in [
        "combo-code",
        "combo-code-value-quantity",
        "code-value-quantity",
    ] {
        assert!(!indexed.contains(&derived), "{derived} indexed");
    }
}

/// R4 crossed the component definitions of this one; the generator swaps them back.
#[test]
fn document_relationship_composite() {
    let doc = resource(
        json!({"resourceType": "DocumentReference", "status": "current",
        "content": [{"attachment": {"contentType": "application/pdf"}}],
        "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/old"}}]}),
    );
    assert_eq!(
        values(&doc, "relationship"),
        [IndexValue::Composite(vec![
            token(None, "replaces"),
            reference("DocumentReference", "old", None, None)
        ])]
    );
    assert_eq!(
        values(&doc, "contenttype"),
        [token(None, "application/pdf")]
    );
}

#[test]
fn not_a_resource() {
    assert_eq!(
        extract(r4(), &json!({"id": "x"})).unwrap_err(),
        ExtractError::NotAResource
    );
    assert_eq!(
        extract(r4(), &json!({"resourceType": "Nope"})).unwrap_err(),
        ExtractError::UnknownType("Nope".into())
    );
    // A resource with nothing but its id: only `_id` is indexed.
    let entries = extract(r4(), &json!({"resourceType": "Basic", "id": "b"})).unwrap();
    assert_eq!(entries.len(), 1);
}

/// Extraction time of a typical Observation; meaningful in release builds:
/// `cargo test --release --lib fhir::search::tests::extraction_speed -- --ignored --nocapture`.
#[test]
#[ignore]
fn extraction_speed() {
    let bp = blood_pressure();
    let params = r4();
    let rounds = 20_000;
    let start = std::time::Instant::now();
    let mut n = 0;
    for _ in 0..rounds {
        n += extract(params, std::hint::black_box(&bp)).unwrap().len();
    }
    let each = start.elapsed() / rounds;
    println!(
        "extract(blood pressure Observation): {each:?} per call, {} entries",
        n / rounds as usize
    );
}

/// Every official example of a served type goes through `extract` without error. Skipped
/// unless `CARNET_HL7_EXAMPLES` points at the unpacked hl7.fhir.r4.examples@4.0.1 package.
#[test]
fn hl7_examples_extract() {
    let Some(files) = crate::fhir::hl7_examples::files() else {
        return;
    };
    let params = r4();
    let mut resources = 0;
    let mut entries = 0;
    let mut per_kind = std::collections::BTreeMap::<String, usize>::new();
    let mut used = std::collections::BTreeSet::new();
    let mut elapsed = std::time::Duration::ZERO;
    for path in files {
        let text = std::fs::read(&path).unwrap();
        let Ok(value) = serde_json::from_slice::<Value>(&text) else {
            continue;
        };
        // The resource itself, and those of a Bundle's entries.
        let mut candidates = vec![&value];
        if let Some(Value::Array(entries)) = value.get("entry") {
            candidates.extend(entries.iter().filter_map(|e| e.get("resource")));
        }
        for value in candidates {
            let Some(ty) = value.get("resourceType").and_then(Value::as_str) else {
                continue;
            };
            if !crate::fhir::served::is_served(ty) {
                continue;
            }
            let start = std::time::Instant::now();
            let found =
                extract(params, value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            elapsed += start.elapsed();
            resources += 1;
            entries += found.len();
            for e in found {
                let kind = format!("{:?}", e.value);
                let kind = kind
                    .split([' ', '(', '{'])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                *per_kind.entry(kind).or_default() += 1;
                used.insert((ty.to_string(), e.code.to_string()));
            }
        }
    }
    let total: usize = crate::fhir::served::served_types()
        .iter()
        .map(|t| params.for_type(t).count())
        .sum();
    println!(
        "{resources} resources of served types, {entries} index entries, extracted in {elapsed:?}; \
         {per_kind:?}; {} of {total} (type, parameter) pairs have values",
        used.len()
    );
    assert!(resources > 150, "{resources}");
}
