//! Tests of the search query parser: one per feature and per error, asserting whole structures.

use super::*;
use crate::fhir::instant::parse_instant;
use crate::fhir::search::r4;

const BASE: &str = "http://host:8080/fhir";

fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
    query
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn parse_on(types: &[&str], query: &[(&str, &str)]) -> Result<SearchQuery, QueryError> {
    parse(r4(), types, &pairs(query), BASE, false)
}

fn lenient(types: &[&str], query: &[(&str, &str)]) -> Result<SearchQuery, QueryError> {
    parse(r4(), types, &pairs(query), BASE, true)
}

/// The clause of a one-parameter search on `ty`.
fn one(ty: &str, name: &str, value: &str) -> Clause {
    let q = parse_on(&[ty], &[(name, value)]).unwrap();
    assert_eq!(q.clauses.len(), 1, "{q:?}");
    q.clauses.into_iter().next().unwrap()
}

/// The error of a one-parameter search on `ty`.
fn error(ty: &str, name: &str, value: &str) -> QueryError {
    parse_on(&[ty], &[(name, value)]).unwrap_err()
}

fn key(code: &str, kind: ParamType) -> ParamKey {
    ParamKey {
        code: code.into(),
        kind,
    }
}

fn matching(code: &str, kind: ParamType, values: Vec<Value>) -> Clause {
    Clause::Match {
        param: key(code, kind),
        negate: false,
        values,
    }
}

fn string(mode: StringMode, text: &str) -> Value {
    Value::String {
        mode,
        text: text.into(),
    }
}

fn token(system: SystemMatch, code: Option<&str>) -> Value {
    Value::Token {
        system,
        code: code.map(str::to_string),
    }
}

fn is(system: &str) -> SystemMatch {
    SystemMatch::Is(system.into())
}

fn reference(ty: Option<&str>, id: &str, version: Option<&str>) -> Value {
    Value::Reference {
        resource_type: ty.map(str::to_string),
        id: id.into(),
        version: version.map(str::to_string),
    }
}

fn micros(text: &str) -> i64 {
    parse_instant(text).unwrap()
}

fn date(prefix: Prefix, low: &str, high: &str) -> DateValue {
    DateValue {
        prefix,
        low: micros(low),
        high: micros(high),
    }
}

fn number(prefix: Prefix, value: f64, half: f64) -> NumberValue {
    NumberValue {
        prefix,
        value,
        low: value - half,
        high: value + half,
    }
}

fn assert_error(e: &QueryError, param: &str, kind: QueryErrorKind, message: &str) {
    assert_eq!(
        (e.param.as_str(), e.kind, e.message.as_str()),
        (param, kind, message)
    );
}

// --- names, values, escapes ----------------------------------------------------------------

#[test]
fn a_type_search_yields_its_type_and_the_applied_parameters() {
    let q = parse_on(
        &["Patient"],
        &[("name", "Élodie  DUPONT"), ("_count", "010")],
    )
    .unwrap();
    assert_eq!(
        q,
        SearchQuery {
            types: vec!["Patient".into()],
            clauses: vec![matching(
                "name",
                ParamType::String,
                vec![string(StringMode::StartsWith, "elodie dupont")]
            )],
            count: Some(10),
            applied: vec![
                ("name".into(), "Élodie  DUPONT".into()),
                ("_count".into(), "10".into())
            ],
            ..SearchQuery::default()
        }
    );
}

#[test]
fn commas_are_or_and_repeated_parameters_are_and() {
    let q = parse_on(&["Patient"], &[("given", "Ann,Bob"), ("given", "Cy")]).unwrap();
    assert_eq!(
        q.clauses,
        vec![
            matching(
                "given",
                ParamType::String,
                vec![
                    string(StringMode::StartsWith, "ann"),
                    string(StringMode::StartsWith, "bob")
                ]
            ),
            matching(
                "given",
                ParamType::String,
                vec![string(StringMode::StartsWith, "cy")]
            ),
        ]
    );
}

