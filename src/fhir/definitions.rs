//! HL7's R4 (4.0.1) definitions, in the compact form produced by `fhir-profiles/generate.py`.
//!
//! The file is embedded in the binary and parsed once, on first use, into tables shaped for the
//! validator's hot path: every object the validator meets is a [`Node`] whose JSON keys are
//! sorted for binary search, with choice elements (`value[x]`) already expanded into their
//! concrete keys (`valueQuantity`, `valueString`...). Nothing here allocates after loading.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

/// The generated definitions; see `fhir-profiles/README.md` for their shape and provenance.
const R4_JSON: &str = include_str!("../../fhir-profiles/r4-definitions.json");

/// The R4 definitions embedded in the binary, parsed on first call.
pub fn r4() -> &'static Definitions {
    static R4: OnceLock<Definitions> = OnceLock::new();
    R4.get_or_init(|| match Definitions::from_json(R4_JSON) {
        Ok(defs) => defs,
        // The file is generated and checked by tests; reaching this is a build defect.
        Err(e) => panic!(
            "fhir-profiles/r4-definitions.json is unusable ({e}); \
             regenerate it with `python3 fhir-profiles/generate.py <package>`"
        ),
    })
}

/// Why a definitions file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionsError {
    #[error("not the expected JSON shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Inconsistent(String),
}

fn inconsistent(message: impl Into<String>) -> DefinitionsError {
    DefinitionsError::Inconsistent(message.into())
}

/// The R4 primitive types; their JSON representation and lexical rules are fixed by the
/// specification, so they are an enum rather than data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Primitive {
    Base64Binary,
    Boolean,
    Canonical,
    Code,
    Date,
    DateTime,
    Decimal,
    Id,
    Instant,
    Integer,
    Markdown,
    Oid,
    PositiveInt,
    String,
    Time,
    UnsignedInt,
    Uri,
    Url,
    Uuid,
    Xhtml,
}

impl Primitive {
    pub const ALL: [Primitive; 20] = [
        Primitive::Base64Binary,
        Primitive::Boolean,
        Primitive::Canonical,
        Primitive::Code,
        Primitive::Date,
        Primitive::DateTime,
        Primitive::Decimal,
        Primitive::Id,
        Primitive::Instant,
        Primitive::Integer,
        Primitive::Markdown,
        Primitive::Oid,
        Primitive::PositiveInt,
        Primitive::String,
        Primitive::Time,
        Primitive::UnsignedInt,
        Primitive::Uri,
        Primitive::Url,
        Primitive::Uuid,
        Primitive::Xhtml,
    ];

