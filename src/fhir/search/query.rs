//! A search request, parsed and checked against the parameter table: what the store's planner
//! turns into SQL. Pure: no HTTP, no SQL.
//!
//! The shape follows the specification's semantics: every [`Clause`] must hold (parameters and
//! repeated parameters are ANDed); inside a clause, any of its values may match (`a,b` is OR).
//!
//! [`parse`] builds it from the decoded query pairs. Choices where the specification leaves room:
//! - strict by default: unknown parameters or modifiers, unsupported features and empty values
//!   are errors; lenient handling skips those (listed in `ignored`) but never invalid values;
//! - escapes `\,` `\|` `\$` `\\` are honoured; any other backslash is kept as written;
//! - dates: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or a time with seconds (as the dateTime regex
//!   requires: `T10:00` is refused), fraction and zone optional; no zone means UTC, as at
//!   indexing. Numbers: the FHIR decimal (leading zeros tolerated), precision as at indexing
//!   (`1e2` is `[50, 150)`);
//! - a bare reference id takes the type of the parameter's only target (else any type); an
//!   absolute URL under the base URL is read as `Type/id` (and must have that shape); a typed
//!   reference must name a target type of the parameter;
//! - a chain's target types are the parameter's targets (or its `:Type`) on which the rest of
//!   the name resolves; `_has` requires its reference to point to every searched type;
//! - a system search needs each parameter on every searched type, with one kind;
//! - `_include=*` includes every reference of the searched types; `_revinclude=*` and
//!   `_include:iterate=*` are refused; without `:iterate`, an `_include` source must be a
//!   searched type and a `_revinclude` parameter must be able to point to one;
//! - result parameters (`_count`, `_sort`, `_total`, `_summary`, `_elements`, `_type`,
//!   `_cursor`) may be given once; `_count` above `u32::MAX` saturates.

use super::extract::{self, date_range, parse_reference};
use super::normalize::normalize;
use super::params::{ParamType, SearchParam, SearchParams};

/// A parsed search: `GET [type]?...`, `POST [type]/_search`, system search or compartment
/// search (the compartment is added by the caller as a clause).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchQuery {
    /// The types searched: one for a type search, the `_type` list (or empty: every served
    /// type, i.e. every type given to [`parse`]) for a system search.
    pub types: Vec<String>,
    pub clauses: Vec<Clause>,
    pub sort: Vec<SortKey>,
    /// `_count`, as asked (the caller applies its maximum).
    pub count: Option<u32>,
    pub total: Total,
    pub summary: Summary,
    /// `_elements`: top-level element names, empty when not asked.
    pub elements: Vec<String>,
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    /// `_cursor`: the opaque paging token of a `next`/`previous` link, passed through.
    pub cursor: Option<String>,
    /// The parameters as understood, in canonical text, for the bundle's `self` link, in
    /// request order: names and values as given, except `_include:recurse` written
    /// `_include:iterate`, `_count` as a plain integer, `_type` and `_elements` without
    /// duplicates. Leaves out `_cursor`, `_format`, `_pretty` and ignored parameters.
    pub applied: Vec<(String, String)>,
    /// Parameter names (as given) ignored under `Prefer: handling=lenient`.
    pub ignored: Vec<String>,
}

/// One parameter occurrence; it holds when any of its values matches.
#[derive(Debug, Clone, PartialEq)]
pub enum Clause {
    /// `_id=a,b`.
    Id(Vec<String>),
    /// `_lastUpdated=ge2026-01-01`: compared with the version's `last_updated` instant.
    LastUpdated(Vec<DateValue>),
    /// An indexed parameter of the searched type: any of `values` matches. `negate` is `:not`
    /// (token): no value of the resource matches any of `values`, missing values included.
    Match {
        param: ParamKey,
        negate: bool,
        values: Vec<Value>,
    },
    /// `param:missing=true|false`.
    Missing { param: ParamKey, missing: bool },
    /// `ref[:Type].inner=...`: the resource's `param` reference points to a current resource of
    /// one of `target_types` for which `inner` holds. Chains nest for several levels.
    Chain {
        param: ParamKey,
        target_types: Vec<String>,
        inner: Box<Clause>,
    },
    /// `_has:Source:ref:inner=...`: some current resource of `source_type`, whose `param`
    /// reference points to this resource, satisfies `inner`. Nests for `_has:..:_has:..`.
    Has {
        source_type: String,
        param: ParamKey,
        inner: Box<Clause>,
    },
}

/// A search parameter of the type the clause applies to (the store maps it to its index).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParamKey {
    pub code: String,
    pub kind: ParamType,
}

/// One search value, typed by its parameter (and modifier).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `text` is normalised (see `normalize`) for `StartsWith` and `Contains`, verbatim for
    /// `Exact`.
    String {
        mode: StringMode,
        text: String,
    },
    /// `code`, `system|code`, `|code`, `system|`.
    Token {
        system: SystemMatch,
        code: Option<String>,
    },
    /// `:text`: normalised text, starts-with on CodeableConcept.text / Coding.display.
    TokenText(String),
    /// `:of-type`: `type-system|type-code|value`.
    TokenOfType {
        type_system: String,
        type_code: String,
        value: String,
    },
    /// `Type/id`, `id` (with `resource_type` from `:Type` or from the parameter's single
    /// target, else `None` = any type), this server's absolute URL reduced to `Type/id`.
    Reference {
        resource_type: Option<String>,
        id: String,
        version: Option<String>,
    },
    /// An absolute URL not on this server, a `urn:`, or a canonical: compared as text.
    ReferenceUrl(String),
    /// `:identifier`: `system|value`, `|value` or `value`.
    ReferenceIdentifier {
        system: SystemMatch,
        value: String,
    },
    Date(DateValue),
    /// `number`: the search value's exact value and its implicit precision range.
    Number(NumberValue),
    /// `value|system|code`; `value||code` (system `Any`) matches the code or the unit text;
    /// `value` alone (system `Any`, no code) matches whatever the unit.
    Quantity {
        number: NumberValue,
        system: SystemMatch,
        code: Option<String>,
    },
    Uri {
        mode: UriMode,
        text: String,
    },
    /// One value per component, in the parameter's component order (`$`-separated).
    Composite(Vec<Value>),
}

