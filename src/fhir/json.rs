//! Strict parsing of FHIR JSON: UTF-8, no duplicate keys, bounded nesting, an object with a
//! `resourceType`. serde_json alone would silently keep the last of two duplicate keys.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::outcome::Issue;

/// Deeper documents are refused before anything else looks at them (below serde_json's own
/// limit of 128, so the message is ours). R4 resources nest far
/// less than this; the bound keeps the validator's recursion and memory small.
pub const MAX_DEPTH: usize = 100;

/// Parses `bytes` as one FHIR resource in JSON.
pub fn parse_resource(bytes: &[u8]) -> Result<Value, Issue> {
    let value = parse_strict(bytes)?;
    match value.get("resourceType") {
        _ if !value.is_object() => Err(Issue::error(
            "structure",
            "the body must be a JSON object holding one FHIR resource",
        )),
        Some(Value::String(t)) if !t.is_empty() => Ok(value),
        Some(_) => Err(
            Issue::error("structure", "resourceType must be a non-empty string").at("resourceType"),
        ),
        None => Err(Issue::error(
            "required",
            "the resource has no resourceType; add e.g. \"resourceType\": \"Patient\"",
        )
        .at("resourceType")),
    }
}

/// Parses any JSON document with the same strictness (used for JSON Patch bodies).
pub fn parse_strict(bytes: &[u8]) -> Result<Value, Issue> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(Issue::error("structure", "the body is not valid UTF-8"));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Issue::error(
            "structure",
            "the body is empty; send a JSON document",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Check { depth: 0 }
        .deserialize(&mut de)
        .map_err(|e| syntax_issue(&e))?;
    serde_json::from_slice(bytes).map_err(|e| syntax_issue(&e))
}

fn syntax_issue(e: &serde_json::Error) -> Issue {
    Issue::error("structure", format!("the body is not valid JSON: {e}"))
}

/// A pass over the document that keeps nothing and fails on duplicate keys or deep nesting.
struct Check {
    depth: usize,
}

impl Check {
    fn deeper<E: serde::de::Error>(&self) -> Result<Check, E> {
        if self.depth >= MAX_DEPTH {
            Err(E::custom(format_args!(
                "nesting deeper than {MAX_DEPTH} levels"
            )))
        } else {
            Ok(Check {
                depth: self.depth + 1,
            })
        }
    }
}

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let child = self.deeper()?;
        while seq
            .next_element_seed(Check { depth: child.depth })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let child = self.deeper()?;
        let mut keys: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if keys.contains(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key \"{key}\""
                )));
            }
            // serde_json hands numbers over as a one-key map when it keeps their source text.
            if key == "$serde_json::private::Number" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            map.next_value_seed(Check { depth: child.depth })?;
            keys.push(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_duplicates_depth_and_non_objects() {
        let dup = parse_resource(br#"{"resourceType":"Patient","active":true,"active":false}"#);
        assert!(dup
            .unwrap_err()
            .diagnostics
            .contains("duplicate key \"active\""));
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(parse_strict(deep.as_bytes())
            .unwrap_err()
            .diagnostics
            .contains("nesting"));
        assert!(parse_resource(b"[]").is_err());
        assert!(parse_resource(b"\"Patient\"").is_err());
        assert!(parse_resource(b"{\"active\":true}").is_err());
        assert!(parse_resource(b"").is_err());
        assert!(parse_resource(b"{\"resourceType\":\"Patient\",}").is_err());
        assert!(parse_resource(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn keeps_decimal_text() {
        let text = r#"{"resourceType":"Observation","v":[1.50,107,0.000000000000000000001,-0.0]}"#;
        let v = parse_resource(text.as_bytes()).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), text);
        // The one normalisation serde_json makes: exponents gain an explicit sign.
        let v = parse_resource(br#"{"resourceType":"Observation","v":1E3}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"resourceType":"Observation","v":1e+3}"#
        );
    }
}
