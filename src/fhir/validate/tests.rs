//! Validation tests: one per rule, then HL7's own examples as a corpus.

use std::time::Instant;

use serde_json::{json, Value};

use super::validate_resource;
use crate::fhir::definitions::r4;
use crate::fhir::outcome::{Issue, Severity};

fn issues(resource: Value) -> Vec<Issue> {
    validate_resource(r4(), &resource)
}

fn assert_valid(resource: Value) {
    let found = issues(resource);
    assert!(found.is_empty(), "expected no issues, got {found:#?}");
}

/// Exactly one issue, with this code and expression; returns its diagnostics.
fn assert_issue(resource: Value, code: &str, expression: &str) -> String {
    let found = issues(resource);
    assert_eq!(
        found.len(),
        1,
        "expected one issue at {expression}, got {found:#?}"
    );
    let issue = &found[0];
    assert_eq!(issue.severity, Severity::Error);
    assert_eq!(issue.code, code, "{issue:#?}");
    assert_eq!(issue.expression.as_deref(), Some(expression), "{issue:#?}");
    issue.diagnostics.clone()
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "pat-1",
        "meta": {"versionId": "1", "lastUpdated": "2024-05-06T10:20:30.123+02:00"},
        "text": {
            "status": "generated",
            "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Marie Dupont</div>"
        },
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "2840763123456"}],
        "active": true,
        "name": [{"use": "official", "family": "Dupont", "given": ["Marie", "Louise"]}],
        "telecom": [{"system": "phone", "value": "+33 6 12 34 56 78", "use": "mobile"}],
        "gender": "female",
        "birthDate": "1984-02-29",
        "address": [{"line": ["12 rue de la Paix"], "city": "Paris", "postalCode": "75002", "country": "FR"}],
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
        "contact": [{
            "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}],
            "name": {"family": "Dupont", "given": ["Jean"]}
        }],
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "fr-FR"}]}, "preferred": true}]
    })
}

fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "id": "bp-1",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs"
        }]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}]},
        "subject": {"reference": "Patient/pat-1"},
        "effectiveDateTime": "2024-05-06T08:30:00+02:00",
        "performer": [{"reference": "Patient/pat-1"}],
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                "valueQuantity": {"value": 80.50, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
            }
        ]
    })
}

fn with(mut resource: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = resource.pointer_mut(parent).unwrap();
    match target {
        Value::Object(map) => {
            map.insert(key.to_string(), value);
        }
        Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
        _ => panic!("bad pointer {pointer}"),
    }
    resource
}

fn without(mut resource: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    resource
        .pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .shift_remove(key);
    resource
}

// --------------------------------------------------------------------------- valid

#[test]
fn valid_patient() {
    assert_valid(patient());
}

#[test]
fn valid_observation() {
    assert_valid(observation());
}

#[test]
fn decimals_keep_any_json_number() {
    let obs = with(
        observation(),
        "/component/0/valueQuantity/value",
        json!(1.50e2),
    );
    assert_valid(obs);
}

// ------------------------------------------------------------------- resourceType

#[test]
fn resource_type_is_required() {
    let diagnostics = assert_issue_at_root(without(patient(), "/resourceType"), "required");
    assert!(diagnostics.contains("resourceType"));
}

fn assert_issue_at_root(resource: Value, code: &str) -> String {
    let found = issues(resource);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].code, code);
    assert_eq!(found[0].expression, None);
    found[0].diagnostics.clone()
}

#[test]
fn resource_type_must_be_a_known_string() {
    assert_issue_at_root(with(patient(), "/resourceType", json!(12)), "structure");
    let d = assert_issue_at_root(with(patient(), "/resourceType", json!("patient")), "value");
    assert!(d.contains("'patient'"), "{d}");
    assert_issue_at_root(
        with(patient(), "/resourceType", json!("DomainResource")),
        "value",
    );
    assert_issue_at_root(
        with(patient(), "/resourceType", json!("HumanName")),
        "value",
    );
    assert_issue_at_root(json!(["Patient"]), "structure");
}

// ------------------------------------------------------------------ unknown elements

#[test]
fn unknown_elements_are_rejected() {
    let d = assert_issue(
        with(patient(), "/nickname", json!("Mimi")),
        "structure",
        "Patient.nickname",
    );
    assert!(d.contains("Unknown element 'nickname'"), "{d}");
    assert_issue(
        with(patient(), "/name/0/middle", json!("Anne")),
        "structure",
        "Patient.name[0].middle",
    );
    assert_issue(
        with(patient(), "/contact/0/foo", json!(true)),
        "structure",
        "Patient.contact[0].foo",
    );
}

