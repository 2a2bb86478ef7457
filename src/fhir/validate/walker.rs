//! The walk over a resource's JSON, in step with its definition.
//!
//! One [`Walker`] per validation holds the FHIRPath of the current value in a single `String`
//! that grows and shrinks with the walk: paths are only copied into issues, so a valid
//! resource costs that buffer plus, per object holding a choice element, a short list of the
//! choices met.
//!
//! Contained resources get the DomainResource invariants on top (dom-2, dom-3, dom-4, dom-5):
//! the walk notes the local references it meets (`#id` in a `reference` or in a canonical,
//! uri or url) and, per contained resource, its id, so that each container can tell, once
//! walked, which of its contained resources nothing points to.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::primitives::{self, JsonKind};
use super::{bindings, MAX_DEPTH};
use crate::fhir::definitions::{
    Binding, ChildKey, Definitions, ElementDef, ElementType, Max, NodeId, Primitive, TypeDef,
    TypeId, ROOT_NODE,
};
use crate::fhir::outcome::Issue;

/// A request with thousands of errors does not need thousands of issues to be fixed.
const MAX_ISSUES: usize = 1000;

pub(super) struct Walker<'d> {
    defs: &'d Definitions,
    /// FHIRPath of the value being checked, e.g. `Patient.name[0].given`.
    path: String,
    issues: Vec<Issue>,
    truncated: bool,
    /// Set once the depth bound has been hit and reported: one issue says it all.
    too_deep: bool,
    /// Local references (`#id`, `#`) met in the resources being walked, for dom-3; a resource
    /// that is not contained drops those of its subtree once it is done.
    local_refs: Vec<Box<str>>,
    /// Contained resources walked, not yet judged by their container (dom-3).
    contained: Vec<Contained>,
}

/// What dom-3 needs to know of a contained resource once it has been walked.
struct Contained {
    /// Position in the container's `contained` array.
    index: usize,
    /// Its `id`: `#id` must be referenced from the container. No id, nothing to check.
    id: Option<Box<str>>,
    /// It references its container (`#`), which also satisfies dom-3.
    refers_to_container: bool,
}

