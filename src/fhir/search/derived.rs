//! Parameters whose values follow from other parameters of the same type, so that indexing
//! them would only repeat rows: R4's Observation has `combo-code` (`code | component.code`),
//! `code-value-quantity` (a composite over the Observation itself) and the like, which made
//! up half of a measurement's index rows. They are answered from the parameters they derive
//! from instead.
//!
//! Found by reading the definitions, not listed by hand: a parameter whose FHIRPath is the
//! union (`|`) of other parameters' expressions is their [`Derivation::Union`]; a composite
//! whose context is the resource itself has one context per resource, so it matches when every
//! component matches its defining parameter: a [`Derivation::Conjunction`].

use std::collections::HashMap;

use super::params::{ParamType, SearchParam};

/// How a parameter of a type is answered without rows of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Derivation {
    /// Its values are exactly those of these parameters together (codes, same kind).
    Union(Vec<String>),
    /// A composite over the resource itself: component `i` matches through parameter `i`
    /// (codes, in component order).
    Conjunction(Vec<String>),
}

/// The derivations among `params`, the parameters of `resource_type`, by code.
pub fn derivations(resource_type: &str, params: &[&SearchParam]) -> HashMap<String, Derivation> {
    let mut found = HashMap::new();
    for param in params {
        if param.unsupported().is_some() {
            continue;
        }
        if let Some(codes) = conjunction(resource_type, param, params) {
            found.insert(param.code.clone(), Derivation::Conjunction(codes));
        }
    }
    for param in params {
        if param.unsupported().is_some() || found.contains_key(&param.code) {
            continue;
        }
        if let Some(codes) = union(param, params, &found) {
            found.insert(param.code.clone(), Derivation::Union(codes));
        }
    }
    found
}

/// A composite whose expression is the resource type alone, each component defined by a
/// plain parameter of the type that evaluates the component's expression on the resource.
fn conjunction(
    resource_type: &str,
    param: &SearchParam,
    params: &[&SearchParam],
) -> Option<Vec<String>> {
    if param.kind != ParamType::Composite
        || param.expression_text.as_deref().map(str::trim) != Some(resource_type)
        || param.components.is_empty()
    {
        return None;
    }
    param
        .components
        .iter()
        .map(|component| {
            let plain = params.iter().find(|p| {
                p.url == component.definition
                    && p.kind == component.kind
                    && p.kind != ParamType::Composite
                    && p.unsupported().is_none()
            })?;
            // The defining parameter must read what the component reads.
            let relative = format!("{resource_type}.{}", component.expression_text.trim());
            let theirs = parts(plain.expression_text.as_deref()?);
            same_reading(&relative, &theirs).then(|| plain.code.clone())
        })
        .collect()
}

/// Whether the component expression (made absolute) reads what the parameter's parts read.
/// Only the forms R4 uses: `X.as(T)` against `(X as T)`, where the parameter may also accept
/// more types of the same choice (`value-quantity` adds SampledData, which holds no Quantity
/// value to match).
fn same_reading(component: &str, parameter_parts: &[String]) -> bool {
    let normal = |s: &str| -> String {
        let s = s.trim();
        let s = s
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or(s);
        match s.split_once(" as ") {
            Some((path, ty)) => format!("{}.as({})", path.trim(), ty.trim()),
            None => s.to_string(),
        }
    };
    let component = normal(component);
    let theirs: Vec<String> = parameter_parts.iter().map(|p| normal(p)).collect();
    theirs.first() == Some(&component)
        && theirs[1..].iter().all(|p| p.ends_with(".as(SampledData)"))
}

/// A parameter whose expression's parts are exactly covered by other parameters' parts.
fn union(
    param: &SearchParam,
    params: &[&SearchParam],
    found: &HashMap<String, Derivation>,
) -> Option<Vec<String>> {
    let mine = parts(param.expression_text.as_deref()?);
    if mine.len() < 2 {
        return None;
    }
    let mut members: Vec<(&SearchParam, Vec<String>)> = params
        .iter()
        .filter(|q| {
            q.code != param.code
                && q.kind == param.kind
                && q.unsupported().is_none()
                && !matches!(found.get(&q.code), Some(Derivation::Union(_)))
                && same_components(param, q)
        })
        .filter_map(|q| Some((*q, parts(q.expression_text.as_deref()?))))
        .filter(|(_, theirs)| theirs.len() < mine.len() && theirs.iter().all(|p| mine.contains(p)))
        .collect();
    // Larger members first, so that a member covering two parts wins over two single ones.
    members.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.code.cmp(&b.0.code)));
    let mut covered: Vec<&String> = Vec::new();
    let mut codes = Vec::new();
    for (q, theirs) in &members {
        if theirs.iter().any(|p| covered.contains(&p)) {
            continue;
        }
        covered.extend(theirs.iter());
        codes.push(q.code.clone());
    }
    (covered.len() == mine.len()).then_some(codes)
}

/// Composites are interchangeable only when their components read the same things.
fn same_components(a: &SearchParam, b: &SearchParam) -> bool {
    a.components.len() == b.components.len()
        && a.components
            .iter()
            .zip(&b.components)
            .all(|(x, y)| x.kind == y.kind && x.expression_text.trim() == y.expression_text.trim())
}

/// The top-level `|` operands of an expression, trimmed; parentheses and quotes respected.
fn parts(expression: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0usize, false, 0);
    for (i, c) in expression.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            '|' if !quoted && depth == 0 => {
                out.push(expression[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(expression[start..].trim().to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::search::r4;

    fn of(ty: &str) -> HashMap<String, Derivation> {
        let params: Vec<&SearchParam> = r4().for_type(ty).collect();
        derivations(ty, &params)
    }

    fn union_of(codes: &[&str]) -> Derivation {
        Derivation::Union(codes.iter().map(|c| c.to_string()).collect())
    }

    #[test]
    fn observation_combo_parameters_are_unions() {
        let d = of("Observation");
        assert_eq!(d["combo-code"], union_of(&["code", "component-code"]));
        assert_eq!(
            d["combo-value-quantity"],
            union_of(&["component-value-quantity", "value-quantity"])
        );
        assert_eq!(
            d["combo-code-value-quantity"],
            union_of(&["code-value-quantity", "component-code-value-quantity"])
        );
        assert_eq!(
            d["combo-data-absent-reason"],
            union_of(&["component-data-absent-reason", "data-absent-reason"])
        );
    }

    #[test]
    fn composites_over_the_resource_are_conjunctions() {
        let d = of("Observation");
        assert_eq!(
            d["code-value-quantity"],
            Derivation::Conjunction(vec!["code".into(), "value-quantity".into()])
        );
        assert_eq!(
            d["code-value-concept"],
            Derivation::Conjunction(vec!["code".into(), "value-concept".into()])
        );
        // Over each component, the grouping matters: indexed.
        assert!(!d.contains_key("component-code-value-quantity"));
        assert!(!d.contains_key("code"));
    }

    #[test]
    fn a_union_needs_every_part_covered() {
        // `Organization.name | Organization.alias`: no parameter reads the alias alone.
        assert!(!of("Organization").contains_key("name"));
        // `DocumentReference.masterIdentifier | DocumentReference.identifier`: same.
        assert!(!of("DocumentReference").contains_key("identifier"));
    }

    #[test]
    fn parts_respect_parentheses() {
        assert_eq!(
            parts("(A.value as Quantity) | A.b.where(c = 'x|y')"),
            vec!["(A.value as Quantity)", "A.b.where(c = 'x|y')"]
        );
    }
}