#[test]
fn unknown_underscore_keys_are_rejected() {
    assert_issue(
        with(patient(), "/_nickname", json!({"extension": []})),
        "structure",
        "Patient._nickname",
    );
}

#[test]
fn choice_type_must_be_allowed() {
    let obs = with(observation(), "/valueAge", json!({"value": 3}));
    let d = assert_issue(obs, "structure", "Observation.valueAge");
    assert!(d.contains("valueQuantity"), "{d}");
    let obs = with(observation(), "/value", json!(3));
    let d = assert_issue(obs, "structure", "Observation.value");
    assert!(d.contains("must be named after its type"), "{d}");
}

#[test]
fn at_most_one_key_per_choice() {
    let obs = with(observation(), "/valueString", json!("high"));
    let obs = with(obs, "/valueInteger", json!(3));
    let d = assert_issue(obs, "invalid", "Observation.valueInteger");
    assert!(d.contains("valueString and valueInteger"), "{d}");
}

#[test]
fn choice_value_and_its_extension_are_one_value() {
    let obs = with(observation(), "/valueString", json!("high"));
    let obs = with(obs, "/_valueString", json!({"id": "v1"}));
    assert_valid(obs);
}

// ------------------------------------------------------------------------ JSON types

#[test]
fn repeating_elements_must_be_arrays() {
    let d = assert_issue(
        with(patient(), "/name", json!({"family": "Dupont"})),
        "structure",
        "Patient.name",
    );
    assert!(d.contains("must be a JSON array"), "{d}");
}

#[test]
fn single_elements_must_not_be_arrays() {
    assert_issue(
        with(patient(), "/gender", json!(["female"])),
        "structure",
        "Patient.gender",
    );
}

#[test]
fn complex_types_must_be_objects() {
    assert_issue(
        with(observation(), "/code", json!("85354-9")),
        "structure",
        "Observation.code",
    );
    assert_issue(
        with(patient(), "/contact/0", json!("Jean")),
        "structure",
        "Patient.contact[0]",
    );
}

#[test]
fn primitives_have_their_json_type() {
    assert_issue(
        with(patient(), "/active", json!("true")),
        "structure",
        "Patient.active",
    );
    assert_issue(
        with(
            observation(),
            "/component/0/valueQuantity/value",
            json!("120"),
        ),
        "structure",
        "Observation.component[0].valueQuantity.value",
    );
    assert_issue(
        with(patient(), "/name/0/given/1", json!(42)),
        "structure",
        "Patient.name[0].given[1]",
    );
    assert_issue(
        with(patient(), "/multipleBirthInteger", json!("2")),
        "structure",
        "Patient.multipleBirthInteger",
    );
}

#[test]
fn no_nulls_empty_objects_arrays_or_strings() {
    assert_issue(
        with(patient(), "/gender", Value::Null),
        "structure",
        "Patient.gender",
    );
    assert_issue(
        with(patient(), "/name/0/given/1", Value::Null),
        "structure",
        "Patient.name[0].given[1]",
    );
    assert_issue(
        with(patient(), "/meta", json!({})),
        "structure",
        "Patient.meta",
    );
    assert_issue(
        with(patient(), "/telecom", json!([])),
        "structure",
        "Patient.telecom",
    );
    assert_issue(
        with(patient(), "/name/0/family", json!("")),
        "structure",
        "Patient.name[0].family",
    );
    assert_issue(
        with(patient(), "/name/0/family", json!("  \n")),
        "structure",
        "Patient.name[0].family",
    );
}

// ---------------------------------------------------------------------- cardinality

#[test]
fn required_elements_must_be_present() {
    let d = assert_issue(
        without(observation(), "/status"),
        "required",
        "Observation.status",
    );
    assert!(d.contains("'status'"), "{d}");
    assert_issue(
        without(observation(), "/component/1/code"),
        "required",
        "Observation.component[1].code",
    );
}

#[test]
fn required_choice_must_be_present() {
    let ext = json!([{"url": "http://example.org/x"}]);
    // Extension.value[x] is optional; a required choice: Parameters? Use Timing.repeat.bounds? Use
    // MedicationAdministration.medication[x] (1..1).
    let _ = ext;
    let admin = json!({
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": "2024-01-01"
    });
    let d = assert_issue(admin, "required", "MedicationAdministration.medication[x]");
    assert!(d.contains("medicationCodeableConcept"), "{d}");
}