#[test]
fn escapes_protect_separators_and_backslashes() {
    assert_eq!(
        one("Patient", "name:exact", r"a\,b,c\\d,e\|f\$g,h\xi\"),
        matching(
            "name",
            ParamType::String,
            vec![
                string(StringMode::Exact, "a,b"),
                string(StringMode::Exact, r"c\d"),
                string(StringMode::Exact, "e|f$g"),
                // Any other backslash is kept as written.
                string(StringMode::Exact, r"h\xi\"),
            ]
        )
    );
    assert_eq!(
        one("Patient", "identifier", r"urn:a\|b|12\,3\$4,x"),
        matching(
            "identifier",
            ParamType::Token,
            vec![
                token(is("urn:a|b"), Some("12,3$4")),
                token(SystemMatch::Any, Some("x"))
            ]
        )
    );
}

#[test]
fn an_empty_value_is_an_error_naming_the_parameter_and_ignored_when_lenient() {
    let e = error("Observation", "code", "");
    assert_error(
        &e,
        "code",
        QueryErrorKind::Empty,
        "code: empty value (give a value, or leave the parameter out)",
    );
    // Blank text normalises to nothing: empty too.
    assert_eq!(error("Patient", "name", "  ").kind, QueryErrorKind::Empty);
    let e = error("Observation", "code", "a,,b");
    assert_error(
        &e,
        "code",
        QueryErrorKind::Invalid,
        r#"code: empty value in the list "a,,b" (escape a literal comma as \,)"#,
    );
    let q = lenient(&["Observation"], &[("code", ""), ("status", "final")]).unwrap();
    assert_eq!(q.ignored, ["code"]);
    assert_eq!(q.applied, [("status".to_string(), "final".to_string())]);
}

#[test]
fn unknown_parameters_fail_or_are_ignored_when_lenient() {
    let e = error("Observation", "foo", "1");
    assert_error(
        &e,
        "foo",
        QueryErrorKind::Unknown,
        r#"unknown search parameter "foo" for Observation"#,
    );
    let q = lenient(
        &["Observation"],
        &[
            ("foo", "1"),
            ("code:exact", "x"),
            ("code:in", "http://vs"),
            ("status", "final"),
        ],
    )
    .unwrap();
    assert_eq!(q.ignored, ["foo", "code:exact", "code:in"]);
    assert_eq!(
        q.clauses,
        [matching(
            "status",
            ParamType::Token,
            vec![token(SystemMatch::Any, Some("final"))]
        )]
    );
}

#[test]
fn lenient_handling_still_rejects_invalid_values() {
    let e = lenient(&["Observation"], &[("date", "2026-13")]).unwrap_err();
    assert_eq!(
        (e.param.as_str(), e.kind),
        ("date", QueryErrorKind::Invalid)
    );
    let e = lenient(&["Observation"], &[("_count", "x")]).unwrap_err();
    assert_eq!(e.kind, QueryErrorKind::Invalid);
}

#[test]
fn unsupported_parameters_are_named() {
    for name in [
        "_text",
        "_content",
        "_filter",
        "_query",
        "_list",
        "_contained",
        "_containedType",
    ] {
        let e = error("Observation", name, "x");
        assert_error(
            &e,
            name,
            QueryErrorKind::NotSupported,
            &format!("search parameter \"{name}\" is not supported by this server"),
        );
        let q = lenient(&["Observation"], &[(name, "x")]).unwrap();
        assert_eq!(q.ignored, [name]);
        assert!(q.clauses.is_empty() && q.applied.is_empty());
    }
}

#[test]
fn format_and_pretty_are_silently_ignored_and_cursor_passes_through() {
    let q = parse_on(
        &["Patient"],
        &[
            ("_format", "json"),
            ("_pretty", "true"),
            ("_cursor", "abc=="),
            ("", ""),
        ],
    )
    .unwrap();
    assert_eq!(
        q,
        SearchQuery {
            types: vec!["Patient".into()],
            cursor: Some("abc==".into()),
            ..SearchQuery::default()
        }
    );
}

// --- string -------------------------------------------------------------------------------

#[test]
fn string_modifiers() {
    assert_eq!(
        one("Patient", "family:exact", "Lefèvre"),
        matching(
            "family",
            ParamType::String,
            vec![string(StringMode::Exact, "Lefèvre")]
        )
    );
    assert_eq!(
        one("Patient", "family:contains", "FÈV"),
        matching(
            "family",
            ParamType::String,
            vec![string(StringMode::Contains, "fev")]
        )
    );
}

#[test]
fn modifiers_of_another_kind_are_refused() {
    let e = error("Observation", "code:exact", "x");
    assert_error(
        &e,
        "code:exact",
        QueryErrorKind::Unknown,
        r#"modifier :exact is not allowed on token parameter "code" (accepted: :not, :text, :of-type, :missing)"#,
    );
    let e = error("Patient", "birthdate:below", "2026");
    assert_error(
        &e,
        "birthdate:below",
        QueryErrorKind::Unknown,
        r#"modifier :below is not allowed on date parameter "birthdate" (accepted: :missing)"#,
    );
}

// --- token --------------------------------------------------------------------------------

#[test]
fn token_forms() {
    assert_eq!(
        one(
            "Observation",
            "code",
            "8480-6,http://loinc.org|8462-4,|x,http://loinc.org|"
        ),
        matching(
            "code",
            ParamType::Token,
            vec![
                token(SystemMatch::Any, Some("8480-6")),
                token(is("http://loinc.org"), Some("8462-4")),
                token(SystemMatch::Absent, Some("x")),
                token(is("http://loinc.org"), None),
            ]
        )
    );
}

#[test]
fn booleans_are_tokens() {
    assert_eq!(
        one("Patient", "active", "true"),
        matching(
            "active",
            ParamType::Token,
            vec![token(SystemMatch::Any, Some("true"))]
        )
    );
}

#[test]
fn token_not_negates_the_clause() {
    assert_eq!(
        one("Observation", "status:not", "cancelled,entered-in-error"),
        Clause::Match {
            param: key("status", ParamType::Token),
            negate: true,
            values: vec![
                token(SystemMatch::Any, Some("cancelled")),
                token(SystemMatch::Any, Some("entered-in-error"))
            ],
        }
    );
}

#[test]
fn token_text_is_normalised_and_keeps_bars() {
    assert_eq!(
        one("Observation", "code:text", "Pression  Artérielle|x"),
        matching(
            "code",
            ParamType::Token,
            vec![Value::TokenText("pression arterielle|x".into())]
        )
    );
}

#[test]
fn token_of_type() {
    assert_eq!(
        one(
            "Patient",
            "identifier:of-type",
            "http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053"
        ),
        matching(
            "identifier",
            ParamType::Token,
            vec![Value::TokenOfType {
                type_system: "http://terminology.hl7.org/CodeSystem/v2-0203".into(),
                type_code: "MR".into(),
                value: "446053".into(),
            }]
        )
    );
    let e = error("Patient", "identifier:of-type", "MR|446053");
    assert_error(
        &e,
        "identifier:of-type",
        QueryErrorKind::Invalid,
        r#"identifier:of-type: "MR|446053" is not valid for :of-type (expected type-system|type-code|value)"#,
    );
}

#[test]
fn malformed_tokens_are_refused() {
    let e = error("Observation", "code", "a|b|c");
    assert_error(
        &e,
        "code",
        QueryErrorKind::Invalid,
        r#"code: "a|b|c" is not a valid token (expected code, system|code, |code or system|; escape a literal | as \|)"#,
    );
    assert_eq!(
        error("Observation", "code", "|").kind,
        QueryErrorKind::Invalid
    );
}

#[test]
fn terminology_modifiers_are_not_supported() {
    for m in ["in", "not-in", "above", "below"] {
        let name = format!("code:{m}");
        let e = error("Observation", &name, "http://loinc.org|8480-6");
        assert_error(
            &e,
            &name,
            QueryErrorKind::NotSupported,
            &format!("modifier :{m} on token parameter \"code\" is not supported by this server"),
        );
    }
}

#[test]
fn missing_takes_true_or_false() {
    assert_eq!(
        one("Observation", "value-quantity:missing", "true"),
        Clause::Missing {
            param: key("value-quantity", ParamType::Quantity),
            missing: true
        }
    );
    assert_eq!(
        one("Patient", "general-practitioner:missing", "false"),
        Clause::Missing {
            param: key("general-practitioner", ParamType::Reference),
            missing: false
        }
    );
    let e = error("Observation", "code:missing", "yes");
    assert_error(
        &e,
        "code:missing",
        QueryErrorKind::Invalid,
        r#"code:missing: :missing takes true or false, got "yes""#,
    );
    assert_eq!(
        error("Observation", "code:missing", "true,false").kind,
        QueryErrorKind::Invalid
    );
}

// --- reference ----------------------------------------------------------------------------

#[test]
fn reference_forms() {
    assert_eq!(
        one(
            "Observation",
            "subject",
            "Patient/1,Patient/2/_history/3,9,http://host:8080/fhir/Group/g1,\
             http://host:8080/fhir/Patient/p/_history/1"
        ),
        matching(
            "subject",
            ParamType::Reference,
            vec![
                reference(Some("Patient"), "1", None),
                reference(Some("Patient"), "2", Some("3")),
                // Several targets: any type.
                reference(None, "9", None),
                reference(Some("Group"), "g1", None),
                reference(Some("Patient"), "p", Some("1")),
            ]
        )
    );
    // A single target gives the type of a bare id.
    assert_eq!(
        one("Patient", "organization", "o1"),
        matching(
            "organization",
            ParamType::Reference,
            vec![reference(Some("Organization"), "o1", None)]
        )
    );
}

#[test]
fn other_absolute_references_are_urls() {
    assert_eq!(
        one(
            "Observation",
            "subject",
            "http://other/fhir/Patient/1,urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0,\
             http://host:8080/fhirx/Patient/1"
        ),
        matching(
            "subject",
            ParamType::Reference,
            vec![
                Value::ReferenceUrl("http://other/fhir/Patient/1".into()),
                Value::ReferenceUrl("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0".into()),
                Value::ReferenceUrl("http://host:8080/fhirx/Patient/1".into()),
            ]
        )
    );
    // The base URL is compared without its trailing slash.
    let q = parse(
        r4(),
        &["Observation"],
        &pairs(&[("subject", "http://host:8080/fhir/Patient/1")]),
        "http://host:8080/fhir/",
        false,
    )
    .unwrap();
    assert_eq!(
        q.clauses,
        [matching(
            "subject",
            ParamType::Reference,
            vec![reference(Some("Patient"), "1", None)]
        )]
    );
}

#[test]
fn reference_type_modifier() {
    assert_eq!(
        one("Observation", "subject:Patient", "1,Patient/2"),
        matching(
            "subject",
            ParamType::Reference,
            vec![
                reference(Some("Patient"), "1", None),
                reference(Some("Patient"), "2", None)
            ]
        )
    );
    let e = error("Observation", "subject:Patient", "Group/2");
    assert_error(
        &e,
        "subject:Patient",
        QueryErrorKind::Invalid,
        r#"subject:Patient: "Group/2" does not match the modifier :Patient"#,
    );
    let e = error("Observation", "subject:Practitioner", "1");
    assert_error(
        &e,
        "subject:Practitioner",
        QueryErrorKind::Invalid,
        "subject:Practitioner: Practitioner is not a target type of \"subject\" (accepted: \
         Device, Group, Location, Patient)",
    );
    let e = error("Observation", "subject:Foo", "1");
    assert_eq!(e.kind, QueryErrorKind::Unknown);
}

#[test]
fn invalid_references_are_refused() {
    let e = error("Observation", "subject", "Organization/1");
    assert_error(
        &e,
        "subject",
        QueryErrorKind::Invalid,
        r#"subject: "Organization/1": Organization is not a target type of this parameter (accepted: Device, Group, Location, Patient)"#,
    );
    let e = error("Observation", "subject", "a/b/c");
    assert_error(
        &e,
        "subject",
        QueryErrorKind::Invalid,
        r#"subject: "a/b/c" is not a valid reference (expected Type/id, Type/id/_history/version, id, or an absolute URL)"#,
    );
    assert_eq!(
        error("Observation", "subject", "Foo/1").message,
        r#"subject: "Foo/1": unknown resource type "Foo""#
    );
    assert_eq!(
        error("Observation", "subject", "http://host:8080/fhir/metadata").kind,
        QueryErrorKind::Invalid
    );
    assert_eq!(
        error("Observation", "subject", "a b").kind,
        QueryErrorKind::Invalid
    );
}

#[test]
fn reference_identifier() {
    assert_eq!(
        one(
            "Observation",
            "subject:identifier",
            r"urn:oid:1.2|123,|456,789"
        ),
        matching(
            "subject",
            ParamType::Reference,
            vec![
                Value::ReferenceIdentifier {
                    system: is("urn:oid:1.2"),
                    value: "123".into()
                },
                Value::ReferenceIdentifier {
                    system: SystemMatch::Absent,
                    value: "456".into()
                },
                Value::ReferenceIdentifier {
                    system: SystemMatch::Any,
                    value: "789".into()
                },
            ]
        )
    );
    assert_eq!(
        error("Observation", "subject:identifier", "urn:oid:1.2|").kind,
        QueryErrorKind::Invalid
    );
}

// --- date ---------------------------------------------------------------------------------

#[test]
fn dates_of_every_precision_and_prefix() {
    assert_eq!(
        one(
            "Observation",
            "date",
            "2026,ge2026-03,lt2026-03-05,sa2026-03-05T10:00:00+01:00,eb2026-03-05T10:00:00Z,\
             ne2026-03-05T10:00:00,gt2026-03-05T10:00:00.25-02:30,le2026-12-31,eq2026"
        ),
        matching(
            "date",
            ParamType::Date,
            vec![
                Value::Date(date(
                    Prefix::Eq,
                    "2026-01-01T00:00:00Z",
                    "2027-01-01T00:00:00Z"
                )),
                Value::Date(date(
                    Prefix::Ge,
                    "2026-03-01T00:00:00Z",
                    "2026-04-01T00:00:00Z"
                )),
                Value::Date(date(
                    Prefix::Lt,
                    "2026-03-05T00:00:00Z",
                    "2026-03-06T00:00:00Z"
                )),
                Value::Date(date(
                    Prefix::Sa,
                    "2026-03-05T09:00:00Z",
                    "2026-03-05T09:00:01Z"
                )),
                Value::Date(date(
                    Prefix::Eb,
                    "2026-03-05T10:00:00Z",
                    "2026-03-05T10:00:01Z"
                )),
                // No zone: UTC, as at indexing.
                Value::Date(date(
                    Prefix::Ne,
                    "2026-03-05T10:00:00Z",
                    "2026-03-05T10:00:01Z"
                )),
                Value::Date(date(
                    Prefix::Gt,
                    "2026-03-05T12:30:00.25Z",
                    "2026-03-05T12:30:00.26Z"
                )),
                Value::Date(date(
                    Prefix::Le,
                    "2026-12-31T00:00:00Z",
                    "2027-01-01T00:00:00Z"
                )),
                Value::Date(date(
                    Prefix::Eq,
                    "2026-01-01T00:00:00Z",
                    "2027-01-01T00:00:00Z"
                )),
            ]
        )
    );
}

#[test]
fn ap_keeps_the_raw_interval() {
    assert_eq!(
        one("Patient", "birthdate", "ap2026-03-05"),
        matching(
            "birthdate",
            ParamType::Date,
            vec![Value::Date(date(
                Prefix::Ap,
                "2026-03-05T00:00:00Z",
                "2026-03-06T00:00:00Z"
            ))]
        )
    );
}

#[test]
fn invalid_dates_are_refused() {
    let e = error("Observation", "date", "2026-13");
    assert_error(
        &e,
        "date",
        QueryErrorKind::Invalid,
        r#"date: "2026-13" is not a valid date (expected [prefix]YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.sss][Z|(+|-)hh:mm], prefix one of eq ne gt lt ge le sa eb ap)"#,
    );
    for bad in [
        // A time needs seconds (the dateTime regex of the specification).
        "ge2026-03-05T10:00+01:00",
        "2026-03-05T10:00",
        "2026-03-05T10",
        "2026-02-30",
        "2026-03-05T24:00:00Z",
        "2026-03-05T10:00:00+15:00",
        "2026-03-05T10:00:00+14:30",
        "2026-03-05T10:00:00+01",
        "2026-03-05T10:00:00.Z",
        "2026-3-5",
        "xx2026",
        "today",
    ] {
        let e = error("Observation", "date", bad);
        assert_eq!(e.kind, QueryErrorKind::Invalid, "{bad}");
    }
}

// --- number, quantity, uri ----------------------------------------------------------------

#[test]
fn numbers_with_prefixes_precision_and_exponents() {
    // R4 defines no number parameter on the served types: a one-parameter table.
    let json = r#"{"fhirVersion":"4.0.1","params":[{"base":"RiskAssessment","code":"probability",
        "expression":"RiskAssessment.prediction.probability","type":"number",
        "url":"http://example.org/probability"}]}"#;
    let table = SearchParams::from_json(json, crate::fhir::definitions::r4()).unwrap();
    let q = parse(
        &table,
        &["RiskAssessment"],
        &pairs(&[("probability", "5.4,ge100,lt1e2,-1.5E-1,ap0.80")]),
        BASE,
        false,
    )
    .unwrap();
    assert_eq!(
        q.clauses,
        [matching(
            "probability",
            ParamType::Number,
            vec![
                Value::Number(number(Prefix::Eq, 5.4, 0.05)),
                Value::Number(number(Prefix::Ge, 100.0, 0.5)),
                Value::Number(number(Prefix::Lt, 100.0, 50.0)),
                Value::Number(number(Prefix::Eq, -0.15, 0.5 * 10f64.powi(-2))),
                Value::Number(number(Prefix::Ap, 0.8, 0.5 * 10f64.powi(-2))),
            ]
        )]
    );
    for bad in ["abc", "1.", ".5", "+1", "inf", "NaN", "1e", "ge"] {
        let e = parse(
            &table,
            &["RiskAssessment"],
            &pairs(&[("probability", bad)]),
            BASE,
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "probability: \"{bad}\" is not a valid number (expected [prefix]decimal, e.g. \
                 5.4, ge100, 1.5e3, prefix one of eq ne gt lt ge le sa eb ap)"
            )
        );
    }
}

