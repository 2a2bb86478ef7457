//! From a resource to the typed values its search parameters index.

use chrono::NaiveDate;
use serde_json::Value;

use super::fhirpath::{self, Item, Ty};
use super::normalize::normalize;
use super::params::{ParamType, SearchParam, SearchParams};
use crate::fhir::definitions::{Definitions, Primitive, ROOT_NODE};

/// One value to index for one parameter of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry<'p> {
    /// The parameter's code (`code`, `subject`, `_lastUpdated`...).
    pub code: &'p str,
    pub value: IndexValue,
}

/// A typed index value. Lower and upper bounds are half-open: `[low, high)`.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// `normalized` (lowercase, accents removed) for the default and `:contains` searches,
    /// `exact` for `:exact`.
    String {
        normalized: String,
        exact: String,
    },
    /// A code with its system, if any (Coding, CodeableConcept.coding, Identifier system|value,
    /// code, boolean, ContactPoint value, string, uri).
    Token {
        system: Option<String>,
        code: String,
    },
    /// Text for `:text`: CodeableConcept.text, Coding.display, Identifier.type.text.
    TokenText(String),
    /// An Identifier with a type coding, for `:of-type` (`type-system|type-code|value`).
    TokenOfType {
        type_system: Option<String>,
        type_code: String,
        value: String,
    },
    /// A reference. `resource_type`/`id`/`version` when the text has the shape
    /// `[base/]Type/id[/_history/version]`; `url` keeps the text when it is absolute
    /// (`http...`, `urn:`) or a canonical.
    Reference {
        resource_type: Option<String>,
        id: Option<String>,
        version: Option<String>,
        url: Option<String>,
    },
    /// `Reference.identifier`, for `:identifier`.
    ReferenceIdentifier {
        system: Option<String>,
        value: String,
    },
    /// Microseconds since the epoch, UTC. `i64::MIN`/`i64::MAX` for an open Period end.
    Date {
        low: i64,
        high: i64,
    },
    /// A decimal: its exact text and the range its precision implies (`5.4` -> `[5.35, 5.45)`).
    Number {
        text: String,
        low: f64,
        high: f64,
    },
    /// A Quantity (and Age, Duration...): the value as a Number, plus unit system, code and
    /// human unit. A Range is indexed with `text` empty and `[low.value, high.value]` bounds.
    Quantity {
        text: String,
        low: f64,
        high: f64,
        system: Option<String>,
        code: Option<String>,
        unit: Option<String>,
    },
    Uri(String),
    /// One value per component, in the parameter's component order.
    Composite(Vec<IndexValue>),
}

/// Why a resource could not be read for indexing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("not a resource: no resourceType")]
    NotAResource,
    #[error("unknown resource type {0}")]
    UnknownType(String),
}

/// Composite values of one context beyond this many combinations are dropped (a cartesian
/// product of repeating components could otherwise explode).
const MAX_COMBINATIONS: usize = 64;

/// Every value to index for every supported search parameter of the resource's type, except
/// those derived from others ([`Derivation`](super::Derivation)). Parameters without an expression (`_text`, `_content`...) or whose expression is outside the
/// supported subset ([`SearchParam::unsupported`]) yield nothing.
pub fn extract<'p>(
    params: &'p SearchParams,
    resource: &Value,
) -> Result<Vec<IndexEntry<'p>>, ExtractError> {
    let defs = params.definitions;
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or(ExtractError::NotAResource)?;
    let type_id = defs
        .resource_type(resource_type)
        .ok_or_else(|| ExtractError::UnknownType(resource_type.to_string()))?;
    let root = Item {
        value: resource,
        ty: Ty::Complex(type_id, ROOT_NODE),
    };
    let mut out = Vec::new();
    for param in params.for_type(resource_type) {
        // Answered from the parameters it derives from, which are extracted.
        if params.derivation(resource_type, &param.code).is_none() {
            extract_param(defs, param, root, &mut out);
        }
    }
    Ok(out)
}

/// The values a stored resource indexes, with references resolved against this server's
/// `base_url`: an absolute URL under it counts as the local `Type/id`, one elsewhere only as
/// its URL (it must not match a local `Patient/1`).
pub fn index_entries<'p>(
    params: &'p SearchParams,
    resource: &Value,
    base_url: &str,
) -> Result<Vec<IndexEntry<'p>>, ExtractError> {
    let mut entries = extract(params, resource)?;
    let base = base_url.trim_end_matches('/');
    for entry in &mut entries {
        localize(&mut entry.value, base);
    }
    Ok(entries)
}