#[test]
fn maximum_cardinality_is_enforced() {
    // Quantity.comparator is max 0 in SimpleQuantity (Observation.referenceRange.low).
    let obs = with(
        observation(),
        "/referenceRange",
        json!([{"low": {"value": 1, "comparator": "<"}}]),
    );
    assert_issue(
        obs,
        "structure",
        "Observation.referenceRange[0].low.comparator",
    );
}

// ------------------------------------------------------------------- primitive formats

#[test]
fn ids_are_checked() {
    let d = assert_issue(
        with(patient(), "/id", json!("pat_1")),
        "value",
        "Patient.id",
    );
    assert!(d.contains("letters, digits"), "{d}");
    assert_issue(
        with(patient(), "/id", json!("a".repeat(65))),
        "value",
        "Patient.id",
    );
}

#[test]
fn dates_are_checked_against_the_calendar() {
    let d = assert_issue(
        with(patient(), "/birthDate", json!("1983-02-29")),
        "value",
        "Patient.birthDate",
    );
    assert!(d.contains("day 29 does not exist"), "{d}");
    assert_issue(
        with(patient(), "/birthDate", json!("1984-13")),
        "value",
        "Patient.birthDate",
    );
    assert_issue(
        with(
            observation(),
            "/effectiveDateTime",
            json!("2024-05-06T08:30:00"),
        ),
        "value",
        "Observation.effectiveDateTime",
    );
    assert_issue(
        with(observation(), "/issued", json!("2024-05-06")),
        "value",
        "Observation.issued",
    );
    assert_issue(
        with(observation(), "/valueTime", json!("8:30")),
        "value",
        "Observation.valueTime",
    );
}

#[test]
fn numbers_are_checked() {
    assert_issue(
        with(observation(), "/valueInteger", json!(1.5)),
        "value",
        "Observation.valueInteger",
    );
    assert_issue(
        with(observation(), "/valueInteger", json!(3_000_000_000u64)),
        "value",
        "Observation.valueInteger",
    );
    let repeat = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "medicationCodeableConcept": {"text": "x"}, "subject": {"reference": "Patient/p"},
        "dosageInstruction": [{"timing": {"repeat": {"frequency": 0}}}]});
    assert_issue(
        repeat,
        "value",
        "MedicationRequest.dosageInstruction[0].timing.repeat.frequency",
    );
}

#[test]
fn codes_uris_oids_uuids_and_base64_are_checked() {
    assert_issue(
        with(patient(), "/telecom/0/use", json!("mobile ")),
        "value",
        "Patient.telecom[0].use",
    );
    assert_issue(
        with(
            patient(),
            "/identifier/0/system",
            json!("urn:oid:1.2.250 1"),
        ),
        "value",
        "Patient.identifier[0].system",
    );
    let bundle = json!({"resourceType": "Bundle", "type": "collection",
        "entry": [{"fullUrl": "urn:uuid:ABC", "resource": {"resourceType": "Basic", "code": {"text": "x"}}}]});
    assert_valid(bundle.clone()); // fullUrl is a uri: any non-blank text
    let ig = json!({"resourceType": "ImplementationGuide", "url": "http://x", "name": "X", "status": "draft",
        "packageId": "x", "fhirVersion": ["4.0.1"], "definition": {"resource": [{"reference": {"reference": "Basic/1"}}]}});
    assert_valid(ig);
    let doc = json!({"resourceType": "Binary", "contentType": "text/plain", "data": "SGVsbG8*"});
    assert_issue(doc, "value", "Binary.data");
    let att = with(
        patient(),
        "/photo",
        json!([{"contentType": "image/png", "data": "iVBORw0KGgo="}]),
    );
    assert_valid(att);
    let oid = json!({"resourceType": "NamingSystem", "name": "x", "status": "active", "kind": "identifier",
        "date": "2024-01-01", "uniqueId": [{"type": "oid", "value": "1.2"}],
        "extension": [{"url": "http://example.org/oid", "valueOid": "1.2.3"}]});
    assert_issue(oid, "value", "NamingSystem.extension[0].valueOid");
    let uuid = json!({"resourceType": "Basic", "code": {"text": "x"},
        "extension": [{"url": "http://example.org/u", "valueUuid": "urn:uuid:C757873D-EC9A-4326-A141-556F43239520"}]});
    assert_issue(uuid, "value", "Basic.extension[0].valueUuid");
}