#[test]
fn quantities() {
    assert_eq!(
        one(
            "Observation",
            "value-quantity",
            "5.4|http://unitsofmeasure.org|mg,le5.4||mg,gt100"
        ),
        matching(
            "value-quantity",
            ParamType::Quantity,
            vec![
                Value::Quantity {
                    number: number(Prefix::Eq, 5.4, 0.05),
                    system: is("http://unitsofmeasure.org"),
                    code: Some("mg".into())
                },
                Value::Quantity {
                    number: number(Prefix::Le, 5.4, 0.05),
                    system: SystemMatch::Any,
                    code: Some("mg".into())
                },
                Value::Quantity {
                    number: number(Prefix::Gt, 100.0, 0.5),
                    system: SystemMatch::Any,
                    code: None
                },
            ]
        )
    );
    for bad in ["5.4|mg", "5.4|http://unitsofmeasure.org|", "mg", "5.4|||"] {
        let e = error("Observation", "value-quantity", bad);
        assert_eq!(e.kind, QueryErrorKind::Invalid, "{bad}");
    }
}

#[test]
fn uris_exact_below_above() {
    let q = parse_on(
        &["Observation"],
        &[
            ("_profile", "http://x.org/a"),
            ("_profile:below", "http://x.org/"),
            ("_source:above", r"http://x.org/a/b\,c"),
        ],
    )
    .unwrap();
    let uri = |mode, text: &str| Value::Uri {
        mode,
        text: text.into(),
    };
    assert_eq!(
        q.clauses,
        [
            matching(
                "_profile",
                ParamType::Uri,
                vec![uri(UriMode::Exact, "http://x.org/a")]
            ),
            matching(
                "_profile",
                ParamType::Uri,
                vec![uri(UriMode::Below, "http://x.org/")]
            ),
            matching(
                "_source",
                ParamType::Uri,
                vec![uri(UriMode::Above, "http://x.org/a/b,c")]
            ),
        ]
    );
}

