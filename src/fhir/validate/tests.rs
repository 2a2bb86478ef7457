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

#[test]
fn strings_have_no_control_characters() {
    let d = assert_issue(
        with(patient(), "/name/0/family", json!("Chal\u{1}mers")),
        "value",
        "Patient.name[0].family",
    );
    assert!(d.contains("U+0001 at character 5"), "{d}");
    assert!(d.contains("tab, carriage return and line feed"), "{d}");
    let d = assert_issue(
        with(patient(), "/address/0/city", json!("Pleasant\u{0}Ville")),
        "value",
        "Patient.address[0].city",
    );
    assert!(d.contains("U+0000"), "{d}");
    // Every string-based primitive: code, id, uri, markdown, dateTime, xhtml, an extension value.
    assert_issue(
        with(patient(), "/gender", json!("female\u{1b}")),
        "value",
        "Patient.gender",
    );
    assert_issue(
        with(patient(), "/id", json!("pat\u{7}1")),
        "value",
        "Patient.id",
    );
    assert_issue(
        with(patient(), "/identifier/0/system", json!("urn:x\u{8}")),
        "value",
        "Patient.identifier[0].system",
    );
    assert_issue(
        with(
            observation(),
            "/effectiveDateTime",
            json!("2024-05-06\u{1f}"),
        ),
        "value",
        "Observation.effectiveDateTime",
    );
    assert_issue(
        with(
            patient(),
            "/text/div",
            json!("<div xmlns=\"http://www.w3.org/1999/xhtml\">a\u{c}b</div>"),
        ),
        "value",
        "Patient.text.div",
    );
    assert_issue(
        with(
            patient(),
            "/extension",
            json!([{"url": "http://example.org/note", "valueMarkdown": "*a*\u{2}"}]),
        ),
        "value",
        "Patient.extension[0].valueMarkdown",
    );
    assert_issue(
        with(patient(), "/name/0/given/1", json!("\u{3}")),
        "value",
        "Patient.name[0].given[1]",
    );
    // Tab, CR and LF are fine, and so are C1 controls and DEL (not below U+0020).
    assert_valid(with(
        patient(),
        "/address/0/line/0",
        json!("12 rue\tde la Paix\r\n\u{7f}\u{85}"),
    ));
}

fn narrative(div: &str) -> Value {
    with(patient(), "/text/div", json!(div))
}

const DIV: &str = "<div xmlns=\"http://www.w3.org/1999/xhtml\">";

#[test]
fn narratives_are_checked_as_xhtml() {
    assert_valid(narrative(&format!(
        "{DIV}<p>Marie <b>Dupont</b> &amp; <a href=\"#x\">x</a></p>\
         <table><tr><td style=\"color: red\">1</td></tr></table><img src=\"a.png\" alt=\"\"/></div>"
    )));
    let d = assert_issue(
        narrative(&format!("{DIV}<p>Peter</p><script>alert(1)</script></div>")),
        "value",
        "Patient.text.div",
    );
    assert!(d.contains("<script>"), "{d}");
    assert!(d.contains("txt-1"), "{d}");
    assert!(d.contains("line 1, column 55"), "{d}");
    let d = assert_issue(
        narrative(&format!("{DIV}<p onclick=\"alert(1)\">Peter</p></div>")),
        "value",
        "Patient.text.div",
    );
    assert!(d.contains("'onclick'"), "{d}");
    let d = assert_issue(
        narrative(&format!("{DIV}<p>Peter</div>")),
        "value",
        "Patient.text.div",
    );
    assert!(d.contains("</div> does not close the open <p>"), "{d}");
    let d = assert_issue(
        narrative(&format!("{DIV}<a href=\"javascript:alert(1)\">x</a></div>")),
        "value",
        "Patient.text.div",
    );
    assert!(d.contains("'javascript:'"), "{d}");
    let d = assert_issue(
        narrative(&format!(
            "{DIV}<img src=\"data:text/html;base64,PHNjcmlwdD4=\" alt=\"\"/></div>"
        )),
        "value",
        "Patient.text.div",
    );
    assert!(d.contains("text/html"), "{d}");
    let d = assert_issue(
        narrative(&format!("{DIV}a&nbsp;b</div>")),
        "value",
        "Patient.text.div",
    );
    assert!(d.contains("&#160;"), "{d}");
    let d = assert_issue(
        narrative(&format!("{DIV}\n  <p> </p></div>")),
        "value",
        "Patient.text.div",
    );
    assert!(d.contains("txt-2"), "{d}");
    for bad in [
        format!("{DIV}<iframe src=\"https://evil.example\"></iframe></div>"),
        format!("{DIV}<img src=\"x\" alt=\"\" onerror=\"alert(1)\"/></div>"),
        format!("{DIV}<p style=\"background: url(javascript:alert(1))\">x</p></div>"),
        format!("{DIV}<object data=\"x.swf\">x</object></div>"),
        format!("{DIV}<form action=\"https://evil.example\"><input name=\"pw\"/></form></div>"),
        format!("{DIV}<style>p {{ color: red }}</style>x</div>"),
        format!("{DIV}<a href=\"&#106;avascript:alert(1)\">x</a></div>"),
        format!("{DIV}x<![CDATA[ ><img src=x onerror=alert(1)> ]]></div>"),
        format!("{DIV}x<!--><img src=x onerror=alert(1)>--></div>"),
    ] {
        assert_issue(narrative(&bad), "value", "Patient.text.div");
    }
}