#[test]
fn narrative_must_be_an_xhtml_div() {
    let d = assert_issue(
        with(patient(), "/text/div", json!("<p>Marie</p>")),
        "value",
        "Patient.text.div",
    );
    assert!(d.contains("xhtml"), "{d}");
    assert_issue(
        without(patient(), "/text/div"),
        "required",
        "Patient.text.div",
    );
}

#[test]
fn strings_are_capped_at_one_mebibyte() {
    let big = "a".repeat(1024 * 1024 + 1);
    assert_issue(
        with(patient(), "/name/0/family", json!(big)),
        "value",
        "Patient.name[0].family",
    );
}

// ------------------------------------------------------------- primitive extensions

fn ext() -> Value {
    json!({"extension": [{"url": "http://example.org/ext", "valueString": "x"}]})
}

#[test]
fn primitive_extensions_aligned_with_arrays() {
    let p = with(patient(), "/name/0/_given", json!([null, ext()]));
    assert_valid(p);
    let p = with(patient(), "/name/0/given", json!(["Marie", null]));
    let p = with(p, "/name/0/_given", json!([null, ext()]));
    assert_valid(p);
    let p = with(patient(), "/name/0/_given", json!([ext()]));
    let d = assert_issue(p, "structure", "Patient.name[0].given");
    assert!(d.contains("aligned"), "{d}");
}

#[test]
fn primitive_extension_objects_hold_id_and_extension_only() {
    assert_valid(with(patient(), "/_birthDate", ext()));
    assert_issue(
        with(patient(), "/_birthDate", json!({"value": "x"})),
        "structure",
        "Patient.birthDate.value",
    );
    assert_issue(
        with(
            patient(),
            "/_birthDate",
            json!({"extension": [{"valueString": "x"}]}),
        ),
        "required",
        "Patient.birthDate.extension[0].url",
    );
    assert_issue(
        with(patient(), "/_name", ext()),
        "structure",
        "Patient.name",
    );
}

#[test]
fn extension_without_value_is_allowed_only_with_an_extension() {
    let p = without(patient(), "/birthDate");
    assert_valid(with(p.clone(), "/_birthDate", ext()));
    let d = assert_issue(
        with(p, "/_birthDate", json!({"id": "b"})),
        "structure",
        "Patient.birthDate",
    );
    assert!(d.contains("must carry an extension"), "{d}");
}

// ------------------------------------------------------------------ required bindings

#[test]
fn codes_must_be_in_required_value_sets() {
    let d = assert_issue(
        with(patient(), "/gender", json!("F")),
        "value",
        "Patient.gender",
    );
    assert!(d.contains("female"), "{d}");
    assert_issue(
        with(observation(), "/status", json!("done")),
        "value",
        "Observation.status",
    );
    assert_issue(
        with(
            observation(),
            "/component/0/valueQuantity/comparator",
            json!("="),
        ),
        "value",
        "Observation.component[0].valueQuantity.comparator",
    );
}

#[test]
fn codings_in_the_bound_system_must_be_in_the_value_set() {
    // AllergyIntolerance.clinicalStatus: required binding on a CodeableConcept.
    let allergy = |code: &str, system: &str| {
        json!({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/p"},
        "clinicalStatus": {"coding": [
            {"system": "http://example.org/local", "code": "whatever"},
            {"system": system, "code": code}
        ]}})
    };
    let system = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
    assert_valid(allergy("active", system));
    assert_issue(
        allergy("on", system),
        "value",
        "AllergyIntolerance.clinicalStatus.coding[1].code",
    );
}

#[test]
fn unexpandable_value_sets_are_skipped() {
    // Attachment.contentType is bound to BCP-13 mime types, which the package cannot expand.
    let p = with(patient(), "/photo", json!([{"contentType": "made/up"}]));
    assert_valid(p);
}

// ------------------------------------------------------------------------ extensions