impl<'d> Walker<'d> {
    pub fn new(defs: &'d Definitions) -> Walker<'d> {
        Walker {
            defs,
            path: String::with_capacity(128),
            issues: Vec::new(),
            truncated: false,
            too_deep: false,
            local_refs: Vec::new(),
            contained: Vec::new(),
        }
    }

    pub fn run(mut self, resource: &Value) -> Vec<Issue> {
        self.resource(resource, 0, None);
        if self.truncated {
            self.issues.push(Issue::error(
                "too-costly",
                format!("Validation stopped after {MAX_ISSUES} issues; fix these and submit again"),
            ));
        }
        self.issues
    }

    fn report(&mut self, code: &'static str, diagnostics: String) {
        if self.issues.len() >= MAX_ISSUES {
            self.truncated = true;
            return;
        }
        let issue = Issue::error(code, diagnostics);
        self.issues.push(if self.path.is_empty() {
            issue
        } else {
            issue.at(self.path.clone())
        });
    }

    /// Whether `depth` exceeds [`MAX_DEPTH`]; reports it the first time.
    fn too_deep(&mut self, depth: u32) -> bool {
        if depth <= MAX_DEPTH {
            return false;
        }
        if !self.too_deep {
            self.too_deep = true;
            self.report(
                "invalid",
                format!(
                    "Nested more than {MAX_DEPTH} levels deep; validation stops here. \
                     Flatten the data or split it into separate resources"
                ),
            );
        }
        true
    }

    /// Runs `f` with `.name` appended to the path.
    fn at_child(&mut self, name: &str, f: impl FnOnce(&mut Self)) {
        let mark = self.path.len();
        self.path.push('.');
        self.path.push_str(name);
        f(self);
        self.path.truncate(mark);
    }

    /// Runs `f` with `[index]` appended to the path.
    fn at_index(&mut self, index: usize, f: impl FnOnce(&mut Self)) {
        let mark = self.path.len();
        self.path.push('[');
        push_decimal(&mut self.path, index);
        self.path.push(']');
        f(self);
        self.path.truncate(mark);
    }

    // ---------------------------------------------------------------------- structures

    /// A resource, at the root or nested: `contained[index]` when `contained` is `Some(index)`,
    /// or `Bundle.entry.resource`, `Parameters.parameter.resource`...
    fn resource(&mut self, value: &Value, depth: u32, contained: Option<usize>) {
        let Some(obj) = value.as_object() else {
            self.report(
                "structure",
                format!(
                    "Expected a resource (a JSON object with a resourceType), found {}",
                    describe(value)
                ),
            );
            return;
        };
        let name = match obj.get("resourceType") {
            Some(Value::String(name)) => name.as_str(),
            Some(other) => {
                self.report(
                    "structure",
                    format!(
                        "resourceType must be a JSON string naming the type, e.g. \"Patient\", found {}",
                        describe(other)
                    ),
                );
                return;
            }
            None => {
                self.report(
                    "required",
                    "Missing resourceType: every resource names its type, e.g. \"resourceType\": \"Patient\"".into(),
                );
                return;
            }
        };
        let Some(id) = self.defs.resource_type(name) else {
            self.report(
                "value",
                format!(
                    "Unknown resource type '{}': not a FHIR R4 resource type (names are case-sensitive, e.g. Patient, Observation)",
                    excerpt(name)
                ),
            );
            return;
        };
        let top = self.path.is_empty();
        if top {
            self.path.push_str(name);
        }
        let refs_start = self.local_refs.len();
        let contained_start = self.contained.len();
        self.object(obj, self.defs.type_def(id), ROOT_NODE, depth + 1, true);
        if self.contained.len() > contained_start {
            self.contained_are_referenced(refs_start, contained_start);
        }
        match contained {
            Some(index) => {
                self.contained_rules(obj);
                let refers_to_container = self.local_refs[refs_start..].iter().any(|r| &**r == "#");
                let id = match obj.get("id") {
                    Some(Value::String(id)) => Some(Box::from(id.as_str())),
                    _ => None,
                };
                self.contained.push(Contained {
                    index,
                    id,
                    refers_to_container,
                });
            }
            // dom-3 looks no further than the resource holding `contained`.
            None => self.local_refs.truncate(refs_start),
        }
        if top {
            self.path.clear();
        }
    }

    /// dom-2, dom-4, dom-5: what a contained resource (the one at the current path) may not
    /// have.
    fn contained_rules(&mut self, obj: &Map<String, Value>) {
        if obj.contains_key("contained") {
            self.at_child("contained", |w| {
                w.report(
                    "invariant",
                    "A contained resource cannot contain resources itself (dom-2): put them all in the container's contained".into(),
                )
            });
        }
        let Some(Value::Object(meta)) = obj.get("meta") else {
            return;
        };
        self.at_child("meta", |w| {
            for (name, shadow) in [("versionId", "_versionId"), ("lastUpdated", "_lastUpdated")] {
                if meta.contains_key(name) || meta.contains_key(shadow) {
                    w.at_child(name, |w| {
                        w.report(
                            "invariant",
                            format!(
                                "A contained resource has no meta.{name} (dom-4): it is not versioned on its own, only its container is"
                            ),
                        )
                    });
                }
            }
            if meta.contains_key("security") {
                w.at_child("security", |w| {
                    w.report(
                        "invariant",
                        "A contained resource has no security labels (dom-5): label the container".into(),
                    )
                });
            }
        });
    }

    /// dom-3: every contained resource walked since `contained_start` (the current resource's
    /// own) is referenced (`#id`) from somewhere in the current resource, itself included, or
    /// references it (`#`).
    fn contained_are_referenced(&mut self, refs_start: usize, contained_start: usize) {
        let walked = self.contained.split_off(contained_start);
        let targets = self.local_refs[refs_start..]
            .iter()
            .filter_map(|r| r.strip_prefix('#'));
        // A few contained resources and references compare directly; thousands of each (a
        // hostile request) must not cost their product.
        let set: Option<HashSet<&str>> = (walked
            .len()
            .saturating_mul(self.local_refs.len() - refs_start)
            > 4096)
            .then(|| targets.clone().collect());
        let unreferenced: Vec<(usize, Box<str>)> = walked
            .into_iter()
            .filter(|c| !c.refers_to_container)
            .filter_map(|c| Some((c.index, c.id?)))
            .filter(|(_, id)| match &set {
                Some(set) => !set.contains(&**id),
                None => !targets.clone().any(|t| t == &**id),
            })
            .collect();
        for (index, id) in unreferenced {
            self.at_child("contained", |w| {
                w.at_index(index, |w| {
                    w.report(
                        "invariant",
                        format!(
                            "The contained resource '{}' is not referenced from the rest of the resource (\"reference\": \"#{}\") and does not reference it (\"#\") (dom-3): unreferenced content is lost to readers; reference it or remove it",
                            excerpt(&id),
                            excerpt(&id)
                        ),
                    )
                })
            });
        }
    }

    /// A JSON object whose allowed keys are those of `node` in `ty`.
    fn object(
        &mut self,
        obj: &Map<String, Value>,
        ty: &'d TypeDef,
        node: NodeId,
        depth: u32,
        is_resource: bool,
    ) {
        if self.too_deep(depth) {
            return;
        }
        if obj.is_empty() {
            self.report(
                "structure",
                "Empty object: FHIR JSON has no empty objects; omit the element instead".into(),
            );
            return;
        }
        // Choice elements already seen in this object, with the type used.
        let mut choices: Vec<(u32, u8)> = Vec::new();
        for (key, value) in obj {
            if is_resource && key == "resourceType" {
                continue;
            }
            let (name, shadow) = match key.strip_prefix('_') {
                Some(name) => (name, true),
                None => (key.as_str(), false),
            };
            let Some(child) = ty.child(node, name) else {
                self.unknown(ty, node, key);
                continue;
            };
            let el = ty.element(child.element);
            self.at_child(name, |w| {
                if el.choice {
                    w.one_choice(&mut choices, el, child, name);
                }
                if shadow {
                    w.primitive_extension(obj, name, value, ty, el, child, depth);
                } else {
                    w.element(obj, name, value, ty, el, child.type_index, depth);
                }
            });
        }
        self.required(obj, ty, node);
    }

    /// At most one type per choice element (`valueString` + `valueInteger` is an error;
    /// `valueString` + `_valueString` is one value).
    fn one_choice(
        &mut self,
        seen: &mut Vec<(u32, u8)>,
        el: &ElementDef,
        child: &ChildKey,
        key: &str,
    ) {
        match seen.iter().find(|(e, _)| *e == child.element) {
            None => seen.push((child.element, child.type_index)),
            Some(&(_, first)) if first != child.type_index => {
                let other = &el.choice_keys[usize::from(first)].key;
                self.report(
                    "invalid",
                    format!(
                        "{}[x] has more than one value ({other} and {key}): a choice element takes exactly one type",
                        el.name
                    ),
                );
            }
            Some(_) => {}
        }
    }

    /// Elements with `min > 0` must be present (a value or, for primitives, an extension).
    fn required(&mut self, obj: &Map<String, Value>, ty: &TypeDef, node: NodeId) {
        for &index in &ty.node(node).required {
            let el = ty.element(index);
            let present = if el.choice {
                el.choice_keys
                    .iter()
                    .any(|k| obj.contains_key(&*k.key) || obj.contains_key(&*k.shadow))
            } else {
                obj.contains_key(&*el.name) || obj.contains_key(&*el.shadow)
            };
            if present {
                continue;
            }
            if el.choice {
                let name = format!("{}[x]", el.name);
                let keys = list_keys(el);
                self.at_child(&name, |w| {
                    w.report(
                        "required",
                        format!(
                            "Missing required element {name} (minimum cardinality {}): give one of {keys}",
                            el.min
                        ),
                    )
                });
            } else {
                self.at_child(&el.name, |w| {
                    w.report(
                        "required",
                        format!(
                            "Missing required element '{}' (minimum cardinality {})",
                            el.name, el.min
                        ),
                    )
                });
            }
        }
    }

    /// A key the definition does not have, with a hint for mistyped choices.
    fn unknown(&mut self, ty: &TypeDef, node: NodeId, key: &str) {
        let name = key.strip_prefix('_').unwrap_or(key);
        let choice = ty
            .node(node)
            .children
            .iter()
            .map(|c| ty.element(c.element))
            .find(|e| e.choice && name.starts_with(&*e.name));
        let message = match choice {
            Some(e) if name == &*e.name => format!(
                "'{key}' is a choice element and must be named after its type: one of {}",
                list_keys(e)
            ),
            Some(e) => format!(
                "Unknown element '{}': {}[x] does not allow that type here; allowed: {}",
                excerpt(key),
                e.name,
                list_keys(e)
            ),
            None => {
                let owner = ty
                    .elements
                    .iter()
                    .find(|e| e.node == Some(node) && node != ROOT_NODE);
                let place = match owner {
                    Some(e) => format!("{}.{}", ty.name, e.path),
                    None => ty.name.to_string(),
                };
                format!(
                    "Unknown element '{}': {place} has no such element in FHIR R4; check the spelling and case, or carry custom data in an extension",
                    excerpt(key)
                )
            }
        };
        self.at_child(key, |w| w.report("structure", message));
    }

    // ------------------------------------------------------------------------ elements

    /// The value of one element: an array exactly when the element repeats.
    #[allow(clippy::too_many_arguments)]
    fn element(
        &mut self,
        obj: &Map<String, Value>,
        name: &str,
        value: &Value,
        ty: &'d TypeDef,
        el: &'d ElementDef,
        type_index: u8,
        depth: u32,
    ) {
        let et = el.types[usize::from(type_index)];
        if el.max == Max::Count(0) {
            self.report(
                "structure",
                format!(
                    "'{name}' is not allowed here (maximum cardinality 0 in {})",
                    ty.name
                ),
            );
            return;
        }
        if !el.max.repeats() {
            match value {
                Value::Array(_) => self.report(
                    "structure",
                    format!(
                        "'{name}' takes a single value (maximum cardinality 1), found an array; remove the [ ]"
                    ),
                ),
                Value::Null => self.null(name, false),
                _ => self.item(value, et, ty, el, depth, 0),
            }
            return;
        }
        let Value::Array(items) = value else {
            self.report(
                "structure",
                format!(
                    "'{name}' repeats (cardinality {}..{}), so it must be a JSON array, found {}; wrap the value in [ ]",
                    el.min,
                    el.max,
                    describe(value)
                ),
            );
            return;
        };
        if items.is_empty() {
            self.report(
                "structure",
                format!("Empty array: FHIR JSON has no empty arrays; omit '{name}' instead"),
            );
            return;
        }
        if let Max::Count(max) = el.max {
            if items.len() > max as usize {
                self.report(
                    "invalid",
                    format!(
                        "'{name}' has {} values but at most {max} are allowed",
                        items.len()
                    ),
                );
            }
        }
        if items.len() < el.min as usize {
            self.report(
                "required",
                format!(
                    "'{name}' has {} values but at least {} are required",
                    items.len(),
                    el.min
                ),
            );
        }
        for (i, item) in items.iter().enumerate() {
            self.at_index(i, |w| {
                if !item.is_null() {
                    w.item(item, et, ty, el, depth, i);
                    return;
                }
                // null only holds the place of a value that has extensions in `_name`.
                let primitive = matches!(et, ElementType::Primitive(_));
                let extended = primitive
                    && obj
                        .get(&format!("_{name}"))
                        .and_then(|s| s.get(i))
                        .is_some_and(|x| !x.is_null());
                if !extended {
                    w.null(name, primitive);
                }
            });
        }
    }

    fn null(&mut self, name: &str, primitive: bool) {
        let message = if primitive {
            format!(
                "'{name}' is null: FHIR JSON only has null in a primitive array, to hold the place of a value whose '_{name}' entry has extensions; otherwise omit it"
            )
        } else {
            format!("'{name}' is null: FHIR JSON has no nulls; omit the element instead")
        };
        self.report("structure", message);
    }

    /// One value of an element, of type `et`; `index` is its position in the element's array.
    fn item(
        &mut self,
        value: &Value,
        et: ElementType,
        ty: &'d TypeDef,
        el: &'d ElementDef,
        depth: u32,
        index: usize,
    ) {
        match et {
            ElementType::Primitive(p) => self.primitive(value, p, el),
            ElementType::Resource => {
                let contained = (&*el.name == "contained").then_some(index);
                self.resource(value, depth, contained)
            }
            ElementType::Inline => match (value, el.node) {
                (Value::Object(obj), Some(node)) => self.object(obj, ty, node, depth + 1, false),
                (Value::Object(_), None) => {}
                _ => self.not_an_object(value, "BackboneElement"),
            },
            ElementType::Complex(id) => {
                let Value::Object(obj) = value else {
                    self.not_an_object(value, &self.defs.type_def(id).name);
                    return;
                };
                self.object(obj, self.defs.type_def(id), ROOT_NODE, depth + 1, false);
                let known = self.defs.well_known();
                if id == known.extension {
                    self.extension_value_or_children(obj);
                }
                if let Some(binding) = &el.binding {
                    self.coded(obj, id, binding);
                }
            }
        }
    }

    fn not_an_object(&mut self, value: &Value, type_name: &str) {
        self.report(
            "structure",
            format!(
                "A {type_name} must be written as a JSON object, found {}",
                describe(value)
            ),
        );
    }

    /// Extension: a value or nested extensions, not both, not neither (ext-1: cheap, and
    /// an extension that is neither means the sender's mapping is broken).
    fn extension_value_or_children(&mut self, obj: &Map<String, Value>) {
        let has_value = obj
            .keys()
            .any(|k| k.starts_with("value") || k.starts_with("_value"));
        let has_children = obj.contains_key("extension");
        if has_value && has_children {
            self.report(
                "invalid",
                "An extension has either a value[x] or nested extensions, not both".into(),
            );
        } else if !has_value && !has_children {
            self.report(
                "invalid",
                "An extension must have a value[x] or nested extensions".into(),
            );
        }
    }

    /// Required binding on a Coding or CodeableConcept.
    fn coded(&mut self, obj: &Map<String, Value>, id: TypeId, binding: &Binding) {
        let Some(vs) = self.defs.binding_valueset(binding) else {
            return;
        };
        let known = self.defs.well_known();
        if id == known.coding {
            if let Some(message) = bindings::check_coding(vs, obj) {
                self.at_child("code", |w| w.report("value", message));
            }
        } else if id == known.codeable_concept {
            let Some(Value::Array(codings)) = obj.get("coding") else {
                return;
            };
            self.at_child("coding", |w| {
                for (i, coding) in codings.iter().enumerate() {
                    let Value::Object(coding) = coding else {
                        continue;
                    };
                    if let Some(message) = bindings::check_coding(vs, coding) {
                        w.at_index(i, |w| w.at_child("code", |w| w.report("value", message)));
                    }
                }
            });
        }
    }

    // ---------------------------------------------------------------------- primitives

    fn primitive(&mut self, value: &Value, p: Primitive, el: &ElementDef) {
        let kind = primitives::json_kind(p);
        match (kind, value) {
            (JsonKind::Boolean, Value::Bool(_)) => {}
            (JsonKind::Number, Value::Number(n)) => {
                if let Err(e) = primitives::check_number(p, n.as_str()) {
                    self.report("value", format!("Invalid {p}: {e}"));
                }
            }
            (JsonKind::String, Value::String(s)) => self.string(s, p, el),
            _ => self.report(
                "structure",
                format!(
                    "A {p} must be written as {}, found {}",
                    kind.describe(),
                    describe(value)
                ),
            ),
        }
    }

    fn string(&mut self, s: &str, p: Primitive, el: &ElementDef) {
        if primitives::is_blank(s) {
            let what = if s.is_empty() {
                "is empty"
            } else {
                "holds only whitespace"
            };
            self.report(
                "structure",
                format!("The {p} {what}: FHIR JSON has no empty strings; omit the element instead"),
            );
            return;
        }
        if primitives::has_size_limit(p) && s.len() > primitives::MAX_STRING_BYTES {
            self.report(
                "value",
                format!(
                    "The {p} is {} bytes long but FHIR strings hold at most 1 MiB; send large content as an Attachment",
                    s.len()
                ),
            );
            return;
        }
        if let Some((at, c)) = primitives::control_character(s) {
            self.report(
                "value",
                format!(
                    "The {p} contains the control character U+{:04X} at character {at}: FHIR strings \
                     SHALL NOT contain characters below U+0020 other than tab, carriage return and line feed",
                    u32::from(c)
                ),
            );
            return;
        }
        if let Err(e) = primitives::check_string(p, s) {
            let message = if p == Primitive::Xhtml {
                format!("Invalid {p}: {e}")
            } else {
                format!("Invalid {p} '{}': {e}", excerpt(s))
            };
            self.report("value", message);
            return;
        }
        if s.starts_with('#') {
            let local = match p {
                Primitive::Canonical | Primitive::Uri | Primitive::Url => true,
                Primitive::String => &*el.name == "reference",
                _ => false,
            };
            if local {
                self.local_refs.push(Box::from(s));
            }
        }
        if p == Primitive::Code {
            if let Some(vs) = el
                .binding
                .as_ref()
                .and_then(|b| self.defs.binding_valueset(b))
            {
                if let Some(message) = bindings::check_code(vs, s) {
                    self.report("value", message);
                }
            }
        }
    }

    /// `_name`: the id and extensions of primitive `name`, an object or, when `name`
    /// repeats, an array aligned with `name`'s.
    #[allow(clippy::too_many_arguments)]
    fn primitive_extension(
        &mut self,
        obj: &Map<String, Value>,
        name: &str,
        value: &Value,
        ty: &TypeDef,
        el: &ElementDef,
        child: &ChildKey,
        depth: u32,
    ) {
        if !matches!(
            el.types[usize::from(child.type_index)],
            ElementType::Primitive(_)
        ) {
            self.report(
                "structure",
                format!(
                    "'_{name}' is not allowed: {}.{} is not a primitive, so its id and extensions go inside '{name}' itself",
                    ty.name, el.path
                ),
            );
            return;
        }
        let values = obj.get(name);
        if !el.max.repeats() {
            match value {
                Value::Array(_) => self.report(
                    "structure",
                    format!(
                        "'_{name}' takes a single object (maximum cardinality 1), found an array"
                    ),
                ),
                _ => self.extension_holder(name, value, values.is_some(), depth),
            }
            return;
        }
        let Value::Array(items) = value else {
            self.report(
                "structure",
                format!(
                    "'_{name}' must be a JSON array aligned with '{name}' (null where a value has no extension), found {}",
                    describe(value)
                ),
            );
            return;
        };
        if items.is_empty() {
            self.report(
                "structure",
                format!("Empty array: FHIR JSON has no empty arrays; omit '_{name}' instead"),
            );
            return;
        }
        let values = values.and_then(Value::as_array);
        if let Some(values) = values {
            if values.len() != items.len() {
                self.report(
                    "structure",
                    format!(
                        "'_{name}' has {} entries but '{name}' has {}: the arrays must be aligned, with null where there is nothing",
                        items.len(),
                        values.len()
                    ),
                );
            }
        }
        for (i, item) in items.iter().enumerate() {
            let has_value = values.and_then(|v| v.get(i)).is_some_and(|v| !v.is_null());
            self.at_index(i, |w| {
                if !item.is_null() {
                    w.extension_holder(name, item, has_value, depth);
                } else if !has_value {
                    w.report(
                        "structure",
                        format!(
                            "Both '{name}' and '_{name}' are null (or missing) at this position; remove the entry from both arrays"
                        ),
                    );
                }
            });
        }
    }

    /// The object in `_name`: only `id` and `extension`, and an extension when there is no
    /// value (e.g. a data-absent-reason).
    fn extension_holder(&mut self, name: &str, value: &Value, has_value: bool, depth: u32) {
        let Value::Object(obj) = value else {
            self.report(
                "structure",
                format!(
                    "'_{name}' must hold a JSON object with id and/or extension, found {}",
                    describe(value)
                ),
            );
            return;
        };
        if self.too_deep(depth + 1) {
            return;
        }
        if obj.is_empty() {
            self.report(
                "structure",
                format!("Empty object in '_{name}': omit it, or use null in an array"),
            );
            return;
        }
        // `id` and `extension` are defined alike on every element; take Extension's own.
        let holder = self.defs.type_def(self.defs.well_known().extension);
        for (key, item) in obj {
            let child = match key.as_str() {
                "id" | "extension" => holder.child(ROOT_NODE, key),
                _ => None,
            };
            let Some(child) = child else {
                self.at_child(key, |w| {
                    w.report(
                        "structure",
                        format!(
                            "'{}' is not allowed in '_{name}': a primitive's extension object holds only id and extension",
                            excerpt(key)
                        ),
                    )
                });
                continue;
            };
            let el = holder.element(child.element);
            self.at_child(key, |w| {
                w.element(obj, key, item, holder, el, child.type_index, depth + 1)
            });
        }
        if !has_value && !obj.contains_key("extension") {
            self.report(
                "structure",
                format!(
                    "'_{name}' without '{name}' must carry an extension (e.g. data-absent-reason); otherwise omit it"
                ),
            );
        }
    }
}

/// `write!(path, "{n}")` without the formatting machinery, which showed in profiles.
fn push_decimal(path: &mut String, n: usize) {
    if n >= 10 {
        push_decimal(path, n / 10);
    }
    path.push(char::from(b'0' + (n % 10) as u8));
}

/// The JSON keys a choice element accepts, for diagnostics.
fn list_keys(el: &ElementDef) -> String {
    const SHOWN: usize = 12;
    let mut keys: Vec<&str> = el.choice_keys.iter().take(SHOWN).map(|k| &*k.key).collect();
    if el.choice_keys.len() > SHOWN {
        keys.push("...");
    }
    keys.join(", ")
}

/// A value's JSON type, with an excerpt, for diagnostics.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {}", excerpt(n.as_str())),
        Value::String(s) => format!("the string \"{}\"", excerpt(s)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// At most 60 characters of user input, so diagnostics stay readable.
fn excerpt(s: &str) -> String {
    const LIMIT: usize = 60;
    match s.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_string(),
    }
}