#[test]
fn common_parameters_tag_and_security_are_tokens() {
    let q = parse_on(
        &["Patient"],
        &[("_tag", "http://x|a"), ("_security:not", "http://y|R")],
    )
    .unwrap();
    assert_eq!(
        q.clauses,
        [
            matching(
                "_tag",
                ParamType::Token,
                vec![token(is("http://x"), Some("a"))]
            ),
            Clause::Match {
                param: key("_security", ParamType::Token),
                negate: true,
                values: vec![token(is("http://y"), Some("R"))]
            },
        ]
    );
}

// --- composite ----------------------------------------------------------------------------

#[test]
fn composites_parse_each_component_with_its_kind() {
    assert_eq!(
        one(
            "Observation",
            "code-value-quantity",
            "http://loinc.org|8480-6$lt60|http://unitsofmeasure.org|mm[Hg],8462-4$ge2.5"
        ),
        matching(
            "code-value-quantity",
            ParamType::Composite,
            vec![
                Value::Composite(vec![
                    token(is("http://loinc.org"), Some("8480-6")),
                    Value::Quantity {
                        number: number(Prefix::Lt, 60.0, 0.5),
                        system: is("http://unitsofmeasure.org"),
                        code: Some("mm[Hg]".into())
                    }
                ]),
                Value::Composite(vec![
                    token(SystemMatch::Any, Some("8462-4")),
                    Value::Quantity {
                        number: number(Prefix::Ge, 2.5, 0.05),
                        system: SystemMatch::Any,
                        code: None
                    }
                ]),
            ]
        )
    );
    assert_eq!(
        one("Observation", "code-value-date", "x$ge2026-03"),
        matching(
            "code-value-date",
            ParamType::Composite,
            vec![Value::Composite(vec![
                token(SystemMatch::Any, Some("x")),
                Value::Date(date(
                    Prefix::Ge,
                    "2026-03-01T00:00:00Z",
                    "2026-04-01T00:00:00Z"
                ))
            ])]
        )
    );
    assert_eq!(
        one("Observation", "code-value-string", r"x$Très\$cher"),
        matching(
            "code-value-string",
            ParamType::Composite,
            vec![Value::Composite(vec![
                token(SystemMatch::Any, Some("x")),
                string(StringMode::StartsWith, "tres$cher")
            ])]
        )
    );
}