#[test]
fn extensions_need_a_url_and_one_value() {
    let p = with(patient(), "/extension", json!([{"valueString": "x"}]));
    assert_issue(p, "required", "Patient.extension[0].url");
    let p = with(
        patient(),
        "/extension",
        json!([{"url": "http://x", "valueString": "x", "valueBoolean": true}]),
    );
    assert_issue(p, "invalid", "Patient.extension[0].valueBoolean");
    let p = with(
        patient(),
        "/modifierExtension",
        json!([{"url": "http://x", "valueString": "x", "extension": [{"url": "a", "valueCode": "b"}]}]),
    );
    assert_issue(p, "invalid", "Patient.modifierExtension[0]");
    let p = with(
        patient(),
        "/extension",
        json!([{"url": "http://x", "extension": [{"url": "a", "valueHumanName": {"family": "X"}}]}]),
    );
    assert_valid(p);
    let p = with(patient(), "/extension", json!([{"url": "http://x"}]));
    assert_issue(p, "invalid", "Patient.extension[0]");
}

// -------------------------------------------------------------- nested resources

#[test]
fn contained_and_bundled_resources_are_validated_by_their_type() {
    let p = with(
        patient(),
        "/contained",
        json!([{"resourceType": "Organization", "id": "org", "name": "Clinique", "colour": "blue"}]),
    );
    assert_issue(p, "structure", "Patient.contained[0].colour");

    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            {"resource": observation(), "request": {"method": "POST", "url": "Observation"}},
            {"resource": with(observation(), "/subject", json!({"reference": 12})),
             "request": {"method": "POST", "url": "Observation"}}
        ]
    });
    assert_issue(
        bundle,
        "structure",
        "Bundle.entry[2].resource.subject.reference",
    );

    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "p", "resource": {"resourceType": "Nope"}}
    ]});
    assert_issue(params, "value", "Parameters.parameter[0].resource");
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "p", "resource": {"id": "x"}}
    ]});
    assert_issue(params, "required", "Parameters.parameter[0].resource");
}

#[test]
fn content_references_are_followed() {
    let q = json!({"resourceType": "Questionnaire", "status": "draft", "item": [
        {"linkId": "1", "type": "group", "item": [
            {"linkId": "1.1", "type": "string", "item": [{"type": "string"}]}
        ]}
    ]});
    assert_issue(
        q,
        "required",
        "Questionnaire.item[0].item[0].item[0].linkId",
    );
}

// ------------------------------------------------------------------ hostile input

#[test]
fn deep_nesting_is_bounded() {
    let mut item = json!({"linkId": "leaf", "type": "string"});
    for i in 0..200 {
        item = json!({"linkId": i.to_string(), "type": "group", "item": [item]});
    }
    let q = json!({"resourceType": "Questionnaire", "status": "draft", "item": [item]});
    let found = issues(q);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].code, "invalid");
    assert!(found[0].diagnostics.contains("64"), "{found:#?}");

    let mut contained = json!({"resourceType": "Basic", "code": {"text": "x"}});
    for _ in 0..200 {
        contained =
            json!({"resourceType": "Basic", "code": {"text": "x"}, "contained": [contained]});
    }
    let found = issues(contained);
    assert_eq!(found.len(), 1, "{found:#?}");
}

#[test]
fn never_panics_on_odd_input() {
    for value in [
        Value::Null,
        json!(1),
        json!("Patient"),
        json!({}),
        json!({"resourceType": ""}),
        json!({"resourceType": "Patient", "_id": null}),
        json!({"resourceType": "Patient", "name": [[{"family": "x"}]]}),
        json!({"resourceType": "Patient", "name": [{"_given": [null, null]}]}),
        json!({"resourceType": "Patient", "name": [{"given": [null], "_given": [{}]}]}),
        json!({"resourceType": "Patient", "_resourceType": {"id": "x"}}),
        json!({"resourceType": "Patient", "contained": [null, 1, [], {"resourceType": "Patient"}]}),
        json!({"resourceType": "Patient", "_": 1, "": 2, "é": 3}),
        json!({"resourceType": "Patient", "birthDate": "2024-02-2é"}),
        json!({"resourceType": "Patient", "birthDate": "é"}),
        json!({"resourceType": "Observation", "valueDateTime": "2024-01-01T"}),
        json!({"resourceType": "Observation", "valueDateTime": "2024-01-01T10:00:00+"}),
        json!({"resourceType": "Observation", "valueTime": "1"}),
    ] {
        let _ = issues(value);
    }
}

// -------------------------------------------------------------------- performance