fn localize(value: &mut IndexValue, base: &str) {
    match value {
        IndexValue::Reference {
            id, version, url, ..
        } => {
            let Some(text) = url else { return };
            let local = text
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('/'));
            if local {
                *url = None;
            } else {
                *id = None;
                *version = None;
            }
        }
        IndexValue::Composite(values) => values.iter_mut().for_each(|v| localize(v, base)),
        _ => {}
    }
}

/// The values of one parameter.
pub fn extract_param<'p>(
    defs: &Definitions,
    param: &'p SearchParam,
    root: Item<'_>,
    out: &mut Vec<IndexEntry<'p>>,
) {
    let Some(Ok(expr)) = &param.expression else {
        return;
    };
    if param.unsupported().is_some() {
        return;
    }
    let items = fhirpath::evaluate(defs, expr, root);
    let code = param.code.as_str();
    if param.kind != ParamType::Composite {
        let mut values = Vec::new();
        for item in items {
            values_of(defs, param.kind, item, &mut values);
        }
        out.extend(values.into_iter().map(|value| IndexEntry { code, value }));
        return;
    }
    for item in items {
        let mut tuples: Vec<Vec<IndexValue>> = vec![Vec::new()];
        for component in &param.components {
            let Ok(expr) = &component.expression else {
                return;
            };
            let mut values = Vec::new();
            for v in fhirpath::evaluate(defs, expr, item) {
                values_of(defs, component.kind, v, &mut values);
            }
            // Only the "value" forms matter for composite matching, not `:text`/`:of-type`.
            values.retain(|v| {
                !matches!(
                    v,
                    IndexValue::TokenText(_)
                        | IndexValue::TokenOfType { .. }
                        | IndexValue::ReferenceIdentifier { .. }
                )
            });
            let mut next = Vec::new();
            for t in &tuples {
                for v in &values {
                    if next.len() < MAX_COMBINATIONS {
                        let mut t = t.clone();
                        t.push(v.clone());
                        next.push(t);
                    }
                }
            }
            tuples = next;
        }
        out.extend(tuples.into_iter().map(|t| IndexEntry {
            code,
            value: IndexValue::Composite(t),
        }));
    }
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn strings<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a str> {
    let values: &'a [Value] = match v.get(key) {
        Some(Value::Array(a)) => a,
        Some(one) => std::slice::from_ref(one),
        None => &[],
    };
    values.iter().filter_map(Value::as_str)
}