#[test]
fn narratives_of_nested_resources_are_checked_too() {
    let org = json!({"resourceType": "Organization", "id": "org", "name": "Clinique",
        "text": {"status": "generated", "div": format!("{DIV}<script>x</script></div>")}});
    let p = with(patient(), "/contained", json!([org.clone()]));
    let p = with(p, "/managingOrganization", json!({"reference": "#org"}));
    assert_issue(p, "value", "Patient.contained[0].text.div");
    let bundle = json!({"resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": patient()}, {"resource": org}]});
    assert_issue(bundle, "value", "Bundle.entry[1].resource.text.div");
}

// ------------------------------------------------------------------ contained resources

fn with_contained(resource: Value, contained: Value) -> Value {
    with(resource, "/contained", contained)
}

fn org(id: &str) -> Value {
    json!({"resourceType": "Organization", "id": id, "name": "Clinique"})
}

#[test]
fn contained_resources_have_no_contained_resources() {
    let mut inner = org("org");
    inner["contained"] = json!([org("deeper")]);
    inner["partOf"] = json!({"reference": "#deeper"});
    let p = with_contained(patient(), json!([inner]));
    let p = with(p, "/managingOrganization", json!({"reference": "#org"}));
    let d = assert_issue(p, "invariant", "Patient.contained[0].contained");
    assert!(d.contains("dom-2"), "{d}");
}

#[test]
fn contained_resources_have_no_version_or_security() {
    let mut inner = org("org");
    inner["meta"] = json!({"versionId": "1", "lastUpdated": "2024-05-06T10:20:30Z",
        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
        "profile": ["http://example.org/p"], "tag": [{"code": "x"}]});
    let p = with_contained(patient(), json!([inner]));
    let p = with(p, "/managingOrganization", json!({"reference": "#org"}));
    let found = issues(p);
    let at: Vec<(&str, &str)> = found
        .iter()
        .map(|i| (i.code, i.expression.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        at,
        [
            ("invariant", "Patient.contained[0].meta.versionId"),
            ("invariant", "Patient.contained[0].meta.lastUpdated"),
            ("invariant", "Patient.contained[0].meta.security"),
        ],
        "{found:#?}"
    );
    assert!(found[0].diagnostics.contains("dom-4"), "{found:#?}");
    assert!(found[1].diagnostics.contains("dom-4"), "{found:#?}");
    assert!(found[2].diagnostics.contains("dom-5"), "{found:#?}");
    // The container itself may have them all.
    assert_valid(with(
        patient(),
        "/meta/security",
        json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]),
    ));
    // A versionId carried only by an extension is still one.
    let mut inner = org("org");
    inner["meta"] = json!({"_versionId": ext()});
    let p = with_contained(patient(), json!([inner]));
    let p = with(p, "/managingOrganization", json!({"reference": "#org"}));
    assert_issue(p, "invariant", "Patient.contained[0].meta.versionId");
}

#[test]
fn contained_resources_are_referenced() {
    // Not referenced at all.
    let p = with_contained(patient(), json!([org("org")]));
    let d = assert_issue(p, "invariant", "Patient.contained[0]");
    assert!(d.contains("dom-3") && d.contains("'org'"), "{d}");
    // Referenced from the container, or from another contained resource.
    let p = with_contained(patient(), json!([org("org")]));
    assert_valid(with(
        p,
        "/managingOrganization",
        json!({"reference": "#org"}),
    ));
    let mut parent = org("parent");
    parent["partOf"] = json!({"reference": "#org"});
    let p = with_contained(patient(), json!([org("org"), parent]));
    let found = issues(with(
        p,
        "/managingOrganization",
        json!({"reference": "#parent"}),
    ));
    assert!(found.is_empty(), "{found:#?}");
    // Referencing the container instead ("#").
    let mut back = org("org");
    back["partOf"] = json!({"reference": "#"});
    assert_valid(with_contained(patient(), json!([back])));
    // A contained resource without id cannot be judged (FHIRPath: '#' + {} is empty).
    let mut anonymous = org("x");
    anonymous.as_object_mut().unwrap().shift_remove("id");
    assert_valid(with_contained(patient(), json!([anonymous])));
    // References in a canonical count (a contained ValueSet of a Questionnaire).
    let vs = json!({"resourceType": "ValueSet", "id": "vs", "status": "active"});
    let q = json!({"resourceType": "Questionnaire", "status": "draft", "contained": [vs],
        "item": [{"linkId": "1", "type": "choice", "answerValueSet": "#vs"}]});
    assert_valid(q.clone());
    let q = with(q, "/item/0/answerValueSet", json!("#other"));
    assert_issue(q, "invariant", "Questionnaire.contained[0]");
    // A "#org" that is not a reference (a plain string) does not count.
    let p = with_contained(patient(), json!([org("org")]));
    let p = with(p, "/name/0/text", json!("#org"));
    assert_issue(p, "invariant", "Patient.contained[0]");
    // Only the second of two is unreferenced.
    let p = with_contained(patient(), json!([org("a"), org("b")]));
    let p = with(p, "/managingOrganization", json!({"reference": "#a"}));
    assert_issue(p, "invariant", "Patient.contained[1]");
}

