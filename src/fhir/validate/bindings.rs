//! Required bindings: codes must come from the bound value set, when the package let us
//! expand it (see `fhir-profiles/README.md` for those it does not).
//!
//! Pure functions returning the diagnostic, if any; the walker decides where it points.

use serde_json::{Map, Value};

use crate::fhir::definitions::ValueSet;

/// Beyond this many codes a diagnostic names the value set instead of listing it.
const LISTED_CODES: usize = 25;

/// A `code` element bound to `vs`: any of its systems.
pub fn check_code(vs: &ValueSet, code: &str) -> Option<String> {
    if vs.contains(code) {
        return None;
    }
    Some(format!(
        "'{code}' is not in the required value set {}; {}",
        vs.url,
        expected(vs.codes(), vs.len(), &vs.url)
    ))
}

/// A `Coding` bound to `vs`. Only codings in one of the value set's systems are checked:
/// another system may be a translation, and a coding without system cannot be judged.
pub fn check_coding(vs: &ValueSet, coding: &Map<String, Value>) -> Option<String> {
    let system = coding.get("system")?.as_str()?;
    let code = coding.get("code")?.as_str()?;
    let codes = vs.codes_in(system)?;
    if codes.binary_search_by(|c| (**c).cmp(code)).is_ok() {
        return None;
    }
    Some(format!(
        "'{code}' is not a code of {system} allowed by the required value set {}; {}",
        vs.url,
        expected(codes.iter().map(|c| &**c), codes.len(), &vs.url)
    ))
}

fn expected<'a>(codes: impl Iterator<Item = &'a str>, count: usize, url: &str) -> String {
    if count <= LISTED_CODES {
        let list: Vec<&str> = codes.collect();
        format!("expected one of: {}", list.join(", "))
    } else {
        format!("expected one of the {count} codes listed at {url}")
    }
}
