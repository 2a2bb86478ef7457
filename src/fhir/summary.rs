//! `_summary` and `_elements`: the subsets of a resource a read or a search may return
//! (<https://hl7.org/fhir/R4/search.html#summary>, `#elements`). Pure: no HTTP, no SQL.
//!
//! - `_summary=true`: `resourceType`, `id`, `meta`, and the elements marked `isSummary` in the
//!   R4 definitions. Inside a kept element the same rule applies to its children: the inline
//!   children of a backbone element, the datatype's own flags for a datatype (so
//!   `Attachment.data`, and the `id`/`extension` of datatypes, go). A kept `Extension` is kept
//!   whole (its `url` and `value[x]` are not flagged, yet are its meaning), and a resource inside
//!   a kept element (`Bundle.entry.resource`) is summarised and tagged in turn. Objects left empty
//!   by the pruning are dropped, and arrays left empty with them. Mandatory elements that are not
//!   flagged summary are not added: the specification asks for the flagged elements only.
//! - `_summary=text`: `resourceType`, `id`, `meta`, `text` and the top-level mandatory
//!   (`min >= 1`) elements, whole.
//! - `_summary=data`: everything but `text`.
//! - `_summary=false`, and `_summary=count` (which returns no resources at all): unchanged.
//! - `_elements=a,b`: `resourceType`, `id`, `meta`, the listed top-level elements (`value`
//!   names a choice: `valueQuantity`...; the concrete key is accepted too) and, as the
//!   specification says servers should, the top-level mandatory elements. Names that are not
//!   top-level elements of the type (`name.family`, typos) select nothing.
//!
//! Primitive extensions (`_birthDate`) follow their element. Every subset but `false`/`count`
//! (and an empty `_elements`) is tagged `SUBSETTED` in `meta.tag`, once. The order of the kept
//! keys is the stored order. A resource of a type the definitions do not know keeps only
//! `resourceType`, `id`, `meta` (and `text` under `_summary=text`).

use serde_json::{json, Map, Value};

use super::definitions::{Definitions, ElementType, NodeId, TypeDef, ROOT_NODE};
use super::search::query::Summary;

/// The code system of the `SUBSETTED` tag.
pub const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";
pub const SUBSETTED_CODE: &str = "SUBSETTED";

/// Shapes `resource` (a JSON object with `resourceType`) for `_summary=mode`.
pub fn summarize(defs: &Definitions, resource: &mut Value, mode: Summary) {
    let Value::Object(object) = resource else {
        return;
    };
    match mode {
        Summary::False | Summary::Count => return,
        Summary::Data => object.retain(|key, _| name_of(key) != "text"),
        Summary::Text => {
            let ty = type_of(defs, object);
            object.retain(|key, _| {
                let name = name_of(key);
                always_kept(name) || name == "text" || ty.is_some_and(|ty| mandatory(ty, name))
            });
        }
        Summary::True => summary_resource(defs, object),
    }
    mark_subsetted(resource);
}

/// Shapes `resource` for `_elements=names`; an empty list leaves it unchanged.
pub fn keep_elements(defs: &Definitions, resource: &mut Value, names: &[String]) {
    let Value::Object(object) = resource else {
        return;
    };
    if names.is_empty() {
        return;
    }
    let ty = type_of(defs, object);
    object.retain(|key, _| {
        let name = name_of(key);
        if always_kept(name) || names.iter().any(|n| n == name) {
            return true;
        }
        let Some(ty) = ty else {
            return false;
        };
        match ty.child(ROOT_NODE, name) {
            Some(child) => {
                let element = ty.element(child.element);
                element.min > 0 || names.iter().any(|n| **n == *element.name)
            }
            None => false,
        }
    });
    mark_subsetted(resource);
}

/// Adds the `SUBSETTED` tag to `meta.tag` unless it is there, creating `meta` (after
/// `resourceType` and `id`) and `tag` as needed.
pub fn mark_subsetted(resource: &mut Value) {
    if let Value::Object(object) = resource {
        mark_subsetted_object(object);
    }
}