    /// The FHIR type name, e.g. `dateTime`.
    pub fn name(self) -> &'static str {
        match self {
            Primitive::Base64Binary => "base64Binary",
            Primitive::Boolean => "boolean",
            Primitive::Canonical => "canonical",
            Primitive::Code => "code",
            Primitive::Date => "date",
            Primitive::DateTime => "dateTime",
            Primitive::Decimal => "decimal",
            Primitive::Id => "id",
            Primitive::Instant => "instant",
            Primitive::Integer => "integer",
            Primitive::Markdown => "markdown",
            Primitive::Oid => "oid",
            Primitive::PositiveInt => "positiveInt",
            Primitive::String => "string",
            Primitive::Time => "time",
            Primitive::UnsignedInt => "unsignedInt",
            Primitive::Uri => "uri",
            Primitive::Url => "url",
            Primitive::Uuid => "uuid",
            Primitive::Xhtml => "xhtml",
        }
    }

    pub fn from_name(name: &str) -> Option<Primitive> {
        Primitive::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Primitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Index of a type in [`Definitions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeId(u32);

/// Index of a [`Node`] within one [`TypeDef`]; [`ROOT_NODE`] is the type itself.
pub type NodeId = u32;

/// The node of a type's own top-level elements.
pub const ROOT_NODE: NodeId = 0;

/// What a structure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    Resource,
    Complex,
}

/// What one allowed type of an element means to the validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    Primitive(Primitive),
    Complex(TypeId),
    /// `BackboneElement`/`Element`: the children are defined inline in the owning type, at
    /// [`ElementDef::node`].
    Inline,
    /// Any resource, validated by its own `resourceType` (`contained`, `Bundle.entry.resource`).
    Resource,
}

/// Upper cardinality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Max {
    Count(u32),
    Unbounded,
}

impl Max {
    /// In JSON, an element is an array exactly when it may repeat.
    pub fn repeats(self) -> bool {
        !matches!(self, Max::Count(0 | 1))
    }
}

impl fmt::Display for Max {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Max::Count(n) => write!(f, "{n}"),
            Max::Unbounded => f.write_str("*"),
        }
    }
}

/// One JSON key of a choice element, e.g. `valueQuantity` of `value[x]`.
#[derive(Debug)]
pub struct ChoiceKey {
    pub key: Box<str>,
    /// The same key with the `_` prefix of primitive extensions.
    pub shadow: Box<str>,
}

/// A required binding on a coded element.
#[derive(Debug)]
pub struct Binding {
    /// Canonical URL of the value set, without version.
    pub url: Box<str>,
    valueset: Option<u32>,
}

/// One element of a type, e.g. `contact.name` of Patient.
#[derive(Debug)]
pub struct ElementDef {
    /// Path relative to the type, as in the definitions: `contact.name`, `value[x]`.
    pub path: Box<str>,
    /// Last path segment without `[x]`: `name`, `value`.
    pub name: Box<str>,
    /// `_name`, the key of this element's primitive extensions.
    pub shadow: Box<str>,
    pub min: u32,
    pub max: Max,
    pub types: Vec<ElementType>,
    /// `value[x]`: one JSON key per type, at most one present.
    pub choice: bool,
    /// For choices, the JSON keys in the order of `types`.
    pub choice_keys: Vec<ChoiceKey>,
    /// For inline and content-referenced elements, the node holding their children.
    pub node: Option<NodeId>,
    pub binding: Option<Binding>,
    /// `isSummary`: part of the `_summary=true` subset (inside its parent, when that is kept).
    pub summary: bool,
    /// The node this element is a key of.
    parent: NodeId,
}

/// One JSON key allowed in a node.
#[derive(Debug)]
pub struct ChildKey {
    pub key: Box<str>,
    pub element: u32,
    /// Which of the element's `types` this key stands for (non-zero only for choices).
    pub type_index: u8,
}

/// The keys allowed in one JSON object, and which elements it must have.
#[derive(Debug, Default)]
pub struct Node {
    /// Sorted by key.
    pub children: Vec<ChildKey>,
    /// Key -> position in `children`: the validator looks up every key of every object, and a
    /// hash of a short key beats a binary search of string comparisons (measured: 2x on a
    /// whole Observation).
    index: HashMap<Box<str>, u32, BuildHasherDefault<Fnv1a>>,
    /// Elements with `min > 0`.
    pub required: Vec<u32>,
}

/// FNV-1a: JSON keys are short and not attacker-chosen in a way that matters here (the table
/// is built from the definitions; a lookup of a hostile key only costs one probe sequence).
#[derive(Default)]
struct Fnv1a(u64);

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = hash;
    }
}

/// A resource type or complex datatype.
#[derive(Debug)]
pub struct TypeDef {
    pub name: Box<str>,
    pub kind: TypeKind,
    /// The name used in choice keys: `Quantity` for the SimpleQuantity and MoneyQuantity
    /// profiles, the type name otherwise.
    pub wire_name: Box<str>,
    pub elements: Vec<ElementDef>,
    pub nodes: Vec<Node>,
}

impl TypeDef {
    /// The element behind a JSON key (without `_`) of an object at `node`.
    pub fn child(&self, node: NodeId, key: &str) -> Option<&ChildKey> {
        let node = self.nodes.get(node as usize)?;
        node.index.get(key).map(|&i| &node.children[i as usize])
    }

    pub fn element(&self, index: u32) -> &ElementDef {
        &self.elements[index as usize]
    }

    pub fn node(&self, node: NodeId) -> &Node {
        &self.nodes[node as usize]
    }
}

/// The codes of an expanded value set, per code system.
#[derive(Debug)]
pub struct ValueSet {
    pub url: Box<str>,
    /// `(system, sorted codes)`, sorted by system.
    systems: Vec<(Box<str>, Vec<Box<str>>)>,
}

impl ValueSet {
    /// The codes the value set takes from `system`, if it uses that system at all.
    pub fn codes_in(&self, system: &str) -> Option<&[Box<str>]> {
        self.systems
            .binary_search_by(|(s, _)| (**s).cmp(system))
            .ok()
            .map(|i| self.systems[i].1.as_slice())
    }

    /// Whether `code` belongs to the value set, whatever its system (for `code` elements).
    pub fn contains(&self, code: &str) -> bool {
        self.systems
            .iter()
            .any(|(_, codes)| codes.binary_search_by(|c| (**c).cmp(code)).is_ok())
    }

    pub fn systems(&self) -> impl Iterator<Item = &str> {
        self.systems.iter().map(|(s, _)| &**s)
    }

    /// Number of codes, all systems together.
    pub fn len(&self) -> usize {
        self.systems.iter().map(|(_, c)| c.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All codes, for diagnostics.
    pub fn codes(&self) -> impl Iterator<Item = &str> {
        self.systems
            .iter()
            .flat_map(|(_, c)| c.iter().map(|c| &**c))
    }
}

/// Types the validator treats specially, resolved once.
#[derive(Debug, Clone, Copy)]
pub struct WellKnown {
    pub extension: TypeId,
    pub coding: TypeId,
    pub codeable_concept: TypeId,
}

/// The loaded R4 definitions.
#[derive(Debug)]
pub struct Definitions {
    types: Vec<TypeDef>,
    by_name: HashMap<Box<str>, TypeId>,
    /// Resource type names, sorted.
    resources: Vec<Box<str>>,
    valuesets: Vec<ValueSet>,
    valueset_by_url: HashMap<Box<str>, u32>,
    patient_compartment: HashMap<Box<str>, Vec<String>>,
    well_known: WellKnown,
    fhir_version: String,
}

impl Definitions {
    /// Whether `name` is a concrete R4 resource type (not `Resource`/`DomainResource`).
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.resource_type(name).is_some()
    }

    /// The concrete resource type names, sorted.
    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.resources.iter().map(|s| &**s)
    }

    /// Element paths (dotted JSON keys from the resource, arrays traversed implicitly, e.g.
    /// `participant.actor`, `link.other`) whose references put a resource of this type in the
    /// compartment of the Patient they point to. Only references to a Patient count: some paths
    /// (`subject`) may also point elsewhere. Empty for types outside the compartment.
    pub fn patient_compartment_paths(&self, resource_type: &str) -> &[String] {
        self.patient_compartment
            .get(resource_type)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The FHIR version the definitions come from (`4.0.1`).
    pub fn fhir_version(&self) -> &str {
        &self.fhir_version
    }

    /// A resource type by name.
    pub fn resource_type(&self, name: &str) -> Option<TypeId> {
        self.type_id(name)
            .filter(|id| self.type_def(*id).kind == TypeKind::Resource)
    }

    /// A resource type or complex datatype by name.
    pub fn type_id(&self, name: &str) -> Option<TypeId> {
        self.by_name.get(name).copied()
    }

    pub fn type_def(&self, id: TypeId) -> &TypeDef {
        &self.types[id.0 as usize]
    }

    /// The expansion behind a binding, when the value set could be expanded.
    pub fn binding_valueset(&self, binding: &Binding) -> Option<&ValueSet> {
        binding.valueset.map(|i| &self.valuesets[i as usize])
    }

    /// An expanded value set by canonical URL (without version).
    pub fn valueset(&self, url: &str) -> Option<&ValueSet> {
        self.valueset_by_url
            .get(url)
            .map(|i| &self.valuesets[*i as usize])
    }

    pub fn well_known(&self) -> WellKnown {
        self.well_known
    }

    /// Loads definitions in the compact form of `fhir-profiles/generate.py`.
    pub fn from_json(text: &str) -> Result<Definitions, DefinitionsError> {
        let raw: RawDefinitions = serde_json::from_str(text)?;
        build(raw)
    }
}

// ------------------------------------------------------------------ compact JSON shape

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDefinitions<'a> {
    fhir_version: String,
    primitives: Vec<String>,
    /// Names and paths are borrowed from the embedded text: they never need JSON escapes, and
    /// not copying ten thousand of them halves the load time.
    #[serde(borrow)]
    types: BTreeMap<&'a str, RawType<'a>>,
    valuesets: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    compartments: RawCompartments,
}

#[derive(Deserialize)]
struct RawCompartments {
    patient: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct RawType<'a> {
    kind: &'a str,
    #[serde(default, borrow)]
    base: Option<&'a str>,
    #[serde(borrow)]
    elements: BTreeMap<&'a str, RawElement<'a>>,
}

#[derive(Deserialize)]
struct RawElement<'a> {
    min: u32,
    /// A number or `"*"`; a `Value` because the crate's `arbitrary_precision` numbers do not
    /// go through untagged enums.
    max: Value,
    #[serde(default, rename = "type", borrow)]
    types: Vec<&'a str>,
    #[serde(default, rename = "ref", borrow)]
    content_ref: Option<&'a str>,
    #[serde(default, borrow)]
    vs: Option<&'a str>,
    /// `isSummary`, written only when true.
    #[serde(default)]
    summary: bool,
}

// ------------------------------------------------------------------------- building

fn build(raw: RawDefinitions<'_>) -> Result<Definitions, DefinitionsError> {
    for name in &raw.primitives {
        if Primitive::from_name(name).is_none() {
            return Err(inconsistent(format!(
                "primitive type {name} is unknown to this build"
            )));
        }
    }

    let (valuesets, valueset_by_url) = build_valuesets(raw.valuesets);

    // Ids first, so that elements can point at any type.
    let mut by_name = HashMap::with_capacity(raw.types.len());
    for (i, name) in raw.types.keys().enumerate() {
        by_name.insert(Box::from(*name), TypeId(i as u32));
    }

    let mut types = Vec::with_capacity(raw.types.len());
    for (name, raw_type) in &raw.types {
        types.push(build_type(name, raw_type, &by_name, &valueset_by_url)?);
    }
    // Choice keys need the wire names of all types, indexed like TypeId.
    let wire_names: Vec<Box<str>> = types.iter().map(|t| t.wire_name.clone()).collect();
    for ty in &mut types {
        fill_choice_keys(ty, &wire_names)?;
    }

    let mut resources: Vec<Box<str>> = types
        .iter()
        .filter(|t| t.kind == TypeKind::Resource)
        .map(|t| t.name.clone())
        .collect();
    resources.sort();

    let find = |name: &str| {
        by_name
            .get(name)
            .copied()
            .ok_or_else(|| inconsistent(format!("type {name} is missing")))
    };
    let well_known = WellKnown {
        extension: find("Extension")?,
        coding: find("Coding")?,
        codeable_concept: find("CodeableConcept")?,
    };

    let patient_compartment = raw
        .compartments
        .patient
        .into_iter()
        .map(|(k, v)| (Box::from(k.as_str()), v))
        .collect();

    Ok(Definitions {
        types,
        by_name,
        resources,
        valuesets,
        valueset_by_url,
        patient_compartment,
        well_known,
        fhir_version: raw.fhir_version,
    })
}

fn build_valuesets(
    raw: BTreeMap<String, BTreeMap<String, Vec<String>>>,
) -> (Vec<ValueSet>, HashMap<Box<str>, u32>) {
    let mut valuesets = Vec::with_capacity(raw.len());
    let mut by_url = HashMap::with_capacity(raw.len());
    for (url, systems) in raw {
        let systems = systems
            .into_iter()
            .map(|(system, codes)| {
                let mut codes: Vec<Box<str>> = codes.into_iter().map(Box::from).collect();
                codes.sort();
                (Box::from(system.as_str()), codes)
            })
            .collect();
        by_url.insert(Box::from(url.as_str()), valuesets.len() as u32);
        valuesets.push(ValueSet {
            url: url.into(),
            systems,
        });
    }
    (valuesets, by_url)
}

fn parse_max(path: &str, max: &Value) -> Result<Max, DefinitionsError> {
    match max {
        Value::String(s) if s == "*" => Ok(Max::Unbounded),
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Max::Count)
            .ok_or_else(|| inconsistent(format!("{path}: bad max {n}"))),
        other => Err(inconsistent(format!("{path}: bad max {other}"))),
    }
}

fn last_segment(path: &str) -> &str {
    path.rsplit_once('.').map_or(path, |(_, last)| last)
}

fn build_type(
    name: &str,
    raw: &RawType<'_>,
    by_name: &HashMap<Box<str>, TypeId>,
    valueset_by_url: &HashMap<Box<str>, u32>,
) -> Result<TypeDef, DefinitionsError> {
    let kind = match raw.kind {
        "resource" => TypeKind::Resource,
        "complex-type" => TypeKind::Complex,
        other => return Err(inconsistent(format!("{name}: unknown kind {other}"))),
    };

    let mut elements = Vec::with_capacity(raw.elements.len());
    let mut index: HashMap<&str, u32> = HashMap::with_capacity(raw.elements.len());
    let mut nodes = vec![Node::default()];
    for (path, e) in &raw.elements {
        let at = || format!("{name}.{path}");
        let mut types = Vec::with_capacity(e.types.len());
        for t in &e.types {
            types.push(match *t {
                "BackboneElement" | "Element" => ElementType::Inline,
                "Resource" => ElementType::Resource,
                other => match Primitive::from_name(other) {
                    Some(p) => ElementType::Primitive(p),
                    None => {
                        ElementType::Complex(by_name.get(other).copied().ok_or_else(|| {
                            inconsistent(format!("{}: unknown type {other}", at()))
                        })?)
                    }
                },
            });
        }
        if types.is_empty() && e.content_ref.is_none() {
            return Err(inconsistent(format!("{}: no type", at())));
        }
        if types.len() > usize::from(u8::MAX) {
            return Err(inconsistent(format!("{}: too many types", at())));
        }
        let segment = last_segment(path);
        let (base, choice) = match segment.strip_suffix("[x]") {
            Some(base) => (base, true),
            None => (segment, false),
        };
        if !choice && types.len() > 1 {
            return Err(inconsistent(format!(
                "{}: several types but not a choice",
                at()
            )));
        }
        let node = if types == [ElementType::Inline] {
            nodes.push(Node::default());
            Some((nodes.len() - 1) as NodeId)
        } else {
            None
        };
        let binding = e.vs.map(|url| Binding {
            url: url.into(),
            valueset: valueset_by_url.get(url).copied(),
        });
        index.insert(path, elements.len() as u32);
        elements.push(ElementDef {
            path: (*path).into(),
            name: base.into(),
            shadow: format!("_{base}").into(),
            min: e.min,
            max: parse_max(&at(), &e.max)?,
            types,
            choice,
            choice_keys: Vec::new(),
            node,
            binding,
            summary: e.summary,
            parent: ROOT_NODE,
        });
    }

    // Content references share the node of the element they point at; the referenced element
    // may come later in path order, hence a second pass.
    for (path, e) in &raw.elements {
        if let Some(target) = e.content_ref {
            let node = index
                .get(target)
                .and_then(|&t| elements[t as usize].node)
                .ok_or_else(|| {
                    inconsistent(format!("{name}.{path}: bad contentReference {target}"))
                })?;
            let element = &mut elements[index[path] as usize];
            element.node = Some(node);
            element.types = vec![ElementType::Inline];
        }
    }

    // Attach each element to its parent's node.
    for i in 0..elements.len() {
        let parent = match elements[i].path.rsplit_once('.') {
            None => ROOT_NODE,
            Some((parent, _)) => index
                .get(parent)
                .and_then(|&p| elements[p as usize].node)
                .ok_or_else(|| {
                    inconsistent(format!(
                        "{name}.{}: parent {parent} has no children",
                        elements[i].path
                    ))
                })?,
        };
        let element = &mut elements[i];
        element.parent = parent;
        if element.min > 0 {
            nodes[parent as usize].required.push(i as u32);
        }
        if !element.choice {
            nodes[parent as usize].children.push(ChildKey {
                key: element.name.clone(),
                element: i as u32,
                type_index: 0,
            });
        }
    }

    Ok(TypeDef {
        name: name.into(),
        kind,
        wire_name: raw.base.unwrap_or(name).into(),
        elements,
        nodes,
    })
}

/// Expands every choice element into one key per type (`value` + `Quantity`).
fn fill_choice_keys(ty: &mut TypeDef, wire_names: &[Box<str>]) -> Result<(), DefinitionsError> {
    for i in 0..ty.elements.len() {
        if !ty.elements[i].choice {
            continue;
        }
        let parent = ty.elements[i].parent;
        let mut keys = Vec::with_capacity(ty.elements[i].types.len());
        for (type_index, t) in ty.elements[i].types.iter().enumerate() {
            let suffix = match t {
                ElementType::Primitive(p) => p.name(),
                ElementType::Complex(id) => &*wire_names[id.0 as usize],
                ElementType::Inline | ElementType::Resource => {
                    return Err(inconsistent(format!(
                        "{}.{}: choice of an inline or resource type",
                        ty.name, ty.elements[i].path
                    )))
                }
            };
            let key = format!("{}{}", ty.elements[i].name, capitalize(suffix));
            ty.nodes[parent as usize].children.push(ChildKey {
                key: key.as_str().into(),
                element: i as u32,
                type_index: type_index as u8,
            });
            keys.push(ChoiceKey {
                shadow: format!("_{key}").into(),
                key: key.into(),
            });
        }
        ty.elements[i].choice_keys = keys;
    }
    for node in &mut ty.nodes {
        node.children.sort_by(|a, b| a.key.cmp(&b.key));
        if let Some(w) = node.children.windows(2).find(|w| w[0].key == w[1].key) {
            return Err(inconsistent(format!(
                "{}: two elements answer to the JSON key {}",
                ty.name, w[0].key
            )));
        }
        node.index = node
            .children
            .iter()
            .enumerate()
            .map(|(i, c)| (c.key.clone(), i as u32))
            .collect();
    }
    Ok(())
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn parses_fast() {
        let start = Instant::now();
        let defs = Definitions::from_json(R4_JSON).unwrap();
        let elapsed = start.elapsed();
        println!(
            "parsed r4-definitions.json ({} bytes, {} types) in {elapsed:?}",
            R4_JSON.len(),
            defs.types.len()
        );
        // The whole server must start in under a second, unoptimised builds included.
        assert!(elapsed.as_millis() < 1000, "parse took {elapsed:?}");
    }

    #[test]
    fn knows_every_resource_type() {
        let defs = r4();
        assert_eq!(defs.resource_types().count(), 146);
        assert!(defs.is_resource_type("Patient"));
        assert!(defs.is_resource_type("Bundle"));
        assert!(!defs.is_resource_type("DomainResource"));
        assert!(!defs.is_resource_type("HumanName"));
        assert_eq!(defs.fhir_version(), "4.0.1");
    }

    #[test]
    fn expands_choices_and_inline_elements() {
        let defs = r4();
        let obs = defs.type_def(defs.resource_type("Observation").unwrap());
        let key = obs.child(ROOT_NODE, "valueQuantity").unwrap();
        let value = obs.element(key.element);
        assert_eq!(&*value.path, "value[x]");
        assert!(value.choice);
        assert!(obs.child(ROOT_NODE, "value").is_none());
        assert!(obs.child(ROOT_NODE, "valueAge").is_none());

        let patient = defs.type_def(defs.resource_type("Patient").unwrap());
        let contact = patient.element(patient.child(ROOT_NODE, "contact").unwrap().element);
        assert_eq!(contact.max, Max::Unbounded);
        let name = patient.child(contact.node.unwrap(), "name").unwrap();
        assert_eq!(&*patient.element(name.element).path, "contact.name");
    }

    #[test]
    fn summary_flags() {
        let defs = r4();
        let patient = defs.type_def(defs.resource_type("Patient").unwrap());
        let flag =
            |ty: &TypeDef, node, key| ty.element(ty.child(node, key).unwrap().element).summary;
        assert!(flag(patient, ROOT_NODE, "birthDate"));
        assert!(flag(patient, ROOT_NODE, "deceasedBoolean"));
        assert!(!flag(patient, ROOT_NODE, "text"));
        assert!(!flag(patient, ROOT_NODE, "contact"));
        let link = patient.element(patient.child(ROOT_NODE, "link").unwrap().element);
        assert!(link.summary);
        assert!(flag(patient, link.node.unwrap(), "other"));
        assert!(!flag(patient, link.node.unwrap(), "id"));
        let attachment = defs.type_def(defs.type_id("Attachment").unwrap());
        assert!(flag(attachment, ROOT_NODE, "url"));
        assert!(!flag(attachment, ROOT_NODE, "data"));
        assert_eq!(
            defs.types
                .iter()
                .flat_map(|t| &t.elements)
                .filter(|e| e.summary)
                .count(),
            3269
        );
    }

    #[test]
    fn content_references_share_children() {
        let defs = r4();
        let q = defs.type_def(defs.resource_type("Questionnaire").unwrap());
        let item = q.element(q.child(ROOT_NODE, "item").unwrap().element);
        let nested = q.element(q.child(item.node.unwrap(), "item").unwrap().element);
        assert_eq!(nested.node, item.node);
    }

    #[test]
    fn simple_quantity_is_written_as_quantity() {
        let defs = r4();
        let dosage = defs.type_def(defs.type_id("Dosage").unwrap());
        let rate = dosage.element(
            dosage
                .elements
                .iter()
                .position(|e| &*e.path == "doseAndRate.dose[x]")
                .unwrap() as u32,
        );
        assert!(rate.choice_keys.iter().any(|k| &*k.key == "doseQuantity"));
        let sq = defs.type_def(defs.type_id("SimpleQuantity").unwrap());
        assert_eq!(&*sq.wire_name, "Quantity");
    }

    #[test]
    fn required_value_sets_are_expanded() {
        let defs = r4();
        let gender = defs
            .valueset("http://hl7.org/fhir/ValueSet/administrative-gender")
            .unwrap();
        assert!(gender.contains("female"));
        assert!(!gender.contains("F"));
        assert_eq!(
            gender
                .codes_in("http://hl7.org/fhir/administrative-gender")
                .map(<[_]>::len),
            Some(4)
        );
        // UCUM and BCP-13 cannot be expanded from the package.
        assert!(defs
            .valueset("http://hl7.org/fhir/ValueSet/mimetypes")
            .is_none());
    }

    #[test]
    fn patient_compartment() {
        let defs = r4();
        assert_eq!(
            defs.patient_compartment_paths("Observation"),
            ["performer", "subject"]
        );
        assert_eq!(defs.patient_compartment_paths("Patient"), ["link.other"]);
        assert_eq!(
            defs.patient_compartment_paths("Appointment"),
            ["participant.actor"]
        );
        assert!(defs.patient_compartment_paths("Organization").is_empty());
    }
}
