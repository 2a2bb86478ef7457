//! A search request, parsed and checked against the parameter table: what the store's planner
//! turns into SQL. Pure: no HTTP, no SQL.
//!
//! The shape follows the specification's semantics: every [`Clause`] must hold (parameters and
//! repeated parameters are ANDed); inside a clause, any of its values may match (`a,b` is OR).

use super::params::ParamType;

/// A parsed search: `GET [type]?...`, `POST [type]/_search`, system search or compartment
/// search (the compartment is added by the caller as a clause).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchQuery {
    /// The types searched: one for a type search, the `_type` list (or empty: every served
    /// type) for a system search.
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
    /// The parameters as understood, in canonical text, for the bundle's `self` link.
    pub applied: Vec<(String, String)>,
    /// Parameter names ignored under `Prefer: handling=lenient`.
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
    /// `value|system|code`; `value||code` matches the code or the unit text; `value` alone
    /// matches whatever the unit.
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
