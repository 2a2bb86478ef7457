//! The resource types this server serves, read from `fhir-profiles/served-types.txt`, and the
//! R4 types it refuses to store, with their reasons, from `fhir-profiles/refused-types.txt`.

use std::sync::OnceLock;

const SERVED_TYPES: &str = include_str!("../../fhir-profiles/served-types.txt");
const REFUSED_TYPES: &str = include_str!("../../fhir-profiles/refused-types.txt");

fn lines(text: &'static str) -> impl Iterator<Item = &'static str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// The served types, in the file's order.
pub fn served_types() -> &'static [&'static str] {
    static TYPES: OnceLock<Vec<&'static str>> = OnceLock::new();
    TYPES.get_or_init(|| lines(SERVED_TYPES).collect())
}

pub fn is_served(resource_type: &str) -> bool {
    served_types().contains(&resource_type)
}

/// The R4 types this server refuses to store, each with the reason it gives.
pub fn refused_types() -> &'static [(&'static str, &'static str)] {
    static TYPES: OnceLock<Vec<(&'static str, &'static str)>> = OnceLock::new();
    TYPES.get_or_init(|| {
        lines(REFUSED_TYPES)
            .map(|l| {
                let (ty, why) = l.split_once('\t').unwrap_or((l, ""));
                (ty.trim(), why.trim())
            })
            .collect()
    })
}

/// Why `resource_type` is not stored, when it is an R4 type this server refuses.
pub fn refusal(resource_type: &str) -> Option<&'static str> {
    refused_types()
        .iter()
        .find(|(ty, _)| *ty == resource_type)
        .map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every R4 resource type is either served or refused with a reason, never both.
    #[test]
    fn every_r4_type_is_served_or_refused_with_a_reason() {
        let all: Vec<&str> = crate::fhir::definitions::r4().resource_types().collect();
        assert_eq!(all.len(), 146);
        for ty in &all {
            let served = is_served(ty);
            let refused = refusal(ty);
            assert!(
                served != refused.is_some(),
                "{ty}: served {served}, refused {refused:?}"
            );
            if let Some(why) = refused {
                assert!(why.len() > 20, "{ty}: the reason is too short: {why:?}");
            }
        }
        for ty in served_types() {
            assert!(
                all.contains(ty),
                "{ty} is served but not an R4 resource type"
            );
        }
        assert_eq!(served_types().len() + refused_types().len(), all.len());
    }
}