#[test]
fn contained_rules_apply_per_resource_in_a_bundle() {
    // A reference from another entry does not make a contained resource referenced.
    let with_org = with_contained(patient(), json!([org("org")]));
    let referencing = with(
        patient(),
        "/managingOrganization",
        json!({"reference": "#org"}),
    );
    let bundle = json!({"resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": referencing}, {"resource": with_org}]});
    assert_issue(bundle, "invariant", "Bundle.entry[1].resource.contained[0]");
    // Bundle.entry.resource is not "contained": its meta may carry a version.
    let bundle = json!({"resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": patient()}]});
    assert_valid(bundle);
}

#[test]
fn many_contained_resources_cost_linear_time() {
    let n = 20_000;
    let contained: Vec<Value> = (0..n)
        .map(|i| json!({"resourceType": "Basic", "id": format!("b{i}"), "code": {"text": "x"}}))
        .collect();
    let references: Vec<Value> = (0..n)
        .rev()
        .map(|i| json!({"url": "http://example.org/r", "valueReference": {"reference": format!("#b{i}")}}))
        .collect();
    let basic = json!({"resourceType": "Basic", "code": {"text": "x"},
        "contained": contained, "extension": references});
    let start = Instant::now();
    assert_valid(basic.clone());
    // Nothing referenced: one issue each, up to the cap.
    let unreferenced = without(basic, "/extension");
    let found = issues(unreferenced);
    assert_eq!(found.len(), 1001, "capped at 1,000 and one too-costly");
    assert_eq!(found[0].expression.as_deref(), Some("Basic.contained[0]"));
    // Quadratic would be 4e8 string comparisons here: many seconds in a debug build.
    assert!(start.elapsed().as_secs() < 10, "{:?}", start.elapsed());
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
    let p = with(p, "/managingOrganization", json!({"reference": "#org"}));
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

    let mut nested = json!({"resourceType": "Parameters"});
    for _ in 0..200 {
        nested =
            json!({"resourceType": "Parameters", "parameter": [{"name": "p", "resource": nested}]});
    }
    let found = issues(nested);
    assert_eq!(found.len(), 1, "{found:#?}");

    // Contained in contained is also dom-2, once per level the walk reaches.
    let mut contained = json!({"resourceType": "Basic", "code": {"text": "x"}});
    for _ in 0..200 {
        contained =
            json!({"resourceType": "Basic", "code": {"text": "x"}, "contained": [contained]});
    }
    let found = issues(contained);
    let deep: Vec<_> = found.iter().filter(|i| i.code == "invalid").collect();
    assert_eq!(deep.len(), 1, "{found:#?}");
    assert!(found
        .iter()
        .all(|i| i.code == "invalid" || i.diagnostics.contains("dom-2")));
    assert!(found.len() < 70, "{}", found.len());
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
    let rounds = 20_000;
    let start = Instant::now();
    for _ in 0..rounds {
        assert!(validate_resource(defs, std::hint::black_box(&obs)).is_empty());
    }
    let each = start.elapsed() / rounds;
    println!("validate_resource(Observation): {each:?} per call");
    // Generous bound: debug builds of this crate are unoptimised.
    assert!(each.as_micros() < 1_000, "{each:?} per Observation");

    // With a narrative (5.4 kB, a table): the XHTML check is part of the cost.
    if let Some(dir) = std::env::var_os("CARNET_HL7_EXAMPLES") {
        let path = std::path::Path::new(&dir).join("Observation-blood-pressure.json");
        let text = std::fs::read_to_string(path).unwrap();
        let bp: Value = serde_json::from_str(&text).unwrap();
        assert!(validate_resource(defs, &bp).is_empty());
        let start = Instant::now();
        for _ in 0..rounds {
            assert!(validate_resource(defs, std::hint::black_box(&bp)).is_empty());
        }
        let each = start.elapsed() / rounds;
        println!("validate_resource(Observation-blood-pressure.json): {each:?} per call");
    }
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
        // txt-2: `<div xmlns="...">\n    </div>` (and a `<pre>` holding only whitespace).
        &[
            "ActivityDefinition-blood-tubes-supply.json",
            "ActivityDefinition-heart-valve-replacement.json",
            "EventDefinition-example.json",
            "Questionnaire-zika-virus-exposure-assessment.json",
        ],
        "Narrative without content (txt-2)",
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
    let Some(files) = crate::fhir::hl7_examples::files() else {
        return;
    };
    let defs = r4();

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