fn mark_subsetted_object(object: &mut Map<String, Value>) {
    if !matches!(object.get("meta"), Some(Value::Object(_))) {
        let index = object
            .keys()
            .take_while(|k| matches!(k.as_str(), "resourceType" | "id" | "_id"))
            .count();
        object.shift_insert(index, "meta".into(), Value::Object(Map::new()));
    }
    let Some(Value::Object(meta)) = object.get_mut("meta") else {
        return;
    };
    let tags = meta
        .entry("tag")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !tags.is_array() {
        *tags = Value::Array(Vec::new());
    }
    let Value::Array(tags) = tags else {
        return;
    };
    let present = tags.iter().any(|t| {
        t.get("system").and_then(Value::as_str) == Some(SUBSETTED_SYSTEM)
            && t.get("code").and_then(Value::as_str) == Some(SUBSETTED_CODE)
    });
    if !present {
        tags.push(json!({
            "system": SUBSETTED_SYSTEM,
            "code": SUBSETTED_CODE,
            "display": "subsetted",
        }));
    }
}

/// The element name a JSON key stands for: `_birthDate` -> `birthDate`.
fn name_of(key: &str) -> &str {
    key.strip_prefix('_').unwrap_or(key)
}

fn always_kept(name: &str) -> bool {
    matches!(name, "resourceType" | "id" | "meta")
}

fn type_of<'d>(defs: &'d Definitions, object: &Map<String, Value>) -> Option<&'d TypeDef> {
    let name = object.get("resourceType")?.as_str()?;
    defs.resource_type(name).map(|id| defs.type_def(id))
}

/// Whether the top-level key `name` (choice keys included) is a mandatory element.
fn mandatory(ty: &TypeDef, name: &str) -> bool {
    ty.child(ROOT_NODE, name)
        .is_some_and(|child| ty.element(child.element).min > 0)
}

/// `_summary=true` on one resource object, without the tag.
fn summary_resource(defs: &Definitions, object: &mut Map<String, Value>) {
    match type_of(defs, object) {
        Some(ty) => summary_node(defs, ty, ROOT_NODE, object, true),
        None => object.retain(|key, _| always_kept(name_of(key))),
    }
}

/// Keeps the summary children of an object at `node` of `ty`, recursing into what it keeps.
fn summary_node(
    defs: &Definitions,
    ty: &TypeDef,
    node: NodeId,
    object: &mut Map<String, Value>,
    resource_root: bool,
) {
    object.retain(|key, value| {
        let name = name_of(key);
        if resource_root && always_kept(name) {
            return true;
        }
        let Some(child) = ty.child(node, name) else {
            return false;
        };
        let element = ty.element(child.element);
        if !element.summary {
            return false;
        }
        if name.len() != key.len() {
            return true; // `_key`: the primitive's id and extensions go with it
        }
        match element.types.get(usize::from(child.type_index)) {
            Some(ElementType::Inline) => match element.node {
                Some(inner) => {
                    prune_objects(value, &mut |o| summary_node(defs, ty, inner, o, false))
                }
                None => true,
            },
            Some(&ElementType::Complex(id)) if id == defs.well_known().extension => true,
            Some(&ElementType::Complex(id)) => {
                let datatype = defs.type_def(id);
                prune_objects(value, &mut |o| {
                    summary_node(defs, datatype, ROOT_NODE, o, false)
                })
            }
            Some(ElementType::Resource) => prune_objects(value, &mut |o| {
                summary_resource(defs, o);
                mark_subsetted_object(o);
            }),
            Some(ElementType::Primitive(_)) | None => true,
        }
    });
}

