//! `docs/search-parameters.md`, generated from the parameter table this server runs on, so the
//! documentation cannot drift from the code: a test compares the file with [`markdown`] and
//! fails with the command that regenerates it.

use std::fmt::Write;

use super::params::{ParamType, SearchParams};

/// The modifiers the query parser accepts per parameter type (`fhir::search::query`).
pub fn modifiers(kind: ParamType) -> &'static str {
    match kind {
        ParamType::String => "`:exact`, `:contains`, `:missing`",
        ParamType::Token => "`:not`, `:text`, `:of-type` (identifiers), `:missing`",
        ParamType::Reference => "`:[Type]`, `:identifier`, `:missing`, chains `.param`",
        ParamType::Date | ParamType::Number | ParamType::Quantity => "`:missing`",
        ParamType::Uri => "`:below`, `:above`, `:missing`",
        ParamType::Composite | ParamType::Special => "none",
    }
}

/// The R4 code of a parameter type (`SearchParameter.type`).
pub fn kind_name(kind: ParamType) -> &'static str {
    match kind {
        ParamType::Number => "number",
        ParamType::Date => "date",
        ParamType::String => "string",
        ParamType::Token => "token",
        ParamType::Reference => "reference",
        ParamType::Composite => "composite",
        ParamType::Quantity => "quantity",
        ParamType::Uri => "uri",
        ParamType::Special => "special",
    }
}

/// The whole page, for the served `types`.
pub fn markdown(params: &SearchParams, types: &[&str]) -> String {
    let mut out = String::new();
    out.push_str(
        "# Search parameters\n\n\
         <!-- Generated from the code's own tables by `CARNET_BLESS=1 cargo test --lib reference_doc`; do not edit. -->\n\n\
         Every standard R4 search parameter of the served types, as this server indexes and \
         searches them. How values are indexed and matched: [search.md](search.md).\n\n\
         ## Modifiers and prefixes by type\n\n\
         | type | modifiers | prefixes |\n| --- | --- | --- |\n",
    );
    for kind in [
        ParamType::String,
        ParamType::Token,
        ParamType::Reference,
        ParamType::Date,
        ParamType::Number,
        ParamType::Quantity,
        ParamType::Uri,
        ParamType::Composite,
    ] {
        let prefixes = match kind {
            ParamType::Date | ParamType::Number | ParamType::Quantity => {
                "`eq` `ne` `gt` `lt` `ge` `le` `sa` `eb` `ap`"
            }
            ParamType::Composite => "per component",
            _ => "none",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {prefixes} |",
            kind_name(kind),
            modifiers(kind)
        );
    }
    out.push_str("\n## Parameters per resource type\n");
    for ty in types {
        let _ = write!(
            out,
            "\n### {ty}\n\n| parameter | type | expression |\n| --- | --- | --- |\n"
        );
        let mut rows: Vec<_> = params.for_type(ty).collect();
        rows.sort_by(|a, b| a.code.cmp(&b.code));
        for p in rows {
            let expression = match (&p.expression_text, p.unsupported()) {
                (_, Some(why)) => format!("not supported: {why}"),
                (Some(text), None) => format!("`{}`", text.replace('|', "\\|")),
                (None, None) => String::new(),
            };
            let kind = if p.components.is_empty() {
                kind_name(p.kind).to_string()
            } else {
                let parts: Vec<&str> = p.components.iter().map(|c| kind_name(c.kind)).collect();
                format!("composite ({})", parts.join(" $ "))
            };
            let _ = writeln!(out, "| `{}` | {kind} | {expression} |", p.code);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_list_the_parameters_the_code_serves() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/search-parameters.md");
        let expected = markdown(super::super::r4(), crate::fhir::served::served_types());
        if std::env::var_os("CARNET_BLESS").is_some() {
            std::fs::write(path, &expected).unwrap();
        }
        let actual = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            actual == expected,
            "docs/search-parameters.md is out of date; regenerate it with \
             `CARNET_BLESS=1 cargo test --lib reference_doc`"
        );
    }
}