/// How a token's or identifier's system is constrained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemMatch {
    /// `code`: any system, or none.
    Any,
    /// `|code`: no system.
    Absent,
    /// `system|code` or `system|`.
    Is(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMode {
    /// The default: the value starts with the search text (normalised both sides).
    StartsWith,
    /// `:exact`: equal, case and accents included.
    Exact,
    /// `:contains`: the search text appears anywhere (normalised both sides).
    Contains,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriMode {
    Exact,
    /// `:below`: the stored URI starts with the search value (path segments).
    Below,
    /// `:above`: the search value starts with the stored URI.
    Above,
}

/// The comparison prefixes of number, date and quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prefix {
    #[default]
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// A date search value: the prefix and the interval `[low, high)` its precision covers,
/// in microseconds since the epoch, UTC (a value without a zone is UTC, as at indexing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateValue {
    pub prefix: Prefix,
    pub low: i64,
    pub high: i64,
}

/// A number search value: the prefix, the value, and the `[low, high)` range of its implicit
/// precision (`5.4` -> `[5.35, 5.45)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumberValue {
    pub prefix: Prefix,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// `_include` / `_revinclude`: `source_type:param[:target_type]`, `*` for every reference
/// parameter (`param: None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub source_type: String,
    pub param: Option<String>,
    pub target_type: Option<String>,
    pub iterate: bool,
}

/// `_sort` key, in order of significance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub by: SortBy,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortBy {
    Id,
    LastUpdated,
    Param(ParamKey),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Total {
    #[default]
    None,
    Estimate,
    Accurate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Summary {
    #[default]
    False,
    True,
    Count,
    Data,
    Text,
}

// ---------------------------------------------------------------------------------------------
// The parser: from the decoded query pairs to a `SearchQuery`.
// ---------------------------------------------------------------------------------------------

/// Why a search request is refused (a 400 OperationOutcome). `message` is user-facing and
/// names the parameter; `param` is the parameter name as given (`code:text`, `subject.name`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub param: String,
    pub kind: QueryErrorKind,
    pub message: String,
}

/// What is wrong; the first three are skipped (and listed in [`SearchQuery::ignored`]) under
/// `Prefer: handling=lenient`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryErrorKind {
    /// An unknown parameter, modifier, resource type, or a parameter missing on one of the
    /// types of a system search.
    Unknown,
    /// A parameter or modifier of the specification that this server does not implement.
    NotSupported,
    /// A parameter without a value (`code=`).
    Empty,
    /// An invalid value of a known parameter (or a malformed name): an error even when lenient.
    Invalid,
}

impl QueryErrorKind {
    /// Whether lenient handling skips the parameter instead of failing.
    pub fn ignorable(self) -> bool {
        self != QueryErrorKind::Invalid
    }
}

/// At most this many parameters per search (each one is a clause of the SQL).
pub const MAX_PARAMETERS: usize = 64;
/// At most this many `,`-separated values per parameter (each one is bound in the SQL, and
/// the databases bound the number of bound values).
pub const MAX_VALUES: usize = 200;
/// Chains and `_has` nest at most this many levels (each level is a join).
pub const MAX_CHAIN_DEPTH: usize = 4;

/// Why a parameter is beyond the request limits, if it is. Checked before any parsing, so that
/// a hostile name or value costs nothing.
fn beyond_limits(name: &str, value: &str) -> Option<String> {
    let depth = name.matches('.').count() + name.matches("_has:").count();
    if depth > MAX_CHAIN_DEPTH {
        return Some(format!(
            "chains and _has nest at most {MAX_CHAIN_DEPTH} levels, this one {depth}"
        ));
    }
    let values = value.split(',').count();
    if values > MAX_VALUES {
        return Some(format!(
            "at most {MAX_VALUES} values per parameter, got {values}"
        ));
    }
    None
}

/// Parameters that are part of the specification but not implemented.
const NOT_SUPPORTED: &[&str] = &[
    "_text",
    "_content",
    "_filter",
    "_query",
    "_list",
    "_contained",
    "_containedType",
];

/// Parameters handled elsewhere (format negotiation): neither applied nor ignored.
const SILENT: &[&str] = &["_format", "_pretty"];

/// Result parameters given at most once.
const SINGLE: &[&str] = &[
    "_type",
    "_count",
    "_sort",
    "_total",
    "_summary",
    "_elements",
    "_cursor",
];