#[test]
fn composite_reference_components_use_their_own_targets() {
    assert_eq!(
        one(
            "DocumentReference",
            "relationship",
            "replaces$7,appends$DocumentReference/8"
        ),
        matching(
            "relationship",
            ParamType::Composite,
            vec![
                Value::Composite(vec![
                    token(SystemMatch::Any, Some("replaces")),
                    reference(Some("DocumentReference"), "7", None)
                ]),
                Value::Composite(vec![
                    token(SystemMatch::Any, Some("appends")),
                    reference(Some("DocumentReference"), "8", None)
                ]),
            ]
        )
    );
}

#[test]
fn composites_need_every_component() {
    let e = error("Observation", "code-value-quantity", "8480-6");
    assert_error(
        &e,
        "code-value-quantity",
        QueryErrorKind::Invalid,
        r#"code-value-quantity: "8480-6" is not a valid composite value (expected 2 non-empty components separated by $: code$value-quantity)"#,
    );
    assert_eq!(
        error("Observation", "code-value-quantity", "8480-6$").kind,
        QueryErrorKind::Invalid
    );
    assert_eq!(
        error("Observation", "code-value-quantity", "8480-6$abc").message,
        "code-value-quantity: \"abc\" is not a valid number (expected [prefix]decimal, e.g. \
         5.4, ge100, 1.5e3, prefix one of eq ne gt lt ge le sa eb ap)"
    );
}

// --- chains and _has ----------------------------------------------------------------------

#[test]
fn chain_with_an_explicit_type() {
    assert_eq!(
        one("Observation", "subject:Patient.name", "dupont"),
        Clause::Chain {
            param: key("subject", ParamType::Reference),
            target_types: vec!["Patient".into()],
            inner: Box::new(matching(
                "name",
                ParamType::String,
                vec![string(StringMode::StartsWith, "dupont")]
            )),
        }
    );
}

#[test]
fn chain_targets_are_those_having_the_inner_parameter() {
    // Device, Group, Location, Patient: Location and Patient have `name`; all four have
    // `identifier`, and `_id`.
    let chain = |types: &[&str], inner: Clause| Clause::Chain {
        param: key("subject", ParamType::Reference),
        target_types: types.iter().map(|t| t.to_string()).collect(),
        inner: Box::new(inner),
    };
    assert_eq!(
        one("Observation", "subject.name", "x"),
        chain(
            &["Location", "Patient"],
            matching(
                "name",
                ParamType::String,
                vec![string(StringMode::StartsWith, "x")]
            )
        )
    );
    assert_eq!(
        one("Observation", "subject.identifier", "sys|1"),
        chain(
            &["Device", "Group", "Location", "Patient"],
            matching(
                "identifier",
                ParamType::Token,
                vec![token(is("sys"), Some("1"))]
            )
        )
    );
    assert_eq!(
        one("Observation", "subject._id", "a,b"),
        chain(
            &["Device", "Group", "Location", "Patient"],
            Clause::Id(vec!["a".into(), "b".into()])
        )
    );
}

#[test]
fn chains_nest_and_inner_parameters_take_modifiers() {
    assert_eq!(
        one(
            "Observation",
            "subject:Patient.organization.name:exact",
            "ACME"
        ),
        Clause::Chain {
            param: key("subject", ParamType::Reference),
            target_types: vec!["Patient".into()],
            inner: Box::new(Clause::Chain {
                param: key("organization", ParamType::Reference),
                target_types: vec!["Organization".into()],
                inner: Box::new(matching(
                    "name",
                    ParamType::String,
                    vec![string(StringMode::Exact, "ACME")]
                )),
            }),
        }
    );
    assert_eq!(
        one("Observation", "patient.birthdate:missing", "true"),
        Clause::Chain {
            param: key("patient", ParamType::Reference),
            target_types: vec!["Patient".into()],
            inner: Box::new(Clause::Missing {
                param: key("birthdate", ParamType::Date),
                missing: true
            }),
        }
    );
}

#[test]
fn chain_errors() {
    let e = error("Observation", "subject.foo", "x");
    assert_error(
        &e,
        "subject.foo",
        QueryErrorKind::Unknown,
        r#"none of the target types of "subject" (Device, Group, Location, Patient) has a search parameter "foo""#,
    );
    let e = error("Observation", "subject:Patient.foo", "x");
    assert_error(
        &e,
        "subject:Patient.foo",
        QueryErrorKind::Unknown,
        r#"unknown search parameter "foo" for Patient"#,
    );
    let e = error("Observation", "code.name", "x");
    assert_error(
        &e,
        "code.name",
        QueryErrorKind::Invalid,
        r#"code.name: "code" is a token parameter: only reference parameters can be chained"#,
    );
    let e = error("Observation", "subject:Organization.name", "x");
    assert_eq!(e.kind, QueryErrorKind::Invalid);
    // The inner parameter exists: its own error is reported.
    let e = error("Observation", "subject.name:foo", "x");
    assert_error(
        &e,
        "subject.name:foo",
        QueryErrorKind::Unknown,
        r#"modifier :foo is not allowed on string parameter "name" (accepted: :exact, :contains, :missing)"#,
    );
    let e = error("Observation", "subject.birthdate", "2026-13");
    assert_eq!(e.kind, QueryErrorKind::Invalid);
}

#[test]
fn has_reverse_chains() {
    assert_eq!(
        one("Patient", "_has:Observation:patient:code", "1234-5"),
        Clause::Has {
            source_type: "Observation".into(),
            param: key("patient", ParamType::Reference),
            inner: Box::new(matching(
                "code",
                ParamType::Token,
                vec![token(SystemMatch::Any, Some("1234-5"))]
            )),
        }
    );
}

#[test]
fn has_nests_and_takes_chains_and_modifiers() {
    assert_eq!(
        one(
            "Patient",
            "_has:Observation:patient:_has:AuditEvent:entity:agent:Practitioner",
            "p1"
        ),
        Clause::Has {
            source_type: "Observation".into(),
            param: key("patient", ParamType::Reference),
            inner: Box::new(Clause::Has {
                source_type: "AuditEvent".into(),
                param: key("entity", ParamType::Reference),
                inner: Box::new(matching(
                    "agent",
                    ParamType::Reference,
                    vec![reference(Some("Practitioner"), "p1", None)]
                )),
            }),
        }
    );
    assert_eq!(
        one("Patient", "_has:Observation:subject:performer.name", "x"),
        Clause::Has {
            source_type: "Observation".into(),
            param: key("subject", ParamType::Reference),
            inner: Box::new(Clause::Chain {
                param: key("performer", ParamType::Reference),
                target_types: vec![
                    "Organization".into(),
                    "Patient".into(),
                    "Practitioner".into(),
                    "RelatedPerson".into()
                ],
                inner: Box::new(matching(
                    "name",
                    ParamType::String,
                    vec![string(StringMode::StartsWith, "x")]
                )),
            }),
        }
    );
}

