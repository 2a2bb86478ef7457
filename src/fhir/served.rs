//! The resource types this server serves, read from `fhir-profiles/served-types.txt`.

use std::sync::OnceLock;

const SERVED_TYPES: &str = include_str!("../../fhir-profiles/served-types.txt");

/// The served types, in the file's order.
pub fn served_types() -> &'static [&'static str] {
    static TYPES: OnceLock<Vec<&'static str>> = OnceLock::new();
    TYPES.get_or_init(|| {
        SERVED_TYPES
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

pub fn is_served(resource_type: &str) -> bool {
    served_types().contains(&resource_type)
}
