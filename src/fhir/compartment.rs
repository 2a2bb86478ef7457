//! Which patients' compartments a resource belongs to, from the R4 CompartmentDefinition.

use serde_json::Value;

use super::definitions::Definitions;

/// The logical ids of the patients whose compartment holds `resource`, main patient first,
/// without duplicates. A Patient is in its own compartment. `base_url` lets absolute
/// references to this server count; references to other servers do not.
pub fn patient_compartments(defs: &Definitions, resource: &Value, base_url: &str) -> Vec<String> {
    let mut patients = Vec::new();
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("");
    if resource_type == "Patient" {
        if let Some(id) = resource.get("id").and_then(Value::as_str) {
            patients.push(id.to_string());
        }
    }
    for path in defs.patient_compartment_paths(resource_type) {
        let mut found = Vec::new();
        collect(resource, &path.split('.').collect::<Vec<_>>(), &mut found);
        for reference in found {
            if let Some(id) = patient_id(reference, base_url) {
                if !patients.iter().any(|p| p == id) {
                    patients.push(id.to_string());
                }
            }
        }
    }
    patients
}

/// Collects the `reference` strings of the Reference elements at `path` (arrays flattened).
fn collect<'a>(value: &'a Value, path: &[&str], found: &mut Vec<&'a str>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| collect(item, path, found)),
        Value::Object(object) => match path.split_first() {
            Some((head, rest)) => {
                if let Some(child) = object.get(*head) {
                    collect(child, rest, found);
                }
            }
            None => {
                if let Some(Value::String(reference)) = object.get("reference") {
                    found.push(reference);
                }
            }
        },
        _ => {}
    }
}

/// `Patient/123`, `Patient/123/_history/2` or `{base}/Patient/123` -> `123`.
pub fn patient_id<'a>(reference: &'a str, base_url: &str) -> Option<&'a str> {
    let local = match reference.strip_prefix(base_url) {
        Some(rest) => rest.strip_prefix('/')?,
        None if reference.contains("://") => return None,
        None => reference,
    };
    let id = local.strip_prefix("Patient/")?.split('/').next()?;
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_patients_only_on_this_server() {
        let base = "http://h/fhir";
        assert_eq!(patient_id("Patient/1", base), Some("1"));
        assert_eq!(patient_id("Patient/1/_history/3", base), Some("1"));
        assert_eq!(patient_id("http://h/fhir/Patient/1", base), Some("1"));
        assert_eq!(patient_id("http://other/fhir/Patient/1", base), None);
        assert_eq!(patient_id("Practitioner/1", base), None);
        assert_eq!(patient_id("#p1", base), None);
        assert_eq!(patient_id("Patient/", base), None);
    }
}
