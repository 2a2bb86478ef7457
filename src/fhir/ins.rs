//! Patients referred to by their INS (the French national health identifier) rather than by
//! id: the French feeds send `"subject": {"identifier": {"system": "urn:oid:1.2.250.1.213.1.4.8",
//! "value": "..."}}`. This module finds such references where a resource names its patient
//! (the R4 patient-compartment paths) and adds the literal reference once the Patient holding
//! that identifier is known; the lookup itself is the caller's (`interaction::by_identifier`).

use serde_json::Value;

use super::definitions::Definitions;

/// The INS systems (`urn:oid:1.2.250.1.213.1.4.x`): INS-NIR, INS-NIA, and the test and demo
/// INS-NIR ranges.
pub const INS_SYSTEMS: [&str; 4] = [
    "urn:oid:1.2.250.1.213.1.4.8",
    "urn:oid:1.2.250.1.213.1.4.9",
    "urn:oid:1.2.250.1.213.1.4.10",
    "urn:oid:1.2.250.1.213.1.4.11",
];

/// A patient reference that carries only an INS identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsReference {
    /// JSON pointer of the Reference object (`/subject`, `/performer/1`).
    pub pointer: String,
    /// Where it is, as OperationOutcome expressions name elements (`Observation.subject`).
    pub expression: String,
    pub system: String,
    pub value: String,
}

impl InsReference {
    /// `system|value`, as a token search and the messages write it.
    pub fn token(&self) -> String {
        format!("{}|{}", self.system, self.value)
    }
}

/// The references of `resource` that name its patient by INS only: at a patient-compartment
/// path of its type, a Reference without `reference`, whose `type` is absent or `Patient`,
/// and whose `identifier` has an INS system and a value.
pub fn ins_references(defs: &Definitions, resource: &Value) -> Vec<InsReference> {
    let res_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut out = Vec::new();
    for path in defs.patient_compartment_paths(res_type) {
        let steps: Vec<&str> = path.split('.').collect();
        collect(
            resource,
            &steps,
            String::new(),
            res_type.to_string(),
            &mut out,
        );
    }
    out.sort_by(|a, b| a.pointer.cmp(&b.pointer));
    out.dedup_by(|a, b| a.pointer == b.pointer);
    out
}

fn collect(
    value: &Value,
    steps: &[&str],
    pointer: String,
    expression: String,
    out: &mut Vec<InsReference>,
) {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect(
                    item,
                    steps,
                    format!("{pointer}/{i}"),
                    format!("{expression}[{i}]"),
                    out,
                );
            }
        }
        Value::Object(object) => match steps.split_first() {
            Some((head, rest)) => {
                if let Some(child) = object.get(*head) {
                    collect(
                        child,
                        rest,
                        format!("{pointer}/{head}"),
                        format!("{expression}.{head}"),
                        out,
                    );
                }
            }
            None => {
                if object.contains_key("reference") {
                    return;
                }
                if let Some(Value::String(t)) = object.get("type") {
                    if t != "Patient" && t != "http://hl7.org/fhir/StructureDefinition/Patient" {
                        return;
                    }
                }
                let Some(identifier) = object.get("identifier") else {
                    return;
                };
                let system = identifier.get("system").and_then(Value::as_str);
                let id_value = identifier.get("value").and_then(Value::as_str);
                if let (Some(system), Some(id_value)) = (system, id_value) {
                    if INS_SYSTEMS.contains(&system) {
                        out.push(InsReference {
                            pointer,
                            expression,
                            system: system.to_string(),
                            value: id_value.to_string(),
                        });
                    }
                }
            }
        },
        _ => {}
    }
}

/// Adds `"reference": target` (`Patient/id`) to the Reference at `at.pointer`, keeping its
/// identifier; `reference` comes first, as FHIR writes it.
pub fn attach(resource: &mut Value, at: &InsReference, target: &str) {
    let Some(Value::Object(reference)) = resource.pointer_mut(&at.pointer) else {
        return;
    };
    let mut with = serde_json::Map::with_capacity(reference.len() + 1);
    with.insert("reference".into(), Value::String(target.to_string()));
    for (k, v) in std::mem::take(reference) {
        with.insert(k, v);
    }
    *reference = with;
}

/// Whether the Patient `resource` holds the identifier `system|value`.
pub fn holds_identifier(resource: &Value, system: &str, value: &str) -> bool {
    resource["resourceType"] == "Patient"
        && resource["identifier"].as_array().is_some_and(|ids| {
            ids.iter()
                .any(|i| i["system"] == system && i["value"] == value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_ins_only_patient_references_at_compartment_paths() {
        let defs = crate::fhir::definitions::r4();
        let obs = json!({
            "resourceType": "Observation",
            "subject": {"identifier": {"system": INS_SYSTEMS[0], "value": "1"}},
            "performer": [
                {"reference": "Practitioner/x"},
                {"type": "Patient", "identifier": {"system": INS_SYSTEMS[1], "value": "2"}},
                {"type": "Practitioner", "identifier": {"system": INS_SYSTEMS[0], "value": "3"}},
                {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "4"}}
            ],
            // Not a compartment path.
            "focus": [{"identifier": {"system": INS_SYSTEMS[0], "value": "5"}}]
        });
        let found = ins_references(defs, &obs);
        let summary: Vec<(&str, &str, &str)> = found
            .iter()
            .map(|r| (r.pointer.as_str(), r.expression.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("/performer/1", "Observation.performer[1]", "2"),
                ("/subject", "Observation.subject", "1"),
            ]
        );
        // Already literal: nothing to do.
        let literal = json!({"resourceType": "Observation",
            "subject": {"reference": "Patient/p", "identifier": {"system": INS_SYSTEMS[0], "value": "1"}}});
        assert!(ins_references(defs, &literal).is_empty());
    }

    #[test]
    fn attach_keeps_the_identifier() {
        let defs = crate::fhir::definitions::r4();
        let mut obs = json!({"resourceType": "Observation",
            "subject": {"identifier": {"system": INS_SYSTEMS[0], "value": "1"}, "display": "A"}});
        let found = ins_references(defs, &obs);
        attach(&mut obs, &found[0], "Patient/p1");
        assert_eq!(
            obs["subject"].to_string(),
            json!({"reference": "Patient/p1", "identifier": {"system": INS_SYSTEMS[0], "value": "1"}, "display": "A"}).to_string()
        );
        assert!(holds_identifier(
            &json!({"resourceType": "Patient", "identifier": [{"system": INS_SYSTEMS[0], "value": "1"}]}),
            INS_SYSTEMS[0],
            "1"
        ));
    }
}