#[test]
fn has_errors() {
    let e = error("Patient", "_has:Observation:patient", "x");
    assert_error(
        &e,
        "_has:Observation:patient",
        QueryErrorKind::Invalid,
        "_has:Observation:patient: \"_has:Observation:patient\" is not a valid _has parameter \
         (expected _has:Type:reference:parameter, e.g. _has:Observation:patient:code)",
    );
    let e = error("Patient", "_has:Observation:encounter:code", "x");
    assert_error(
        &e,
        "_has:Observation:encounter:code",
        QueryErrorKind::Invalid,
        "_has:Observation:encounter:code: _has: Observation:encounter cannot point to Patient \
         (it points to Encounter, EpisodeOfCare)",
    );
    assert_eq!(
        error("Patient", "_has:Observation:code:code", "x").kind,
        QueryErrorKind::Invalid
    );
    assert_eq!(
        error("Patient", "_has:Foo:patient:code", "x").message,
        r#"_has: unknown resource type "Foo""#
    );
    assert_eq!(
        error("Patient", "_has:Observation:foo:code", "x").message,
        r#"_has: unknown search parameter "foo" for Observation"#
    );
    assert_eq!(
        error("Patient", "_has:Observation:patient:foo", "x").message,
        r#"unknown search parameter "foo" for Observation"#
    );
}

// --- _id, _lastUpdated --------------------------------------------------------------------

