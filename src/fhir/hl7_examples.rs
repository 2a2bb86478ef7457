//! Test support: the official HL7 examples, when `CARNET_HL7_EXAMPLES` points at the unpacked
//! npm package `hl7.fhir.r4.examples@4.0.1` (scripts/test sets it).

use std::path::PathBuf;

/// The package's JSON files, sorted; `None` (with a note on stdout) when the variable is unset.
pub(crate) fn files() -> Option<Vec<PathBuf>> {
    let Some(dir) = std::env::var_os("CARNET_HL7_EXAMPLES") else {
        println!("skipped: set CARNET_HL7_EXAMPLES to the unpacked hl7.fhir.r4.examples package");
        return None;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read CARNET_HL7_EXAMPLES={dir:?}: {e}"))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    Some(files)
}