/// The index values of one evaluated item for a parameter of type `kind`.
pub fn values_of(defs: &Definitions, kind: ParamType, item: Item<'_>, out: &mut Vec<IndexValue>) {
    let type_name = fhirpath::type_name(defs, item.ty);
    let v = item.value;
    match kind {
        ParamType::String => {
            let mut push = |text: &str| {
                if !text.trim().is_empty() {
                    out.push(IndexValue::String {
                        normalized: normalize(text),
                        exact: text.to_string(),
                    })
                }
            };
            match (item.ty, type_name) {
                (_, "HumanName") => {
                    for key in ["family", "given", "prefix", "suffix", "text"] {
                        strings(v, key).for_each(&mut push);
                    }
                }
                (_, "Address") => {
                    for key in [
                        "line",
                        "city",
                        "district",
                        "state",
                        "postalCode",
                        "country",
                        "text",
                    ] {
                        strings(v, key).for_each(&mut push);
                    }
                }
                (Ty::Primitive(_), _) => {
                    if let Some(text) = v.as_str() {
                        push(text)
                    }
                }
                _ => {}
            }
        }
        ParamType::Token => match (item.ty, type_name) {
            (Ty::Boolean, _) | (Ty::Primitive(Primitive::Boolean), _) => {
                if let Some(b) = v.as_bool() {
                    out.push(IndexValue::Token {
                        system: None,
                        code: b.to_string(),
                    })
                }
            }
            (Ty::Primitive(_), _) => {
                if let Some(text) = v.as_str() {
                    out.push(IndexValue::Token {
                        system: None,
                        code: text.to_string(),
                    })
                }
            }
            (_, "Coding") => coding(v, out),
            (_, "CodeableConcept") => {
                if let Some(Value::Array(codings)) = v.get("coding") {
                    codings.iter().for_each(|c| coding(c, out));
                }
                if let Some(text) = s(v, "text") {
                    out.push(IndexValue::TokenText(text));
                }
            }
            (_, "Identifier") => {
                if let Some(value) = s(v, "value") {
                    out.push(IndexValue::Token {
                        system: s(v, "system"),
                        code: value.clone(),
                    });
                    if let Some(ty) = v.get("type") {
                        if let Some(Value::Array(codings)) = ty.get("coding") {
                            for c in codings {
                                if let Some(type_code) = s(c, "code") {
                                    out.push(IndexValue::TokenOfType {
                                        type_system: s(c, "system"),
                                        type_code,
                                        value: value.clone(),
                                    });
                                }
                            }
                        }
                        if let Some(text) = s(ty, "text") {
                            out.push(IndexValue::TokenText(text));
                        }
                    }
                }
            }
            (_, "ContactPoint") => {
                if let Some(value) = s(v, "value") {
                    out.push(IndexValue::Token {
                        system: None,
                        code: value,
                    })
                }
            }
            _ => {}
        },
        ParamType::Reference => match (item.ty, type_name) {
            (_, "Reference") => {
                if let Some(text) = v.get("reference").and_then(Value::as_str) {
                    if let Some(r) = reference_value(text, s(v, "type")) {
                        out.push(r);
                    }
                }
                if let Some(identifier) = v.get("identifier") {
                    if let Some(value) = s(identifier, "value") {
                        out.push(IndexValue::ReferenceIdentifier {
                            system: s(identifier, "system"),
                            value,
                        });
                    }
                }
            }
            (Ty::Primitive(Primitive::Canonical | Primitive::Uri | Primitive::Url), _) => {
                if let Some(text) = v.as_str() {
                    out.push(IndexValue::Reference {
                        resource_type: None,
                        id: None,
                        version: None,
                        url: Some(text.to_string()),
                    })
                }
            }
            _ => {}
        },
        ParamType::Date => match (item.ty, type_name) {
            (Ty::Primitive(Primitive::Date | Primitive::DateTime | Primitive::Instant), _) => {
                if let Some((low, high)) = v.as_str().and_then(date_range) {
                    out.push(IndexValue::Date { low, high })
                }
            }
            (_, "Period") => {
                let start = v.get("start").and_then(Value::as_str).map(date_range);
                let end = v.get("end").and_then(Value::as_str).map(date_range);
                if start.is_none() && end.is_none() {
                    return;
                }
                let low = match start {
                    Some(Some((low, _))) => low,
                    Some(None) => return,
                    None => i64::MIN,
                };
                let high = match end {
                    Some(Some((_, high))) => high,
                    Some(None) => return,
                    None => i64::MAX,
                };
                out.push(IndexValue::Date { low, high })
            }
            (_, "Timing") => {
                for event in strings(v, "event") {
                    if let Some((low, high)) = date_range(event) {
                        out.push(IndexValue::Date { low, high })
                    }
                }
            }
            _ => {}
        },
        ParamType::Number | ParamType::Quantity => match (item.ty, type_name) {
            (Ty::Primitive(Primitive::Decimal | Primitive::Integer), _)
            | (Ty::Primitive(Primitive::PositiveInt | Primitive::UnsignedInt), _) => {
                if let Some((text, low, high)) = number(v) {
                    out.push(IndexValue::Number { text, low, high })
                }
            }
            (_, "Quantity" | "Age" | "Duration" | "Count" | "Distance" | "SimpleQuantity")
            | (_, "MoneyQuantity") => {
                if let Some((text, low, high)) = v.get("value").and_then(number) {
                    out.push(IndexValue::Quantity {
                        text,
                        low,
                        high,
                        system: s(v, "system"),
                        code: s(v, "code"),
                        unit: s(v, "unit"),
                    })
                }
            }
            (_, "Range") => {
                let lo = v.get("low");
                let hi = v.get("high");
                let low = lo.and_then(|q| q.get("value")).and_then(number);
                let high = hi.and_then(|q| q.get("value")).and_then(number);
                if low.is_none() && high.is_none() {
                    return;
                }
                let unit_of = lo.or(hi).expect("one bound");
                out.push(IndexValue::Quantity {
                    text: String::new(),
                    low: low.map_or(f64::NEG_INFINITY, |n| n.1),
                    high: high.map_or(f64::INFINITY, |n| n.2),
                    system: s(unit_of, "system"),
                    code: s(unit_of, "code"),
                    unit: s(unit_of, "unit"),
                })
            }
            _ => {}
        },
        ParamType::Uri => {
            if let (Ty::Primitive(_), Some(text)) = (item.ty, v.as_str()) {
                out.push(IndexValue::Uri(text.to_string()))
            }
        }
        ParamType::Composite | ParamType::Special => {}
    }
}

fn coding(v: &Value, out: &mut Vec<IndexValue>) {
    if let Some(code) = s(v, "code") {
        out.push(IndexValue::Token {
            system: s(v, "system"),
            code,
        });
    }
    if let Some(display) = s(v, "display") {
        out.push(IndexValue::TokenText(display));
    }
}