/// Parses a search request against the parameter table.
///
/// - `types`: the searched types: `[type]` for a type search, every served type for a system
///   search (then `_type` may restrict them, and `SearchQuery::types` is the `_type` list, or
///   empty for all of them). Must not be empty.
/// - `query`: the decoded name/value pairs, in request order (query string, then form body).
/// - `base_url`: this server's base (`http://host:8080/fhir`): absolute references under it
///   are read as local `Type/id`.
/// - `lenient`: `Prefer: handling=lenient`: unknown parameters, unsupported parameters and
///   modifiers, and empty values are skipped and listed in `SearchQuery::ignored`; invalid
///   values of known parameters are still errors.
pub fn parse(
    params: &SearchParams,
    types: &[&str],
    query: &[(String, String)],
    base_url: &str,
    lenient: bool,
) -> Result<SearchQuery, QueryError> {
    let parser = Parser {
        params,
        base_url: base_url.trim_end_matches('/'),
    };
    let mut out = SearchQuery::default();
    let all: Vec<String> = types.iter().map(|t| t.to_string()).collect();
    let fail = |name: &str, f: Fail| QueryError {
        param: name.to_string(),
        kind: f.kind,
        message: if f.named {
            format!("{name}: {}", f.message)
        } else {
            f.message
        },
    };

    // `_type` first: it decides the types every other parameter is checked against.
    let mut scope = all.clone();
    let mut type_ignored = false;
    let mut type_list = None;
    if let Some((name, value)) = query.iter().find(|(n, _)| n == "_type") {
        match parser.types(&all, value) {
            Ok(list) => {
                scope = list.clone();
                type_list = Some(list);
            }
            Err(f) if lenient && f.kind.ignorable() => type_ignored = true,
            Err(f) => return Err(fail(name, f)),
        }
    }
    out.types = match type_list {
        Some(list) => list,
        None if all.len() == 1 => all.clone(),
        None => Vec::new(),
    };

    let mut seen: Vec<&str> = Vec::new();
    if query.len() > MAX_PARAMETERS {
        let (name, _) = &query[MAX_PARAMETERS];
        return Err(fail(
            name,
            Fail::invalid(format!(
                "a search takes at most {MAX_PARAMETERS} parameters; split it or narrow it"
            )),
        ));
    }
    for (name, value) in query {
        let name = name.as_str();
        if name.is_empty() && value.is_empty() || SILENT.contains(&name) {
            continue;
        }
        if let Some(why) = beyond_limits(name, value) {
            return Err(fail(name, Fail::invalid(why)));
        }
        if let Some(single) = SINGLE.iter().find(|s| **s == name) {
            if seen.contains(single) {
                return Err(fail(
                    name,
                    Fail::invalid(format!("{name} may be given only once")),
                ));
            }
            seen.push(single);
        }
        let result = match name {
            "_type" if type_ignored => Err(Fail::unknown("ignored".into())),
            "_type" => Ok(Some((name.to_string(), out.types.join(",")))),
            _ => parser.parameter(&scope, name, value, &mut out),
        };
        match result {
            Ok(Some(applied)) => out.applied.push(applied),
            Ok(None) => {}
            Err(f) if lenient && f.kind.ignorable() => out.ignored.push(name.to_string()),
            Err(f) => return Err(fail(name, f)),
        }
    }
    Ok(out)
}

/// An error before the parameter name is known to the caller; `named` prefixes the message
/// with the parameter name.
struct Fail {
    kind: QueryErrorKind,
    message: String,
    named: bool,
}

impl Fail {
    fn unknown(message: String) -> Fail {
        Fail {
            kind: QueryErrorKind::Unknown,
            message,
            named: false,
        }
    }
    fn not_supported(message: String) -> Fail {
        Fail {
            kind: QueryErrorKind::NotSupported,
            message,
            named: false,
        }
    }
    /// An invalid value: the message is prefixed with the parameter's name.
    fn invalid(message: String) -> Fail {
        Fail {
            kind: QueryErrorKind::Invalid,
            message,
            named: true,
        }
    }
    fn empty() -> Fail {
        Fail {
            kind: QueryErrorKind::Empty,
            message: "empty value (give a value, or leave the parameter out)".into(),
            named: true,
        }
    }
    fn named(mut self) -> Fail {
        self.named = true;
        self
    }
    fn unnamed(mut self) -> Fail {
        self.named = false;
        self
    }
}

struct Parser<'a> {
    params: &'a SearchParams,
    /// Without a trailing `/`.
    base_url: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Modifier {
    None,
    Missing,
    Exact,
    Contains,
    Not,
    Text,
    OfType,
    Identifier,
    Type(String),
    Below,
    Above,
}

/// A parameter name resolved against the table, before its value is read.
enum Resolved<'p> {
    Leaf(Leaf<'p>),
    Chain {
        param: ParamKey,
        target_types: Vec<String>,
        inner: Box<Resolved<'p>>,
    },
    Has {
        source_type: String,
        param: ParamKey,
        inner: Box<Resolved<'p>>,
    },
}

struct Leaf<'p> {
    code: String,
    kind: ParamType,
    modifier: Modifier,
    /// The parameter of the first searched type (the others have the same code and kind).
    param: &'p SearchParam,
    /// The target types of the parameter on every searched type (reference parameters).
    targets: Vec<String>,
}

fn kind_name(kind: ParamType) -> &'static str {
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

fn accepted_modifiers(kind: ParamType) -> &'static str {
    match kind {
        ParamType::String => ":exact, :contains, :missing",
        ParamType::Token => ":not, :text, :of-type, :missing",
        ParamType::Reference => ":[type], :identifier, :missing",
        ParamType::Uri => ":below, :above, :missing",
        _ => ":missing",
    }
}

/// A FHIR id: 1 to 64 of `A-Z a-z 0-9 - .`.
fn is_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
}

/// Splits at each `sep` not escaped by a backslash; the pieces keep their escapes.
fn split_escaped(text: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(&text[start..i]);
            start = i + 1;
        }
    }
    out.push(&text[start..]);
    out
}

/// Removes the escapes `\,` `\|` `\$` `\\`; any other backslash is kept as written.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&next @ (',' | '|' | '$' | '\\')) = chars.peek() {
                out.push(next);
                chars.next();
                continue;
            }
        }
        out.push(c);
    }
    out
}

fn split_prefix(text: &str) -> (Prefix, &str) {
    let prefix = match text.get(..2) {
        Some("eq") => Prefix::Eq,
        Some("ne") => Prefix::Ne,
        Some("gt") => Prefix::Gt,
        Some("lt") => Prefix::Lt,
        Some("ge") => Prefix::Ge,
        Some("le") => Prefix::Le,
        Some("sa") => Prefix::Sa,
        Some("eb") => Prefix::Eb,
        Some("ap") => Prefix::Ap,
        _ => return (Prefix::Eq, text),
    };
    (prefix, &text[2..])
}

/// The search date syntax: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or `YYYY-MM-DDThh:mm:ss[.f+]`
/// with an optional `Z` or `(+|-)hh:mm` (hours up to 14). Seconds are required with a time,
/// as in the dateTime regex of the specification; the zone is optional (none = UTC).
/// Calendar validity is left to `date_range`.
fn date_syntax(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |from: usize, n: usize| {
        b.get(from..from + n)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    if !digits(0, 4) {
        return false;
    }
    match b.len() {
        4 => return true,
        7 => return b[4] == b'-' && digits(5, 2),
        10 => return b[4] == b'-' && digits(5, 2) && b[7] == b'-' && digits(8, 2),
        _ => {}
    }
    let date_time = b.len() >= 19
        && b[4] == b'-'
        && digits(5, 2)
        && b[7] == b'-'
        && digits(8, 2)
        && b[10] == b'T'
        && digits(11, 2)
        && b[13] == b':'
        && digits(14, 2)
        && b[16] == b':'
        && digits(17, 2);
    if !date_time {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [] | [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| -> Option<u32> {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| u32::from(a - b'0') * 10 + u32::from(b - b'0'))
            };
            match (two(*h1, *h2), two(*m1, *m2)) {
                (Some(h), Some(m)) => h < 14 && m < 60 || h == 14 && m == 0,
                _ => false,
            }
        }
        _ => false,
    }
}