/// Applies `prune` to the object, or to each object of the array, in `value`; drops the
/// objects left empty. Returns whether anything is left.
fn prune_objects(value: &mut Value, prune: &mut dyn FnMut(&mut Map<String, Value>)) -> bool {
    match value {
        Value::Object(object) => {
            prune(object);
            !object.is_empty()
        }
        Value::Array(items) => {
            items.retain_mut(|item| match item {
                Value::Object(object) => {
                    prune(object);
                    !object.is_empty()
                }
                _ => true,
            });
            !items.is_empty()
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::definitions::r4;

    fn shaped(mode: Summary, mut resource: Value) -> Value {
        summarize(r4(), &mut resource, mode);
        resource
    }

    fn elements(names: &[&str], mut resource: Value) -> Value {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        keep_elements(r4(), &mut resource, &names);
        resource
    }

    fn subsetted() -> Value {
        json!({"system": SUBSETTED_SYSTEM, "code": "SUBSETTED", "display": "subsetted"})
    }

    /// Compares with key order, which the server preserves.
    fn assert_json(actual: &Value, expected: &Value) {
        assert_eq!(
            serde_json::to_string_pretty(actual).unwrap(),
            serde_json::to_string_pretty(expected).unwrap()
        );
    }

    fn patient() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "p1",
            "meta": {"versionId": "2", "tag": [{"system": "urn:t", "code": "x"}]},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">P</div>"},
            "extension": [{"url": "urn:e", "valueString": "e"}],
            "identifier": [{"system": "urn:mrn", "value": "42"}],
            "active": true,
            "name": [{
                "id": "n1",
                "extension": [{"url": "urn:n", "valueString": "n"}],
                "family": "Chalmers",
                "given": ["Peter", "James"],
                "_given": [null, {"extension": [{"url": "urn:g", "valueBoolean": true}]}]
            }],
            "gender": "male",
            "birthDate": "1974-12-25",
            "_birthDate": {"extension": [{"url": "urn:time", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
            "deceasedBoolean": false,
            "maritalStatus": {"text": "married"},
            "multipleBirthInteger": 2,
            "photo": [{"contentType": "image/png", "data": "AAAA"}],
            "contact": [{"name": {"family": "du Marché"}}],
            "communication": [{"language": {"text": "fr"}, "preferred": true}],
            "managingOrganization": {"reference": "Organization/1", "display": "ACME"},
            "link": [{
                "id": "l1",
                "extension": [{"url": "urn:l", "valueString": "l"}],
                "modifierExtension": [{"url": "urn:m", "valueString": "m"}],
                "other": {"reference": "Patient/p2"},
                "type": "seealso"
            }]
        })
    }

    #[test]
    fn summary_true_keeps_the_flagged_elements_recursively() {
        let expected = json!({
            "resourceType": "Patient",
            "id": "p1",
            "meta": {"versionId": "2", "tag": [{"system": "urn:t", "code": "x"}, subsetted()]},
            "identifier": [{"system": "urn:mrn", "value": "42"}],
            "active": true,
            // HumanName's own flags: its id and extension are not summary.
            "name": [{
                "family": "Chalmers",
                "given": ["Peter", "James"],
                "_given": [null, {"extension": [{"url": "urn:g", "valueBoolean": true}]}]
            }],
            "gender": "male",
            "birthDate": "1974-12-25",
            "_birthDate": {"extension": [{"url": "urn:time", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
            "deceasedBoolean": false,
            "managingOrganization": {"reference": "Organization/1", "display": "ACME"},
            // Patient.link is summary, so are its other, type and modifierExtension (kept whole).
            "link": [{
                "modifierExtension": [{"url": "urn:m", "valueString": "m"}],
                "other": {"reference": "Patient/p2"},
                "type": "seealso"
            }]
        });
        assert_json(&shaped(Summary::True, patient()), &expected);
    }

    #[test]
    fn summary_true_prunes_datatypes_and_drops_what_is_left_empty() {
        let doc = json!({
            "resourceType": "DocumentReference",
            "status": "current",
            "content": [
                {"attachment": {"contentType": "text/plain", "data": "SGk=", "extension": []}},
                {"attachment": {"data": "SGk="}, "format": {"code": "urn:f"}},
                {"attachment": {"data": "SGk="}}
            ]
        });
        let expected = json!({
            "resourceType": "DocumentReference",
            "meta": {"tag": [subsetted()]},
            "status": "current",
            "content": [
                {"attachment": {"contentType": "text/plain"}},
                {"format": {"code": "urn:f"}}
            ]
        });
        assert_json(&shaped(Summary::True, doc), &expected);
    }

    #[test]
    fn summary_true_on_observation_components_and_choices() {
        let obs = json!({
            "resourceType": "Observation",
            "id": "bp",
            "status": "final",
            "category": [{"text": "vital-signs"}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2024-01-01",
            "interpretation": [{"text": "high"}],
            "referenceRange": [{"low": {"value": 1}}],
            "component": [{
                "code": {"text": "systolic"},
                "valueQuantity": {"value": 120, "unit": "mmHg", "extension": [{"url": "urn:q", "valueString": "q"}]},
                "interpretation": [{"text": "high"}]
            }]
        });
        let expected = json!({
            "resourceType": "Observation",
            "id": "bp",
            "meta": {"tag": [subsetted()]},
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2024-01-01",
            "component": [{
                "code": {"text": "systolic"},
                "valueQuantity": {"value": 120, "unit": "mmHg"}
            }]
        });
        assert_json(&shaped(Summary::True, obs), &expected);
    }

    #[test]
    fn summary_true_recurses_into_contained_resources_and_content_references() {
        let bundle = json!({
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{
                "fullUrl": "urn:uuid:1",
                "link": [{"id": "x", "relation": "self", "url": "http://a/1"}],
                "resource": {"resourceType": "Patient", "id": "p", "gender": "other", "photo": [{"url": "u"}]}
            }, {
                "resource": {"resourceType": "Nonesuch", "id": "n", "foo": 1}
            }]
        });
        let expected = json!({
            "resourceType": "Bundle",
            "meta": {"tag": [subsetted()]},
            "type": "collection",
            "entry": [{
                "fullUrl": "urn:uuid:1",
                "link": [{"relation": "self", "url": "http://a/1"}],
                "resource": {"resourceType": "Patient", "id": "p", "meta": {"tag": [subsetted()]}, "gender": "other"}
            }, {
                "resource": {"resourceType": "Nonesuch", "id": "n", "meta": {"tag": [subsetted()]}}
            }]
        });
        assert_json(&shaped(Summary::True, bundle), &expected);
    }

    #[test]
    fn summary_text_keeps_text_and_top_level_mandatory_elements() {
        let obs = json!({
            "resourceType": "Observation",
            "id": "o",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">O</div>"},
            "status": "final",
            "_status": {"extension": [{"url": "urn:s", "valueString": "s"}]},
            "code": {"text": "weight", "extension": [{"url": "urn:c", "valueString": "c"}]},
            "subject": {"reference": "Patient/p1"},
            "valueQuantity": {"value": 70}
        });
        let expected = json!({
            "resourceType": "Observation",
            "id": "o",
            "meta": {"tag": [subsetted()]},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">O</div>"},
            "status": "final",
            "_status": {"extension": [{"url": "urn:s", "valueString": "s"}]},
            "code": {"text": "weight", "extension": [{"url": "urn:c", "valueString": "c"}]}
        });
        assert_json(&shaped(Summary::Text, obs), &expected);

        // Nothing of Patient is mandatory at the top level.
        let expected = json!({
            "resourceType": "Patient",
            "id": "p1",
            "meta": {"versionId": "2", "tag": [{"system": "urn:t", "code": "x"}, subsetted()]},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">P</div>"}
        });
        assert_json(&shaped(Summary::Text, patient()), &expected);
    }

    #[test]
    fn summary_data_drops_only_text() {
        let mut expected = patient();
        let object = expected.as_object_mut().unwrap();
        object.shift_remove("text");
        object["meta"]["tag"]
            .as_array_mut()
            .unwrap()
            .push(subsetted());
        assert_json(&shaped(Summary::Data, patient()), &expected);
    }

    #[test]
    fn summary_false_and_count_leave_the_resource_alone() {
        assert_json(&shaped(Summary::False, patient()), &patient());
        assert_json(&shaped(Summary::Count, patient()), &patient());
    }

    #[test]
    fn the_tag_is_added_once_and_meta_is_created_in_place() {
        let mut r = json!({"resourceType": "Basic", "id": "b", "code": {"text": "c"}});
        summarize(r4(), &mut r, Summary::Data);
        summarize(r4(), &mut r, Summary::True);
        let names: Vec<String> = vec!["code".into()];
        keep_elements(r4(), &mut r, &names);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            format!(
                r#"{{"resourceType":"Basic","id":"b","meta":{{"tag":[{}]}},"code":{{"text":"c"}}}}"#,
                serde_json::to_string(&subsetted()).unwrap()
            )
        );

        let mut r = json!({"resourceType": "Basic", "code": {}, "meta": {"versionId": "1"}});
        mark_subsetted(&mut r);
        assert_json(
            &r,
            &json!({"resourceType": "Basic", "code": {}, "meta": {"versionId": "1", "tag": [subsetted()]}}),
        );
    }

    #[test]
    fn elements_keeps_the_listed_and_mandatory_top_level_elements() {
        let obs = json!({
            "resourceType": "Observation",
            "id": "o",
            "meta": {"versionId": "1"},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">O</div>"},
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2024-01-01",
            "_effectiveDateTime": {"id": "e"},
            "valueQuantity": {"value": 70, "unit": "kg"},
            "note": [{"text": "n"}]
        });
        let expected = json!({
            "resourceType": "Observation",
            "id": "o",
            "meta": {"versionId": "1", "tag": [subsetted()]},
            "status": "final",
            "code": {"text": "weight"},
            "effectiveDateTime": "2024-01-01",
            "_effectiveDateTime": {"id": "e"},
            "valueQuantity": {"value": 70, "unit": "kg"}
        });
        // `value` names the choice; the concrete key works too; others select nothing.
        assert_json(
            &elements(
                &["value", "effectiveDateTime", "note.text", "bogus"],
                obs.clone(),
            ),
            &expected,
        );

        let expected = json!({
            "resourceType": "Patient",
            "id": "p1",
            "meta": {"versionId": "2", "tag": [{"system": "urn:t", "code": "x"}, subsetted()]},
            "birthDate": "1974-12-25",
            "_birthDate": {"extension": [{"url": "urn:time", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
            "deceasedBoolean": false
        });
        assert_json(&elements(&["deceased", "birthDate"], patient()), &expected);

        // Not asked: unchanged, untagged.
        assert_json(&elements(&[], obs.clone()), &obs);
    }

    /// Over every official example (when `CARNET_HL7_EXAMPLES` is set): `_summary=text`, `data` and
    /// `_elements` keep the top-level mandatory elements whole, so what was valid stays valid;
    /// `_summary=true` is idempotent and tagged. The summary subset may leave out mandatory
    /// elements (`Appointment.participant` is not summary), so it is only counted.
    #[test]
    fn hl7_examples_stay_valid() {
        use crate::fhir::validate::validate_resource;
        let Some(files) = crate::fhir::hl7_examples::files() else {
            return;
        };
        let defs = r4();
        let (mut checked, mut invalid_true) = (0, 0);
        for path in &files {
            let Ok(resource) =
                serde_json::from_str::<Value>(&std::fs::read_to_string(path).unwrap())
            else {
                continue;
            };
            let known = resource
                .get("resourceType")
                .and_then(Value::as_str)
                .is_some_and(|t| defs.is_resource_type(t));
            if !known || !validate_resource(defs, &resource).is_empty() {
                continue;
            }
            checked += 1;
            let name = path.file_name().unwrap().to_string_lossy();
            for mode in [Summary::Text, Summary::Data] {
                let mut shaped = resource.clone();
                summarize(defs, &mut shaped, mode);
                let issues = validate_resource(defs, &shaped);
                assert!(issues.is_empty(), "{name} {mode:?}: {issues:?}");
            }
            let mut shaped = resource.clone();
            keep_elements(defs, &mut shaped, &["identifier".to_string()]);
            let issues = validate_resource(defs, &shaped);
            assert!(issues.is_empty(), "{name} _elements: {issues:?}");

            let mut once = resource.clone();
            summarize(defs, &mut once, Summary::True);
            let mut twice = once.clone();
            summarize(defs, &mut twice, Summary::True);
            assert_eq!(once, twice, "{name}");
            assert!(once["meta"]["tag"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["code"] == SUBSETTED_CODE));
            if !validate_resource(defs, &once).is_empty() {
                invalid_true += 1;
            }
        }
        println!(
            "{checked} valid examples shaped; _summary=true leaves {invalid_true} without a \
             mandatory element (e.g. Appointment.participant)"
        );
    }
}