#[test]
fn validating_an_observation_takes_microseconds() {
    let obs = observation();
    let defs = r4();
    assert!(validate_resource(defs, &obs).is_empty());
    let rounds = 2_000;
    let start = Instant::now();
    for _ in 0..rounds {
        assert!(validate_resource(defs, std::hint::black_box(&obs)).is_empty());
    }
    let each = start.elapsed() / rounds;
    println!("validate_resource(Observation): {each:?} per call");
    // Generous bound: debug builds of this crate are unoptimised.
    assert!(each.as_micros() < 1_000, "{each:?} per Observation");
}

// ------------------------------------------------------------------ HL7 examples

/// Official R4 examples that are not valid R4: (files, why). Each file is checked to still
/// fail, so the list cannot outlive its reasons.
const KNOWN_INVALID: &[(&[&str], &str)] = &[
    (
        // The package's own ImplementationGuide (twice): no name, no status (both 1..1).
        &["ImplementationGuide-fhir.json", "ig-r4.json"],
        "ImplementationGuide.name and .status missing",
    ),
    (
        // Nested items without linkId (1..1).
        &["Questionnaire-qs1.json"],
        "Questionnaire.item.item.linkId missing",
    ),
    (
        // Search parameters generated for extensions without a base (1..*).
        &[
            "SearchParameter-codesystem-extensions-CodeSystem-author.json",
            "SearchParameter-codesystem-extensions-CodeSystem-effective.json",
            "SearchParameter-codesystem-extensions-CodeSystem-end.json",
            "SearchParameter-codesystem-extensions-CodeSystem-keyword.json",
            "SearchParameter-codesystem-extensions-CodeSystem-workflow.json",
            "SearchParameter-valueset-extensions-ValueSet-author.json",
            "SearchParameter-valueset-extensions-ValueSet-effective.json",
            "SearchParameter-valueset-extensions-ValueSet-end.json",
            "SearchParameter-valueset-extensions-ValueSet-keyword.json",
            "SearchParameter-valueset-extensions-ValueSet-workflow.json",
        ],
        "SearchParameter.base missing",
    ),
    (
        // id "questionnaireresponse-extensions-QuestionnaireResponse-item-subject": 67
        // characters, the id type allows 64.
        &["SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json"],
        "SearchParameter.id longer than 64 characters",
    ),
];

fn known_invalid(file: &str) -> bool {
    KNOWN_INVALID.iter().any(|(files, _)| files.contains(&file))
}

/// Runs over every resource of the unpacked `hl7.fhir.r4.examples` package when
/// `CARNET_HL7_EXAMPLES` points at it; official examples must be accepted.
#[test]
fn hl7_examples_are_accepted() {
    let Some(dir) = std::env::var_os("CARNET_HL7_EXAMPLES") else {
        println!(
            "skipped: set CARNET_HL7_EXAMPLES to the unpacked hl7.fhir.r4.examples@4.0.1 \
             package directory to run the official examples through the validator"
        );
        return;
    };
    let defs = r4();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read CARNET_HL7_EXAMPLES={dir:?}: {e}"))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();

    let start = Instant::now();
    let (mut accepted, mut skipped) = (0, 0);
    let mut rejected = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            skipped += 1;
            continue;
        };
        let is_resource = value
            .get("resourceType")
            .and_then(Value::as_str)
            .is_some_and(|t| defs.is_resource_type(t));
        if !is_resource {
            skipped += 1;
            continue;
        }
        let found = validate_resource(defs, &value);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if found.is_empty() {
            accepted += 1;
        } else {
            rejected.push((name, found));
        }
    }
    println!(
        "HL7 R4 examples: {accepted} accepted, {} rejected, {skipped} files skipped (not resources) in {:?}",
        rejected.len(),
        start.elapsed()
    );

    let mut unexpected = 0;
    for (name, found) in &rejected {
        let known = known_invalid(name);
        if !known {
            unexpected += 1;
        }
        println!("{} {name}:", if known { "known" } else { "UNEXPECTED" });
        for issue in found.iter().take(5) {
            println!(
                "    {} {}: {}",
                issue.code,
                issue.expression.as_deref().unwrap_or("-"),
                issue.diagnostics
            );
        }
    }
    let stale: Vec<&str> = KNOWN_INVALID
        .iter()
        .flat_map(|(files, _)| files.iter().copied())
        .filter(|f| !rejected.iter().any(|(r, _)| r == f))
        .collect();
    assert!(
        stale.is_empty(),
        "now accepted, remove from KNOWN_INVALID: {stale:?}"
    );
    assert_eq!(unexpected, 0, "official examples rejected (see above)");
}