/// `-?digits[.digits][(e|E)[+-]digits]`: the FHIR decimal, leading zeros tolerated.
fn decimal_syntax(text: &str) -> bool {
    let rest = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(p) => (&rest[..p], Some(&rest[p + 1..])),
        None => (rest, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => all_digits(int) && all_digits(frac),
        None => all_digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| all_digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

fn date_value(text: &str) -> Result<DateValue, Fail> {
    let (prefix, rest) = split_prefix(text);
    match date_syntax(rest).then(|| date_range(rest)).flatten() {
        Some((low, high)) => Ok(DateValue { prefix, low, high }),
        None => Err(Fail::invalid(format!(
            "\"{text}\" is not a valid date (expected [prefix]YYYY, YYYY-MM, YYYY-MM-DD or \
             YYYY-MM-DDThh:mm:ss[.sss][Z|(+|-)hh:mm], prefix one of eq ne gt lt ge le sa eb ap)"
        ))),
    }
}

fn number_value(text: &str) -> Result<NumberValue, Fail> {
    let (prefix, rest) = split_prefix(text);
    let parsed = decimal_syntax(rest)
        .then(|| extract::number(&serde_json::Value::String(rest.to_string())))
        .flatten()
        .zip(rest.parse::<f64>().ok())
        .filter(|(_, v)| v.is_finite());
    match parsed {
        Some(((_, low, high), value)) => Ok(NumberValue {
            prefix,
            value,
            low,
            high,
        }),
        None => Err(Fail::invalid(format!(
            "\"{text}\" is not a valid number (expected [prefix]decimal, e.g. 5.4, ge100, \
             1.5e3, prefix one of eq ne gt lt ge le sa eb ap)"
        ))),
    }
}

/// `code`, `system|code`, `|code`, `system|`.
fn token_value(raw: &str) -> Result<(SystemMatch, Option<String>), Fail> {
    let parts = split_escaped(raw, '|');
    match parts[..] {
        [code] => Ok((SystemMatch::Any, Some(unescape(code)))),
        [system, code] if !(system.is_empty() && code.is_empty()) => Ok((
            if system.is_empty() {
                SystemMatch::Absent
            } else {
                SystemMatch::Is(unescape(system))
            },
            (!code.is_empty()).then(|| unescape(code)),
        )),
        _ => Err(Fail::invalid(format!(
            "\"{}\" is not a valid token (expected code, system|code, |code or system|; \
             escape a literal | as \\|)",
            unescape(raw)
        ))),
    }
}

impl<'a> Parser<'a> {
    fn is_type(&self, name: &str) -> bool {
        self.params.definitions.is_resource_type(name)
    }

    /// `_type=A,B`: a subset of the searchable types.
    fn types(&self, all: &[String], value: &str) -> Result<Vec<String>, Fail> {
        if value.is_empty() {
            return Err(Fail::empty());
        }
        let mut list: Vec<String> = Vec::new();
        for t in value.split(',') {
            if !all.iter().any(|a| a == t) {
                let message = if self.is_type(t) {
                    format!(
                        "_type: {t} cannot be searched here (accepted: {})",
                        all.join(", ")
                    )
                } else {
                    format!("_type: unknown resource type \"{t}\"")
                };
                return Err(Fail::unknown(message));
            }
            if !list.iter().any(|l| l == t) {
                list.push(t.to_string());
            }
        }
        Ok(list)
    }

    /// One query parameter: a result parameter, or a search parameter added as a clause.
    /// Returns its canonical `(name, value)` for `SearchQuery::applied`, if it has one.
    fn parameter(
        &self,
        scope: &[String],
        name: &str,
        value: &str,
        out: &mut SearchQuery,
    ) -> Result<Option<(String, String)>, Fail> {
        let (base, modifier) = match name.split_once(':') {
            Some((b, m)) => (b, Some(m)),
            None => (name, None),
        };
        let applied = |v: String| Ok(Some((name.to_string(), v)));
        match base {
            "_include" | "_revinclude" => {
                let iterate = match modifier {
                    None => false,
                    Some("iterate" | "recurse") => true,
                    Some(m) => {
                        return Err(Fail::unknown(format!(
                            "modifier :{m} is not allowed on {base} (accepted: :iterate)"
                        )))
                    }
                };
                let reverse = base == "_revinclude";
                let includes = self
                    .include(scope, value, reverse, iterate)
                    .map_err(Fail::named)?;
                for include in includes {
                    let list = if reverse {
                        &mut out.revincludes
                    } else {
                        &mut out.includes
                    };
                    if !list.contains(&include) {
                        list.push(include);
                    }
                }
                let canonical = if iterate {
                    format!("{base}:iterate")
                } else {
                    base.to_string()
                };
                return Ok(Some((canonical, value.to_string())));
            }
            "_count" | "_sort" | "_total" | "_summary" | "_elements" | "_cursor" | "_type"
                if modifier.is_some() =>
            {
                return Err(Fail::unknown(format!(
                    "modifiers are not allowed on {base}, got \"{name}\""
                )))
            }
            _ => {}
        }
        match name {
            "_count" => {
                let digits = !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit());
                if !digits {
                    return Err(Fail::invalid(format!(
                        "_count must be a non-negative integer, got \"{value}\""
                    ))
                    .unnamed());
                }
                let count = value.parse::<u32>().unwrap_or(u32::MAX);
                out.count = Some(count);
                applied(count.to_string())
            }
            "_sort" => {
                out.sort = self.sort(scope, value).map_err(Fail::named)?;
                applied(value.to_string())
            }
            "_total" => {
                out.total = match value {
                    "none" => Total::None,
                    "estimate" => Total::Estimate,
                    "accurate" => Total::Accurate,
                    _ => {
                        return Err(Fail::invalid(format!(
                            "\"{value}\" is not accepted (expected none, estimate or accurate)"
                        )))
                    }
                };
                applied(value.to_string())
            }
            "_summary" => {
                out.summary = match value {
                    "true" => Summary::True,
                    "count" => Summary::Count,
                    "data" => Summary::Data,
                    "text" => Summary::Text,
                    "false" => Summary::False,
                    _ => {
                        return Err(Fail::invalid(format!(
                            "\"{value}\" is not accepted (expected true, count, data, text or \
                             false)"
                        )))
                    }
                };
                applied(value.to_string())
            }
            "_elements" => {
                if value.is_empty() {
                    return Err(Fail::empty());
                }
                let mut elements: Vec<String> = Vec::new();
                for e in value.split(',') {
                    let element_name = e.len() <= 64
                        && e.starts_with(|c: char| c.is_ascii_lowercase())
                        && e.bytes().all(|c| c.is_ascii_alphanumeric());
                    if !element_name {
                        return Err(Fail::invalid(format!(
                            "\"{e}\" is not a top-level element name (expected names such as \
                             identifier,name,birthDate separated by commas)"
                        )));
                    }
                    if !elements.iter().any(|x| x == e) {
                        elements.push(e.to_string());
                    }
                }
                let canonical = elements.join(",");
                out.elements = elements;
                applied(canonical)
            }
            "_cursor" => {
                out.cursor = Some(value.to_string());
                Ok(None)
            }
            _ => {
                let resolved = self.resolve(name, scope)?;
                out.clauses.push(self.clause(&resolved, value)?);
                applied(value.to_string())
            }
        }
    }

    /// The parameter `code` on every type of `types`, with one kind.
    fn lookup(&self, code: &str, types: &[String]) -> Result<Vec<&'a SearchParam>, Fail> {
        if NOT_SUPPORTED.contains(&code) {
            return Err(Fail::not_supported(format!(
                "search parameter \"{code}\" is not supported by this server"
            )));
        }
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for t in types {
            match self.params.get(t, code) {
                Some(p) => found.push((t, p)),
                None => missing.push(t.as_str()),
            }
        }
        if !missing.is_empty() || found.is_empty() {
            return Err(Fail::unknown(if found.is_empty() {
                format!(
                    "unknown search parameter \"{code}\" for {}",
                    missing.join(", ")
                )
            } else {
                format!(
                    "search parameter \"{code}\" is not defined for {}: a search across \
                     several types needs it on every searched type",
                    missing.join(", ")
                )
            }));
        }
        let (first_type, first) = found[0];
        if let Some((t, p)) = found.iter().find(|(_, p)| p.kind != first.kind) {
            return Err(Fail::unknown(format!(
                "search parameter \"{code}\" is a {} parameter on {first_type} but a {} \
                 parameter on {t}: a search across several types needs one kind",
                kind_name(first.kind),
                kind_name(p.kind)
            )));
        }
        if let Some(why) = found.iter().find_map(|(_, p)| p.unsupported()) {
            return Err(Fail::not_supported(format!(
                "search parameter \"{code}\" is not supported by this server ({why})"
            )));
        }
        Ok(found.into_iter().map(|(_, p)| p).collect())
    }

    /// A parameter name on `types`: `code[:modifier]`, a chain `ref[:Type].name`, or
    /// `_has:Type:ref:name`.
    fn resolve(&self, name: &str, types: &[String]) -> Result<Resolved<'a>, Fail> {
        if name == "_has" || name.starts_with("_has:") {
            return self.resolve_has(name, types);
        }
        let (head, tail) = match name.split_once('.') {
            Some((h, t)) => (h, Some(t)),
            None => (name, None),
        };
        let (code, modifier) = match head.split_once(':') {
            Some((c, m)) => (c, Some(m)),
            None => (head, None),
        };
        if code.is_empty() {
            return Err(Fail::unknown(format!(
                "\"{name}\" is not a search parameter name"
            )));
        }
        let found = self.lookup(code, types)?;
        let kind = found[0].kind;
        let mut targets: Vec<String> = Vec::new();
        for t in found.iter().flat_map(|p| &p.target) {
            if !targets.contains(t) {
                targets.push(t.clone());
            }
        }
        let Some(tail) = tail else {
            let modifier = self.modifier(code, kind, modifier, &targets)?;
            return Ok(Resolved::Leaf(Leaf {
                code: code.to_string(),
                kind,
                modifier,
                param: found[0],
                targets,
            }));
        };
        if kind != ParamType::Reference {
            return Err(Fail::invalid(format!(
                "\"{code}\" is a {} parameter: only reference parameters can be chained",
                kind_name(kind)
            )));
        }
        let candidates = match modifier {
            None => targets.clone(),
            Some(m) if targets.iter().any(|t| t == m) => vec![m.to_string()],
            Some(m) => return Err(self.not_a_target(code, m, &targets)),
        };
        let leading = tail.split(['.', ':']).next().unwrap_or_default();
        let mut ok = Vec::new();
        let mut first_error = None;
        for c in &candidates {
            match self.resolve(tail, std::slice::from_ref(c)) {
                Ok(_) => ok.push(c.clone()),
                Err(e) => {
                    // An error about the inner parameter itself (not its absence) is reported.
                    let relevant = candidates.len() == 1
                        || leading == "_has"
                        || self.params.get(c, leading).is_some();
                    if relevant && first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
        }
        if ok.is_empty() {
            return Err(first_error.unwrap_or_else(|| {
                Fail::unknown(format!(
                    "none of the target types of \"{code}\" ({}) has a search parameter \
                     \"{leading}\"",
                    candidates.join(", ")
                ))
            }));
        }
        let inner = self.resolve(tail, &ok)?;
        Ok(Resolved::Chain {
            param: ParamKey {
                code: code.to_string(),
                kind,
            },
            target_types: ok,
            inner: Box::new(inner),
        })
    }

    fn resolve_has(&self, name: &str, types: &[String]) -> Result<Resolved<'a>, Fail> {
        let parts: Vec<&str> = name.splitn(4, ':').collect();
        let [_, source, reference, inner] = parts[..] else {
            return Err(Fail::invalid(format!(
                "\"{name}\" is not a valid _has parameter (expected \
                 _has:Type:reference:parameter, e.g. _has:Observation:patient:code)"
            )));
        };
        if source.is_empty() || reference.is_empty() || inner.is_empty() {
            return Err(Fail::invalid(format!(
                "\"{name}\" is not a valid _has parameter (expected \
                 _has:Type:reference:parameter, e.g. _has:Observation:patient:code)"
            )));
        }
        if !self.is_type(source) {
            return Err(Fail::unknown(format!(
                "_has: unknown resource type \"{source}\""
            )));
        }
        let Some(p) = self.params.get(source, reference) else {
            return Err(Fail::unknown(format!(
                "_has: unknown search parameter \"{reference}\" for {source}"
            )));
        };
        if p.kind != ParamType::Reference {
            return Err(Fail::invalid(format!(
                "_has: {source}:{reference} is a {} parameter, not a reference",
                kind_name(p.kind)
            )));
        }
        if let Some(t) = types.iter().find(|t| !p.target.contains(t)) {
            return Err(Fail::invalid(format!(
                "_has: {source}:{reference} cannot point to {t} (it points to {})",
                p.target.join(", ")
            )));
        }
        let inner = self.resolve(inner, &[source.to_string()])?;
        Ok(Resolved::Has {
            source_type: source.to_string(),
            param: ParamKey {
                code: reference.to_string(),
                kind: ParamType::Reference,
            },
            inner: Box::new(inner),
        })
    }

    fn not_a_target(&self, code: &str, ty: &str, targets: &[String]) -> Fail {
        if self.is_type(ty) {
            Fail::invalid(format!(
                "{ty} is not a target type of \"{code}\" (accepted: {})",
                targets.join(", ")
            ))
        } else {
            Fail::unknown(format!(
                "modifier :{ty} is not allowed on reference parameter \"{code}\" (accepted: \
                 :identifier, :missing, or a target type: {})",
                targets.join(", ")
            ))
        }
    }

    fn modifier(
        &self,
        code: &str,
        kind: ParamType,
        modifier: Option<&str>,
        targets: &[String],
    ) -> Result<Modifier, Fail> {
        let Some(m) = modifier else {
            return Ok(Modifier::None);
        };
        let special = code == "_id" || code == "_lastUpdated";
        let parsed = match (kind, m) {
            _ if special => None,
            (_, "missing") => Some(Modifier::Missing),
            (ParamType::String, "exact") => Some(Modifier::Exact),
            (ParamType::String, "contains") => Some(Modifier::Contains),
            (ParamType::Token, "not") => Some(Modifier::Not),
            (ParamType::Token, "text") => Some(Modifier::Text),
            (ParamType::Token, "of-type") => Some(Modifier::OfType),
            (ParamType::Token, "in" | "not-in" | "above" | "below")
            | (ParamType::Reference, "above" | "below") => {
                return Err(Fail::not_supported(format!(
                    "modifier :{m} on {} parameter \"{code}\" is not supported by this server",
                    kind_name(kind)
                )))
            }
            (ParamType::Reference, "identifier") => Some(Modifier::Identifier),
            (ParamType::Reference, t) if t.starts_with(|c: char| c.is_ascii_uppercase()) => {
                if !targets.iter().any(|x| x == t) {
                    return Err(self.not_a_target(code, t, targets));
                }
                Some(Modifier::Type(t.to_string()))
            }
            (ParamType::Uri, "below") => Some(Modifier::Below),
            (ParamType::Uri, "above") => Some(Modifier::Above),
            _ => None,
        };
        parsed.ok_or_else(|| {
            Fail::unknown(if special {
                format!("modifier :{m} is not allowed on {code} (it takes no modifier)")
            } else {
                format!(
                    "modifier :{m} is not allowed on {} parameter \"{code}\" (accepted: {})",
                    kind_name(kind),
                    accepted_modifiers(kind)
                )
            })
        })
    }

    fn clause(&self, resolved: &Resolved<'a>, value: &str) -> Result<Clause, Fail> {
        let leaf = match resolved {
            Resolved::Chain {
                param,
                target_types,
                inner,
            } => {
                return Ok(Clause::Chain {
                    param: param.clone(),
                    target_types: target_types.clone(),
                    inner: Box::new(self.clause(inner, value)?),
                })
            }
            Resolved::Has {
                source_type,
                param,
                inner,
            } => {
                return Ok(Clause::Has {
                    source_type: source_type.clone(),
                    param: param.clone(),
                    inner: Box::new(self.clause(inner, value)?),
                })
            }
            Resolved::Leaf(leaf) => leaf,
        };
        if value.is_empty() {
            return Err(Fail::empty());
        }
        let key = ParamKey {
            code: leaf.code.clone(),
            kind: leaf.kind,
        };
        if leaf.modifier == Modifier::Missing {
            let missing = match value {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(Fail::invalid(format!(
                        ":missing takes true or false, got \"{value}\""
                    )))
                }
            };
            return Ok(Clause::Missing {
                param: key,
                missing,
            });
        }
        let raws = split_escaped(value, ',');
        if raws.iter().any(|r| r.is_empty()) {
            return Err(Fail::invalid(format!(
                "empty value in the list \"{value}\" (escape a literal comma as \\,)"
            )));
        }
        match leaf.code.as_str() {
            "_id" => {
                let ids = raws.iter().map(|r| unescape(r)).collect::<Vec<_>>();
                if let Some(bad) = ids.iter().find(|id| !is_id(id)) {
                    return Err(Fail::invalid(format!(
                        "\"{bad}\" is not a valid id (1 to 64 of A-Z a-z 0-9 - .)"
                    )));
                }
                return Ok(Clause::Id(ids));
            }
            "_lastUpdated" => {
                let dates = raws
                    .iter()
                    .map(|r| date_value(&unescape(r)))
                    .collect::<Result<_, _>>()?;
                return Ok(Clause::LastUpdated(dates));
            }
            _ => {}
        }
        let values = raws
            .iter()
            .map(|raw| self.value(leaf, leaf.kind, &leaf.modifier, &leaf.targets, raw))
            .collect::<Result<_, _>>()?;
        Ok(Clause::Match {
            param: key,
            negate: leaf.modifier == Modifier::Not,
            values,
        })
    }

    /// One value (escapes intact) of a parameter, or of a component of a composite `leaf`.
    fn value(
        &self,
        leaf: &Leaf<'a>,
        kind: ParamType,
        modifier: &Modifier,
        targets: &[String],
        raw: &str,
    ) -> Result<Value, Fail> {
        Ok(match kind {
            ParamType::String => {
                let text = unescape(raw);
                let (mode, text) = match modifier {
                    Modifier::Exact => (StringMode::Exact, text),
                    Modifier::Contains => (StringMode::Contains, normalize(&text)),
                    _ => (StringMode::StartsWith, normalize(&text)),
                };
                if text.is_empty() {
                    return Err(Fail::empty());
                }
                Value::String { mode, text }
            }
            ParamType::Token => match modifier {
                Modifier::Text => {
                    let text = normalize(&unescape(raw));
                    if text.is_empty() {
                        return Err(Fail::empty());
                    }
                    Value::TokenText(text)
                }
                Modifier::OfType => match split_escaped(raw, '|')[..] {
                    [s, c, v] if !s.is_empty() && !c.is_empty() && !v.is_empty() => {
                        Value::TokenOfType {
                            type_system: unescape(s),
                            type_code: unescape(c),
                            value: unescape(v),
                        }
                    }
                    _ => {
                        return Err(Fail::invalid(format!(
                            "\"{}\" is not valid for :of-type (expected \
                             type-system|type-code|value)",
                            unescape(raw)
                        )))
                    }
                },
                _ => {
                    let (system, code) = token_value(raw)?;
                    Value::Token { system, code }
                }
            },
            ParamType::Reference => self.reference(modifier, targets, raw)?,
            ParamType::Date => Value::Date(date_value(&unescape(raw))?),
            ParamType::Number => Value::Number(number_value(&unescape(raw))?),
            ParamType::Quantity => {
                let parts = split_escaped(raw, '|');
                let (system, code) = match parts[..] {
                    [_] => (SystemMatch::Any, None),
                    [_, s, c] if !c.is_empty() => (
                        if s.is_empty() {
                            SystemMatch::Any
                        } else {
                            SystemMatch::Is(unescape(s))
                        },
                        Some(unescape(c)),
                    ),
                    _ => {
                        return Err(Fail::invalid(format!(
                            "\"{}\" is not a valid quantity (expected [prefix]number, \
                             [prefix]number|system|code or [prefix]number||code)",
                            unescape(raw)
                        )))
                    }
                };
                Value::Quantity {
                    number: number_value(&unescape(parts[0]))?,
                    system,
                    code,
                }
            }
            ParamType::Uri => Value::Uri {
                mode: match modifier {
                    Modifier::Below => UriMode::Below,
                    Modifier::Above => UriMode::Above,
                    _ => UriMode::Exact,
                },
                text: unescape(raw),
            },
            ParamType::Composite => {
                let components = &leaf.param.components;
                let parts = split_escaped(raw, '$');
                if parts.len() != components.len() || parts.iter().any(|p| p.is_empty()) {
                    let shape: Vec<&str> = components.iter().map(|c| c.code.as_str()).collect();
                    return Err(Fail::invalid(format!(
                        "\"{}\" is not a valid composite value (expected {} non-empty \
                         components separated by $: {})",
                        unescape(raw),
                        components.len(),
                        shape.join("$")
                    )));
                }
                let mut values = Vec::with_capacity(parts.len());
                for (part, component) in parts.iter().zip(components) {
                    if matches!(component.kind, ParamType::Composite | ParamType::Special) {
                        return Err(Fail::not_supported(format!(
                            "component {} of \"{}\" is not supported",
                            component.code, leaf.code
                        )));
                    }
                    let targets = self
                        .params
                        .all()
                        .iter()
                        .find(|p| p.url == component.definition)
                        .map_or(&[][..], |p| &p.target[..]);
                    values.push(self.value(
                        leaf,
                        component.kind,
                        &Modifier::None,
                        targets,
                        part,
                    )?);
                }
                Value::Composite(values)
            }
            ParamType::Special => {
                return Err(Fail::not_supported(format!(
                    "special parameter \"{}\" is not supported by this server",
                    leaf.code
                )))
            }
        })
    }

    fn reference(&self, modifier: &Modifier, targets: &[String], raw: &str) -> Result<Value, Fail> {
        if *modifier == Modifier::Identifier {
            let parts = split_escaped(raw, '|');
            let (system, value) = match parts[..] {
                [v] => (SystemMatch::Any, unescape(v)),
                [s, v] if !v.is_empty() => (
                    if s.is_empty() {
                        SystemMatch::Absent
                    } else {
                        SystemMatch::Is(unescape(s))
                    },
                    unescape(v),
                ),
                _ => {
                    return Err(Fail::invalid(format!(
                        "\"{}\" is not valid for :identifier (expected system|value, |value \
                         or value)",
                        unescape(raw)
                    )))
                }
            };
            return Ok(Value::ReferenceIdentifier { system, value });
        }
        let text = unescape(raw);
        let type_modifier = match modifier {
            Modifier::Type(t) => Some(t.as_str()),
            _ => None,
        };
        let local = if text.contains(':') {
            let under_base = (!self.base_url.is_empty())
                .then(|| text.strip_prefix(self.base_url))
                .flatten()
                .and_then(|rest| rest.strip_prefix('/'));
            match under_base {
                Some(rest) => rest,
                None => return Ok(Value::ReferenceUrl(text)),
            }
        } else {
            &text
        };
        let invalid = || {
            Fail::invalid(format!(
                "\"{text}\" is not a valid reference (expected Type/id, \
                 Type/id/_history/version, id, or an absolute URL)"
            ))
        };
        if !local.contains('/') {
            // An absolute URL on this server must name a resource.
            if !is_id(local) || local.len() < text.len() {
                return Err(invalid());
            }
            let resource_type = match type_modifier {
                Some(t) => Some(t.to_string()),
                None if targets.len() == 1 => Some(targets[0].clone()),
                None => None,
            };
            return Ok(Value::Reference {
                resource_type,
                id: local.to_string(),
                version: None,
            });
        }
        let segments: Vec<&str> = local.split('/').collect();
        let shape_ok = segments.len() == 2 || segments.len() == 4 && segments[2] == "_history";
        let Some((ty, id, version)) = shape_ok.then(|| parse_reference(local)).flatten() else {
            return Err(invalid());
        };
        if !self.is_type(ty) {
            return Err(Fail::invalid(format!(
                "\"{text}\": unknown resource type \"{ty}\""
            )));
        }
        if type_modifier.is_some_and(|t| t != ty) {
            return Err(Fail::invalid(format!(
                "\"{text}\" does not match the modifier :{}",
                type_modifier.unwrap_or_default()
            )));
        }
        if !targets.is_empty() && !targets.iter().any(|t| t == ty) {
            return Err(Fail::invalid(format!(
                "\"{text}\": {ty} is not a target type of this parameter (accepted: {})",
                targets.join(", ")
            )));
        }
        Ok(Value::Reference {
            resource_type: Some(ty.to_string()),
            id: id.to_string(),
            version: version.map(str::to_string),
        })
    }

    /// `_sort=a,-b`.
    fn sort(&self, scope: &[String], value: &str) -> Result<Vec<SortKey>, Fail> {
        if value.is_empty() {
            return Err(Fail::empty());
        }
        let mut keys = Vec::new();
        for item in value.split(',') {
            let (descending, code) = match item.strip_prefix('-') {
                Some(c) => (true, c),
                None => (false, item),
            };
            if code.is_empty() || code.contains(':') || code.contains('.') {
                return Err(Fail::invalid(format!(
                    "\"{item}\" is not a sort key (expected a search parameter name, \
                     optionally preceded by -, e.g. _sort=-date,_id)"
                )));
            }
            let by = match code {
                "_id" => SortBy::Id,
                "_lastUpdated" => SortBy::LastUpdated,
                _ => {
                    let found = self.lookup(code, scope)?;
                    let kind = found[0].kind;
                    if matches!(kind, ParamType::Composite | ParamType::Special) {
                        return Err(Fail::invalid(format!(
                            "cannot sort by {} parameter \"{code}\"",
                            kind_name(kind)
                        )));
                    }
                    SortBy::Param(ParamKey {
                        code: code.to_string(),
                        kind,
                    })
                }
            };
            keys.push(SortKey { by, descending });
        }
        Ok(keys)
    }

    /// `_include` / `_revinclude` values: `Type:param[:Target]`, `Type:*`, or `*` (includes of
    /// the searched types only).
    fn include(
        &self,
        scope: &[String],
        value: &str,
        reverse: bool,
        iterate: bool,
    ) -> Result<Vec<Include>, Fail> {
        let base = if reverse { "_revinclude" } else { "_include" };
        if value.is_empty() {
            return Err(Fail::empty());
        }
        if value == "*" {
            if reverse || iterate {
                return Err(Fail::not_supported(
                    "\"*\" is only supported on _include without :iterate; name the source \
                     type (Type:* or Type:parameter)"
                        .into(),
                ));
            }
            return Ok(scope
                .iter()
                .map(|t| Include {
                    source_type: t.clone(),
                    param: None,
                    target_type: None,
                    iterate: false,
                })
                .collect());
        }
        let parts: Vec<&str> = value.split(':').collect();
        let (source, code, target) = match parts[..] {
            [s, c] => (s, c, None),
            [s, c, t] if c != "*" => (s, c, Some(t)),
            _ => {
                return Err(Fail::invalid(format!(
                    "\"{value}\" is not valid (expected SourceType:parameter[:TargetType] or \
                     SourceType:*)"
                )))
            }
        };
        if !self.is_type(source) {
            return Err(Fail::unknown(format!("unknown resource type \"{source}\"")));
        }
        if !iterate && !reverse && !scope.iter().any(|t| t == source) {
            return Err(Fail::invalid(format!(
                "{source} is not a searched type ({}); use {base}:iterate to include from \
                 included resources",
                scope.join(", ")
            )));
        }
        if code == "*" {
            return Ok(vec![Include {
                source_type: source.to_string(),
                param: None,
                target_type: None,
                iterate,
            }]);
        }
        let Some(p) = self.params.get(source, code) else {
            return Err(Fail::unknown(format!(
                "unknown search parameter \"{code}\" for {source}"
            )));
        };
        if p.kind != ParamType::Reference {
            return Err(Fail::invalid(format!(
                "{source}:{code} is a {} parameter, not a reference",
                kind_name(p.kind)
            )));
        }
        if let Some(t) = target {
            if !p.target.iter().any(|x| x == t) {
                return Err(Fail::invalid(format!(
                    "{t} is not a target type of {source}:{code} (accepted: {})",
                    p.target.join(", ")
                )));
            }
        }
        if reverse && !iterate {
            let points_here = match target {
                Some(t) => scope.iter().any(|s| s == t),
                None => p.target.iter().any(|t| scope.contains(t)),
            };
            if !points_here {
                return Err(Fail::invalid(format!(
                    "{source}:{code}{} cannot point to the searched types ({}); use \
                     {base}:iterate to include resources pointing to included ones",
                    target.map(|t| format!(":{t}")).unwrap_or_default(),
                    scope.join(", ")
                )));
            }
        }
        Ok(vec![Include {
            source_type: source.to_string(),
            param: Some(code.to_string()),
            target_type: target.map(str::to_string),
            iterate,
        }])
    }
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