#[test]
fn id_and_last_updated() {
    let q = parse_on(
        &["Patient"],
        &[
            (r"_id", "a,b-1.2"),
            ("_lastUpdated", "ge2026-01-01,lt2026-02-01T00:00:00Z"),
        ],
    )
    .unwrap();
    assert_eq!(
        q.clauses,
        [
            Clause::Id(vec!["a".into(), "b-1.2".into()]),
            Clause::LastUpdated(vec![
                date(Prefix::Ge, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
                date(Prefix::Lt, "2026-02-01T00:00:00Z", "2026-02-01T00:00:01Z"),
            ]),
        ]
    );
    let e = error("Patient", "_id", "a b");
    assert_error(
        &e,
        "_id",
        QueryErrorKind::Invalid,
        r#"_id: "a b" is not a valid id (1 to 64 of A-Z a-z 0-9 - .)"#,
    );
    let e = error("Patient", "_id:not", "a");
    assert_error(
        &e,
        "_id:not",
        QueryErrorKind::Unknown,
        "modifier :not is not allowed on _id (it takes no modifier)",
    );
    assert_eq!(
        error("Patient", "_lastUpdated", "2026-13").kind,
        QueryErrorKind::Invalid
    );
}

// --- system search and _type --------------------------------------------------------------

const SYSTEM: &[&str] = &[
    "Patient",
    "Observation",
    "Immunization",
    "Device",
    "AuditEvent",
];

#[test]
fn system_search_without_type_searches_every_type() {
    let q = parse_on(SYSTEM, &[("_id", "1"), ("_lastUpdated", "2026")]).unwrap();
    assert_eq!(q.types, Vec::<String>::new());
    assert_eq!(q.clauses.len(), 2);
    let e = parse_on(SYSTEM, &[("name", "x")]).unwrap_err();
    assert_error(
        &e,
        "name",
        QueryErrorKind::Unknown,
        r#"search parameter "name" is not defined for Observation, Immunization, Device, AuditEvent: a search across several types needs it on every searched type"#,
    );
    let e = parse_on(SYSTEM, &[("_type", "Patient,Observation"), ("foo", "x")]).unwrap_err();
    assert_error(
        &e,
        "foo",
        QueryErrorKind::Unknown,
        r#"unknown search parameter "foo" for Patient, Observation"#,
    );
}

#[test]
fn type_restricts_a_system_search() {
    let q = parse_on(
        SYSTEM,
        &[("identifier", "x"), ("_type", "Patient,Device,Patient")],
    )
    .unwrap();
    assert_eq!(
        q,
        SearchQuery {
            types: vec!["Patient".into(), "Device".into()],
            clauses: vec![matching(
                "identifier",
                ParamType::Token,
                vec![token(SystemMatch::Any, Some("x"))]
            )],
            applied: vec![
                ("identifier".into(), "x".into()),
                ("_type".into(), "Patient,Device".into())
            ],
            ..SearchQuery::default()
        }
    );
}

#[test]
fn type_errors() {
    let e = parse_on(SYSTEM, &[("_type", "Foo")]).unwrap_err();
    assert_error(
        &e,
        "_type",
        QueryErrorKind::Unknown,
        r#"_type: unknown resource type "Foo""#,
    );
    let e = parse_on(SYSTEM, &[("_type", "Group")]).unwrap_err();
    assert_error(
        &e,
        "_type",
        QueryErrorKind::Unknown,
        "_type: Group cannot be searched here (accepted: Patient, Observation, Immunization, \
         Device, AuditEvent)",
    );
    let q = lenient(SYSTEM, &[("_type", "Foo"), ("_id", "1")]).unwrap();
    assert_eq!(
        (q.types.len(), q.ignored.clone()),
        (0, vec!["_type".to_string()])
    );
    assert_eq!(
        parse_on(SYSTEM, &[("_type", "Patient"), ("_type", "Device")])
            .unwrap_err()
            .message,
        "_type: _type may be given only once"
    );
}

#[test]
fn a_parameter_must_have_one_kind_on_every_searched_type() {
    let e = parse_on(
        SYSTEM,
        &[("_type", "Immunization,Device"), ("manufacturer", "x")],
    )
    .unwrap_err();
    assert_error(
        &e,
        "manufacturer",
        QueryErrorKind::Unknown,
        r#"search parameter "manufacturer" is a reference parameter on Immunization but a string parameter on Device: a search across several types needs one kind"#,
    );
}

#[test]
fn system_search_reference_targets_are_united() {
    // Observation:patient targets Group, Patient; Immunization:patient targets Patient.
    let q = parse_on(
        SYSTEM,
        &[("_type", "Observation,Immunization"), ("patient", "1")],
    )
    .unwrap();
    assert_eq!(
        q.clauses,
        [matching(
            "patient",
            ParamType::Reference,
            vec![reference(None, "1", None)]
        )]
    );
    let q = parse_on(
        SYSTEM,
        // Device:patient and AuditEvent:patient both target Patient only.
        &[("_type", "Device,AuditEvent"), ("patient", "1")],
    )
    .unwrap();
    assert_eq!(
        q.clauses,
        [matching(
            "patient",
            ParamType::Reference,
            vec![reference(Some("Patient"), "1", None)]
        )]
    );
}

// --- result parameters --------------------------------------------------------------------

#[test]
fn count() {
    let q = parse_on(&["Patient"], &[("_count", "0")]).unwrap();
    assert_eq!(q.count, Some(0));
    let q = parse_on(&["Patient"], &[("_count", "99999999999")]).unwrap();
    assert_eq!(q.count, Some(u32::MAX));
    for bad in ["x", "-1", "1.5", "", " 1"] {
        let e = error("Patient", "_count", bad);
        assert_error(
            &e,
            "_count",
            QueryErrorKind::Invalid,
            &format!("_count must be a non-negative integer, got \"{bad}\""),
        );
    }
    assert_eq!(
        parse_on(&["Patient"], &[("_count", "1"), ("_count", "2")])
            .unwrap_err()
            .kind,
        QueryErrorKind::Invalid
    );
    assert_eq!(
        error("Patient", "_count:missing", "1").kind,
        QueryErrorKind::Unknown
    );
}

#[test]
fn sort() {
    let q = parse_on(
        &["Observation"],
        &[("_sort", "-date,_id,-_lastUpdated,status")],
    )
    .unwrap();
    let param = |code: &str, kind| SortBy::Param(key(code, kind));
    assert_eq!(
        q.sort,
        [
            SortKey {
                by: param("date", ParamType::Date),
                descending: true
            },
            SortKey {
                by: SortBy::Id,
                descending: false
            },
            SortKey {
                by: SortBy::LastUpdated,
                descending: true
            },
            SortKey {
                by: param("status", ParamType::Token),
                descending: false
            },
        ]
    );
    assert_eq!(
        q.applied,
        [(
            "_sort".to_string(),
            "-date,_id,-_lastUpdated,status".to_string()
        )]
    );
}

#[test]
fn sort_errors() {
    let e = error("Observation", "_sort", "code-value-quantity");
    assert_error(
        &e,
        "_sort",
        QueryErrorKind::Invalid,
        r#"_sort: cannot sort by composite parameter "code-value-quantity""#,
    );
    let e = error("Observation", "_sort", "-foo");
    assert_error(
        &e,
        "_sort",
        QueryErrorKind::Unknown,
        r#"_sort: unknown search parameter "foo" for Observation"#,
    );
    assert_eq!(
        error("Observation", "_sort", "_text").kind,
        QueryErrorKind::NotSupported
    );
    for bad in ["-", "date,", "code:text", "subject.name"] {
        assert_eq!(
            error("Observation", "_sort", bad).kind,
            QueryErrorKind::Invalid,
            "{bad}"
        );
    }
    assert_eq!(
        error("Observation", "_sort", "").kind,
        QueryErrorKind::Empty
    );
}

#[test]
fn total_and_summary() {
    let q = parse_on(
        &["Patient"],
        &[("_total", "accurate"), ("_summary", "count")],
    )
    .unwrap();
    assert_eq!((q.total, q.summary), (Total::Accurate, Summary::Count));
    for (value, total) in [
        ("none", Total::None),
        ("estimate", Total::Estimate),
        ("accurate", Total::Accurate),
    ] {
        assert_eq!(
            parse_on(&["Patient"], &[("_total", value)]).unwrap().total,
            total
        );
    }
    for (value, summary) in [
        ("true", Summary::True),
        ("count", Summary::Count),
        ("data", Summary::Data),
        ("text", Summary::Text),
        ("false", Summary::False),
    ] {
        assert_eq!(
            parse_on(&["Patient"], &[("_summary", value)])
                .unwrap()
                .summary,
            summary
        );
    }
    assert_error(
        &error("Patient", "_total", "all"),
        "_total",
        QueryErrorKind::Invalid,
        r#"_total: "all" is not accepted (expected none, estimate or accurate)"#,
    );
    assert_error(
        &error("Patient", "_summary", "TRUE"),
        "_summary",
        QueryErrorKind::Invalid,
        r#"_summary: "TRUE" is not accepted (expected true, count, data, text or false)"#,
    );
}

#[test]
fn elements() {
    let q = parse_on(
        &["Patient"],
        &[("_elements", "identifier,birthDate,identifier")],
    )
    .unwrap();
    assert_eq!(q.elements, ["identifier", "birthDate"]);
    assert_eq!(
        q.applied,
        [("_elements".to_string(), "identifier,birthDate".to_string())]
    );
    assert_error(
        &error("Patient", "_elements", "name.given"),
        "_elements",
        QueryErrorKind::Invalid,
        r#"_elements: "name.given" is not a top-level element name (expected names such as identifier,name,birthDate separated by commas)"#,
    );
    for bad in ["Name", "a,", "na-me", "1a"] {
        assert_eq!(
            error("Patient", "_elements", bad).kind,
            QueryErrorKind::Invalid,
            "{bad}"
        );
    }
}

#[test]
fn includes() {
    let q = parse_on(
        &["Observation"],
        &[
            ("_include", "Observation:subject"),
            ("_include", "Observation:subject:Patient"),
            ("_include", "Observation:*"),
            ("_include:iterate", "Patient:organization"),
            ("_include:recurse", "Organization:partof:Organization"),
            ("_include", "Observation:subject"),
            ("_revinclude", "Provenance:target"),
            ("_revinclude:iterate", "Observation:subject:Patient"),
        ],
    )
    .unwrap();
    let inc = |source: &str, param: Option<&str>, target: Option<&str>, iterate| Include {
        source_type: source.into(),
        param: param.map(str::to_string),
        target_type: target.map(str::to_string),
        iterate,
    };
    assert_eq!(
        q.includes,
        [
            inc("Observation", Some("subject"), None, false),
            inc("Observation", Some("subject"), Some("Patient"), false),
            inc("Observation", None, None, false),
            inc("Patient", Some("organization"), None, true),
            inc("Organization", Some("partof"), Some("Organization"), true),
        ]
    );
    assert_eq!(
        q.revincludes,
        [
            inc("Provenance", Some("target"), None, false),
            inc("Observation", Some("subject"), Some("Patient"), true),
        ]
    );
    // `:recurse` is written as `:iterate`.
    assert_eq!(
        q.applied[4],
        (
            "_include:iterate".to_string(),
            "Organization:partof:Organization".to_string()
        )
    );
    let q = parse_on(&["Patient", "Device"], &[("_include", "*")]).unwrap();
    assert_eq!(
        q.includes,
        [
            inc("Patient", None, None, false),
            inc("Device", None, None, false)
        ]
    );
}

#[test]
fn include_errors() {
    let cases = [
        (
            "_include",
            "Observation:code",
            QueryErrorKind::Invalid,
            "_include: Observation:code is a token parameter, not a reference",
        ),
        (
            "_include",
            "Observation:foo",
            QueryErrorKind::Unknown,
            r#"_include: unknown search parameter "foo" for Observation"#,
        ),
        (
            "_include",
            "Foo:bar",
            QueryErrorKind::Unknown,
            r#"_include: unknown resource type "Foo""#,
        ),
        (
            "_include",
            "Observation:subject:Organization",
            QueryErrorKind::Invalid,
            "_include: Organization is not a target type of Observation:subject (accepted: \
             Device, Group, Location, Patient)",
        ),
        (
            "_include",
            "Patient:organization",
            QueryErrorKind::Invalid,
            "_include: Patient is not a searched type (Observation); use _include:iterate to \
             include from included resources",
        ),
        (
            "_include",
            "Observation",
            QueryErrorKind::Invalid,
            r#"_include: "Observation" is not valid (expected SourceType:parameter[:TargetType] or SourceType:*)"#,
        ),
        (
            "_revinclude",
            "Observation:encounter",
            QueryErrorKind::Invalid,
            "_revinclude: Observation:encounter cannot point to the searched types \
             (Observation); use _revinclude:iterate to include resources pointing to included \
             ones",
        ),
        (
            "_revinclude",
            "*",
            QueryErrorKind::NotSupported,
            "_revinclude: \"*\" is only supported on _include without :iterate; name the source \
             type (Type:* or Type:parameter)",
        ),
        (
            "_include:reverse",
            "Observation:subject",
            QueryErrorKind::Unknown,
            "modifier :reverse is not allowed on _include (accepted: :iterate)",
        ),
        (
            "_include",
            "",
            QueryErrorKind::Empty,
            "_include: empty value (give a value, or leave the parameter out)",
        ),
    ];
    for (name, value, kind, message) in cases {
        assert_error(&error("Observation", name, value), name, kind, message);
    }
}

#[test]
fn a_full_query_parses_to_the_whole_structure() {
    let q = parse_on(
        &["Observation"],
        &[
            ("subject:Patient", "http://host:8080/fhir/Patient/p1"),
            ("code", r"http://loinc.org|8480-6,http://loinc.org|8462-4"),
            ("date", "ge2026-03-05T10:00:00+01:00"),
            ("_has:Provenance:target:agent", "Practitioner/d1"),
            ("_sort", "-date"),
            ("_count", "20"),
            ("_total", "estimate"),
            ("_include", "Observation:subject:Patient"),
            ("_cursor", "c1"),
            ("_format", "json"),
        ],
    )
    .unwrap();
    assert_eq!(
        q,
        SearchQuery {
            types: vec!["Observation".into()],
            clauses: vec![
                matching(
                    "subject",
                    ParamType::Reference,
                    vec![reference(Some("Patient"), "p1", None)]
                ),
                matching(
                    "code",
                    ParamType::Token,
                    vec![
                        token(is("http://loinc.org"), Some("8480-6")),
                        token(is("http://loinc.org"), Some("8462-4"))
                    ]
                ),
                matching(
                    "date",
                    ParamType::Date,
                    vec![Value::Date(date(
                        Prefix::Ge,
                        "2026-03-05T09:00:00Z",
                        "2026-03-05T09:00:01Z"
                    ))]
                ),
                Clause::Has {
                    source_type: "Provenance".into(),
                    param: key("target", ParamType::Reference),
                    inner: Box::new(matching(
                        "agent",
                        ParamType::Reference,
                        vec![reference(Some("Practitioner"), "d1", None)]
                    )),
                },
            ],
            sort: vec![SortKey {
                by: SortBy::Param(key("date", ParamType::Date)),
                descending: true
            }],
            count: Some(20),
            total: Total::Estimate,
            summary: Summary::False,
            elements: vec![],
            includes: vec![Include {
                source_type: "Observation".into(),
                param: Some("subject".into()),
                target_type: Some("Patient".into()),
                iterate: false
            }],
            revincludes: vec![],
            cursor: Some("c1".into()),
            applied: vec![
                (
                    "subject:Patient".into(),
                    "http://host:8080/fhir/Patient/p1".into()
                ),
                (
                    "code".into(),
                    "http://loinc.org|8480-6,http://loinc.org|8462-4".into()
                ),
                ("date".into(), "ge2026-03-05T10:00:00+01:00".into()),
                (
                    "_has:Provenance:target:agent".into(),
                    "Practitioner/d1".into()
                ),
                ("_sort".into(), "-date".into()),
                ("_count".into(), "20".into()),
                ("_total".into(), "estimate".into()),
                ("_include".into(), "Observation:subject:Patient".into()),
            ],
            ignored: vec![],
        }
    );
}

#[test]
fn no_searched_type_is_an_error_not_a_panic() {
    let e = parse(r4(), &[], &pairs(&[("code", "x")]), BASE, false).unwrap_err();
    assert_eq!(
        (e.param.as_str(), e.kind),
        ("code", QueryErrorKind::Unknown)
    );
}

#[test]
fn hostile_requests_are_refused_before_any_work() {
    // A chain deeper than the limit: refused by counting, never resolved (resolution is
    // exponential in the depth when types branch).
    let deep = format!("{}name", "partof.".repeat(40));
    let e = error("Organization", &deep, "x");
    assert_eq!(e.kind, QueryErrorKind::Invalid);
    assert!(e.message.contains("at most 4 levels"), "{}", e.message);
    // Four levels are fine.
    assert!(parse_on(
        &["Organization"],
        &[("partof.partof.partof.partof.name", "x")]
    )
    .is_ok());
    let many = vec!["a"; MAX_VALUES + 1].join(",");
    let e = error("Patient", "_id", &many);
    assert!(e.message.contains("at most 200 values"), "{}", e.message);
    let too_many: Vec<(&str, &str)> = vec![("gender", "female"); MAX_PARAMETERS + 1];
    let e = parse_on(&["Patient"], &too_many).unwrap_err();
    assert!(e.message.contains("at most 64 parameters"), "{}", e.message);
    // Lenient handling does not lift the limits.
    assert!(lenient(&["Organization"], &[(deep.as_str(), "x")]).is_err());
}