/// `Patient/1`, `Patient/1/_history/2`, `https://host/fhir/Patient/1[/_history/2]` ->
/// `(type, id, version)`. `None` for contained (`#x`), `urn:`, and other shapes.
pub fn parse_reference(text: &str) -> Option<(&str, &str, Option<&str>)> {
    if text.starts_with('#') || text.starts_with("urn:") {
        return None;
    }
    let segments: Vec<&str> = text.split('/').collect();
    let n = segments.len();
    let (ty, id, version) = if n >= 4 && segments[n - 2] == "_history" {
        (segments[n - 4], segments[n - 3], Some(segments[n - 1]))
    } else if n >= 2 {
        (segments[n - 2], segments[n - 1], None)
    } else {
        return None;
    };
    let is_type = ty.starts_with(|c: char| c.is_ascii_uppercase())
        && ty.chars().all(|c| c.is_ascii_alphanumeric());
    let is_id = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    (is_type && is_id(id) && version.is_none_or(is_id)).then_some((ty, id, version))
}

fn reference_value(text: &str, declared_type: Option<String>) -> Option<IndexValue> {
    if text.starts_with('#') {
        return None;
    }
    let absolute = text.contains(':');
    match parse_reference(text) {
        Some((ty, id, version)) => Some(IndexValue::Reference {
            resource_type: Some(ty.to_string()),
            id: Some(id.to_string()),
            version: version.map(str::to_string),
            url: absolute.then(|| text.to_string()),
        }),
        None => Some(IndexValue::Reference {
            resource_type: declared_type,
            id: None,
            version: None,
            url: Some(text.to_string()),
        }),
    }
}

/// The interval `[low, high)` in microseconds UTC that a FHIR date, dateTime or instant
/// covers: `2026` is the whole year, `2026-03` the month, `2026-03-05` the day (UTC: the
/// specification leaves the zone of a date to the server), `...T10:00:00+01:00` the second,
/// `...T10:00:00.250Z` the millisecond. A time without a zone is read as UTC.
pub fn date_range(text: &str) -> Option<(i64, i64)> {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let year = digits(0..4)? as i32;
    let micros_of = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_micros())
    };
    if b.len() == 4 {
        let low = NaiveDate::from_ymd_opt(year, 1, 1)?;
        let high = NaiveDate::from_ymd_opt(year + 1, 1, 1)?;
        return Some((micros_of(low)?, micros_of(high)?));
    }
    if b.get(4) != Some(&b'-') {
        return None;
    }
    let month = digits(5..7)?;
    if b.len() == 7 {
        let low = NaiveDate::from_ymd_opt(year, month, 1)?;
        let high = if month == 12 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(year, month + 1, 1)?
        };
        return Some((micros_of(low)?, micros_of(high)?));
    }
    if b.get(7) != Some(&b'-') {
        return None;
    }
    let day = NaiveDate::from_ymd_opt(year, month, digits(8..10)?)?;
    if b.len() == 10 {
        let low = micros_of(day)?;
        let next = day.succ_opt()?;
        return Some((low, micros_of(next)?));
    }
    if b.get(10) != Some(&b'T') || b.get(13) != Some(&b':') {
        return None;
    }
    let hour = digits(11..13)?;
    let minute = digits(14..16)?;
    let mut i = 16;
    let mut second = 0;
    let mut step: i64 = 60_000_000;
    let mut fraction: i64 = 0;
    if b.get(i) == Some(&b':') {
        second = digits(17..19)?;
        step = 1_000_000;
        i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let n = i - start;
            if n == 0 {
                return None;
            }
            // Precision beyond the microsecond is truncated.
            let kept = n.min(6);
            fraction = text[start..start + kept].parse::<i64>().ok()? * 10_i64.pow(6 - kept as u32);
            step = 10_i64.pow(6 - kept as u32);
        }
    }
    let offset_seconds: i64 = match &text[i..] {
        "" | "Z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let h = digits(i + 1..i + 3)? as i64;
            let m = digits(i + 4..i + 6)? as i64;
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let time = day.and_hms_opt(hour, minute, second)?.and_utc();
    let low = time.timestamp_micros() + fraction - offset_seconds * 1_000_000;
    Some((low, low + step))
}

/// A JSON number (or numeric string) -> its text and the range its precision implies:
/// `5.4` -> `[5.35, 5.45)`, `100` -> `[99.5, 100.5)`, `1.50e2` -> `[149.5, 150.5)`.
pub fn number(v: &Value) -> Option<(String, f64, f64)> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    let value: f64 = text.parse().ok()?;
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(p) => (&text[..p], text[p + 1..].parse::<i32>().ok()?),
        None => (&text[..], 0),
    };
    let decimals = mantissa
        .find('.')
        .map_or(0, |p| (mantissa.len() - p - 1) as i32)
        - exponent;
    let half = 0.5 * 10f64.powi(-decimals);
    Some((text, value - half, value + half))
}
