//! SearchParameter resources written at run time: what they define, and whether this server
//! can index it. A definition it cannot honour is refused when written (400 naming the
//! problem) rather than stored and silently never matched.

use serde_json::Value;

use super::fhirpath;
use super::params::{ParamJson, ParamType, SearchParams};
use crate::fhir::outcome::Issue;
use crate::fhir::served::is_served;

/// The parameters a SearchParameter resource defines, one per base. Empty unless its status is
/// `active`: drafts and retired definitions are stored but not used. `current` is the registry
/// in force, to refuse a code that another definition of the same base already uses.
pub fn definitions(resource: &Value, current: &SearchParams) -> Result<Vec<ParamJson>, Vec<Issue>> {
    if resource["status"].as_str() != Some("active") {
        return Ok(Vec::new());
    }
    let mut issues = Vec::new();
    let text = |key: &str| resource[key].as_str().unwrap_or_default().to_string();
    let (url, code) = (text("url"), text("code"));
    if code.starts_with('_')
        || code.is_empty()
        || !code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        issues.push(
            Issue::error(
                "invalid",
                format!(
                    "the code {code:?} cannot be a search parameter name here: use letters, \
                     digits, '-' or '_', not starting with '_'"
                ),
            )
            .at("code"),
        );
    }
    let kind = match serde_json::from_value::<ParamType>(resource["type"].clone()) {
        Ok(ParamType::Composite | ParamType::Special) | Err(_) => {
            issues.push(
                Issue::error(
                    "not-supported",
                    format!(
                        "search parameters of type {} cannot be added at run time; use number, \
                         date, string, token, reference, quantity or uri",
                        resource["type"]
                    ),
                )
                .at("type"),
            );
            None
        }
        Ok(kind) => Some(kind),
    };
    let expression = resource["expression"].as_str();
    match expression.map(fhirpath::parse) {
        None => issues.push(
            Issue::error(
                "required",
                "an active SearchParameter needs an expression for this server to index it",
            )
            .at("expression"),
        ),
        Some(Err(e)) => issues.push(
            Issue::error(
                "not-supported",
                format!(
                    "the expression is outside the FHIRPath this server evaluates: {} (at \
                     character {})",
                    e.message, e.at
                ),
            )
            .at("expression"),
        ),
        Some(Ok(_)) => {}
    }
    let bases: Vec<&str> = resource["base"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (i, base) in bases.iter().enumerate() {
        if !is_served(base) {
            issues.push(
                Issue::error(
                    "not-supported",
                    format!("{base} is not a resource type this server stores"),
                )
                .at(format!("base[{i}]")),
            );
        } else if let Some(existing) = current
            .get(base, &code)
            .filter(|p| !p.custom || p.url != url)
        {
            issues.push(
                Issue::error(
                    "duplicate",
                    format!(
                        "{base} already has a search parameter {code:?} ({}); choose another code",
                        existing.url
                    ),
                )
                .at("code"),
            );
        }
    }
    let strings = |key: &str| -> Vec<String> {
        resource[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    match kind {
        Some(kind) if issues.is_empty() => Ok(bases
            .iter()
            .map(|base| ParamJson {
                base: base.to_string(),
                code: code.clone(),
                kind,
                url: url.clone(),
                expression: expression.map(str::to_string),
                target: strings("target"),
                component: Vec::new(),
                modifier: strings("modifier"),
                comparator: strings("comparator"),
                multiple_or: resource["multipleOr"].as_bool(),
                multiple_and: resource["multipleAnd"].as_bool(),
            })
            .collect()),
        _ => Err(issues),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fhir::search::r4;

    fn birth_place() -> Value {
        json!({
            "resourceType": "SearchParameter",
            "url": "http://example.org/SearchParameter/patient-birth-place",
            "name": "BirthPlace", "status": "active", "description": "x",
            "code": "birth-place", "base": ["Patient"], "type": "string",
            "expression": "Patient.extension.where(url = 'http://hl7.org/fhir/StructureDefinition/patient-birthPlace').value.city"
        })
    }

    fn problems(resource: &Value) -> Vec<String> {
        definitions(resource, r4())
            .unwrap_err()
            .iter()
            .map(|i| {
                format!(
                    "{}: {}",
                    i.expression.as_deref().unwrap_or(""),
                    i.diagnostics
                )
            })
            .collect()
    }

    #[test]
    fn an_active_definition_gives_one_parameter_per_base() {
        let mut sp = birth_place();
        let params = definitions(&sp, r4()).unwrap();
        assert_eq!(params.len(), 1);
        assert_eq!(
            (params[0].base.as_str(), params[0].code.as_str()),
            ("Patient", "birth-place")
        );
        assert_eq!(params[0].kind, ParamType::String);
        sp["status"] = json!("draft");
        assert!(definitions(&sp, r4()).unwrap().is_empty());
    }

    #[test]
    fn what_cannot_be_indexed_is_refused_by_name() {
        let mut sp = birth_place();
        sp["code"] = json!("name");
        assert!(
            problems(&sp)[0].starts_with("code: Patient already has a search parameter \"name\"")
        );
        let mut sp = birth_place();
        sp["base"] = json!(["Patient", "Parameters"]);
        assert!(problems(&sp)[0].starts_with("base[1]: Parameters is not a resource type"));
        let mut sp = birth_place();
        sp["type"] = json!("composite");
        assert!(problems(&sp)[0].starts_with("type: search parameters of type"));
        let mut sp = birth_place();
        sp["expression"] = json!("Patient.name.aggregate($this)");
        assert!(problems(&sp)[0].starts_with("expression: the expression is outside"));
        let mut sp = birth_place();
        sp.as_object_mut().unwrap().remove("expression");
        assert!(problems(&sp)[0].starts_with("expression: an active SearchParameter needs"));
        let mut sp = birth_place();
        sp["code"] = json!("birth.place");
        assert!(problems(&sp)[0].starts_with("code: the code \"birth.place\""));
        // A built-in parameter cannot be redefined, even under its own url.
        let mut sp = birth_place();
        sp["code"] = json!("code");
        sp["base"] = json!(["Observation"]);
        sp["url"] = json!("http://hl7.org/fhir/SearchParameter/clinical-code");
        assert!(problems(&sp)[0].starts_with("code: Observation already has"));
        let mut sp = birth_place();
        sp["code"] = json!("_birth");
        assert!(problems(&sp)[0].starts_with("code: the code \"_birth\""));
    }

    #[test]
    fn a_custom_parameter_is_extracted() {
        let params = SearchParams::r4_with(definitions(&birth_place(), r4()).unwrap());
        let patient = json!({"resourceType": "Patient", "extension": [{
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
            "valueAddress": {"city": "Besançon"}}]});
        let entries = crate::fhir::search::extract(&params, &patient).unwrap();
        let values: Vec<_> = entries.iter().filter(|e| e.code == "birth-place").collect();
        assert_eq!(values.len(), 1, "{entries:?}");
    }
}
