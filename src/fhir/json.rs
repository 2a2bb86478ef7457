//! Strict parsing of FHIR JSON: UTF-8, no duplicate keys, bounded nesting, numbers kept as
//! their exact source text, and for resources an object with a `resourceType`.
//!
//! serde_json's own parser would keep the last of two duplicate keys and rewrite exponents
//! (`1E-22` becomes `1e-22`, `1e5` becomes `1e+5`); FHIR asks for neither, so requests are
//! parsed here, into serde_json values whose numbers hold the text as sent.

use serde_json::{Map, Number, Value};

use super::outcome::Issue;

/// Deeper documents are refused. R4 resources nest far less than this; the bound keeps the
/// validator's recursion and memory small.
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

/// Parses any JSON document with the same strictness (JSON Patch bodies, stored resources).
pub fn parse_strict(bytes: &[u8]) -> Result<Value, Issue> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(Issue::error("structure", "the body is not valid UTF-8"));
    };
    if text.trim_ascii().is_empty() {
        return Err(Issue::error(
            "structure",
            "the body is empty; send a JSON document",
        ));
    }
    let mut parser = Parser { text, pos: 0 };
    let value = parser.value(0).map_err(|e| parser.issue(e))?;
    parser.skip_whitespace();
    if parser.pos < text.len() {
        return Err(parser.issue("unexpected content after the JSON document".into()));
    }
    Ok(value)
}

/// A recursive-descent parser over validated UTF-8; errors are messages, positioned later.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

type Parsed<T> = Result<T, String>;

impl Parser<'_> {
    fn issue(&self, message: String) -> Issue {
        // The position may sit inside a multi-byte character (after a bad escape): step back.
        let mut end = self.pos.min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &self.text[..end];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        Issue::error(
            "structure",
            format!("the body is not valid JSON: {message} at line {line} column {column}"),
        )
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Parsed<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected '{}'", byte as char))
        }
    }

    fn value(&mut self, depth: usize) -> Parsed<Value> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(_) => Err("expected a value".into()),
            None => Err("unexpected end of input".into()),
        }
    }

    fn nested(depth: usize) -> Parsed<()> {
        if depth > MAX_DEPTH {
            Err(format!("nesting deeper than {MAX_DEPTH} levels"))
        } else {
            Ok(())
        }
    }

    fn object(&mut self, depth: usize) -> Parsed<Value> {
        Self::nested(depth)?;
        self.pos += 1;
        let mut map = Map::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(map));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err("expected a quoted key".into());
            }
            let key_start = self.pos;
            let key = self.string()?;
            if map.contains_key(&key) {
                self.pos = key_start;
                return Err(format!("duplicate key \"{key}\""));
            }
            self.skip_whitespace();
            self.expect(b':')?;
            let value = self.value(depth)?;
            map.insert(key, value);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => return Err("expected ',' or '}'".into()),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Parsed<Value> {
        Self::nested(depth)?;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err("expected ',' or ']'".into()),
            }
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Parsed<Value> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err("expected a value".into())
        }
    }

    /// A JSON number, kept as written once its grammar is checked.
    fn number(&mut self) -> Parsed<Value> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let digits = |pos: &mut usize| {
            let from = *pos;
            while bytes.get(*pos).is_some_and(u8::is_ascii_digit) {
                *pos += 1;
            }
            *pos - from
        };
        let mut pos = start;
        if bytes[pos] == b'-' {
            pos += 1;
        }
        match bytes.get(pos) {
            Some(b'0') => pos += 1,
            Some(b'1'..=b'9') => {
                digits(&mut pos);
            }
            _ => return Err("invalid number".into()),
        }
        if bytes.get(pos) == Some(&b'.') {
            pos += 1;
            if digits(&mut pos) == 0 {
                return Err("invalid number: digits must follow '.'".into());
            }
        }
        if matches!(bytes.get(pos), Some(b'e' | b'E')) {
            pos += 1;
            if matches!(bytes.get(pos), Some(b'+' | b'-')) {
                pos += 1;
            }
            if digits(&mut pos) == 0 {
                return Err("invalid number: digits must follow the exponent".into());
            }
        }
        if bytes.get(pos).is_some_and(|b| b.is_ascii_digit()) {
            return Err("invalid number: leading zeros are not allowed".into());
        }
        self.pos = pos;
        Ok(Value::Number(Number::from_string_unchecked(
            self.text[start..pos].to_string(),
        )))
    }

    fn string(&mut self) -> Parsed<String> {
        self.pos += 1;
        let bytes = self.text.as_bytes();
        let mut out = String::new();
        let mut run = self.pos;
        loop {
            match bytes.get(self.pos) {
                None => return Err("unterminated string".into()),
                Some(b'"') => {
                    out.push_str(&self.text[run..self.pos]);
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    out.push_str(&self.text[run..self.pos]);
                    self.pos += 1;
                    self.escape(&mut out)?;
                    run = self.pos;
                }
                Some(c) if *c < 0x20 => {
                    return Err("control character in a string; escape it".into())
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Parsed<()> {
        let c = self.peek().ok_or("unterminated escape")?;
        if !c.is_ascii() {
            return Err("invalid escape".into());
        }
        self.pos += 1;
        match c {
            b'"' => out.push('"'),
            b'\\' => out.push('\\'),
            b'/' => out.push('/'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'u' => {
                let first = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&first) {
                    if !self.text[self.pos..].starts_with("\\u") {
                        return Err("unpaired surrogate in \\u escape".into());
                    }
                    self.pos += 2;
                    let second = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&second) {
                        return Err("unpaired surrogate in \\u escape".into());
                    }
                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                } else {
                    first
                };
                out.push(char::from_u32(code).ok_or("invalid \\u escape")?);
            }
            _ => return Err("invalid escape".into()),
        }
        Ok(())
    }

    fn hex4(&mut self) -> Parsed<u32> {
        let hex = self
            .text
            .get(self.pos..self.pos + 4)
            .ok_or("truncated \\u escape")?;
        let code = u32::from_str_radix(hex, 16).map_err(|_| "invalid \\u escape")?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("invalid \\u escape".into());
        }
        self.pos += 4;
        Ok(code)
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
        let deep_ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_strict(deep_ok.as_bytes()).is_ok());
        assert!(parse_resource(b"[]").is_err());
        assert!(parse_resource(b"\"Patient\"").is_err());
        assert!(parse_resource(b"{\"active\":true}").is_err());
        assert!(parse_resource(b"").is_err());
        assert!(parse_resource(b"{\"resourceType\":\"Patient\",}").is_err());
        assert!(parse_resource(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn refuses_what_json_forbids() {
        for bad in [
            "01",
            "1.",
            ".5",
            "1e",
            "-",
            "+1",
            "1.5.2",
            "NaN",
            "[1,]",
            "{\"a\"1}",
            "\"\\x\"",
            "\"a\u{1}b\"",
            "\"\\ud800\"",
            "\"\\u12\"",
            "tru",
            "[1] 2",
            "\"open",
            "\"\\é\"",
            "[\"é\\",
            "{\"é\":\"\\ü\"}",
        ] {
            assert!(
                parse_strict(bad.as_bytes()).is_err(),
                "{bad:?} was accepted"
            );
        }
        let e = parse_strict(b"{\n  \"a\": 01\n}").unwrap_err();
        assert!(
            e.diagnostics.contains("line 2 column 8"),
            "{}",
            e.diagnostics
        );
    }

    #[test]
    fn keeps_number_text_exactly() {
        let text = r#"{"resourceType":"Observation","v":[1.50,107,0.000000000000000000001,-0.0,1E-22,1e5,-1.000000000000000000E+245,0]}"#;
        let v = parse_resource(text.as_bytes()).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), text);
    }

    #[test]
    fn decodes_escapes() {
        let v = parse_strict(br#"["\u00e9\ud83d\ude00\n\"\\\/"]"#).unwrap();
        assert_eq!(v[0], "é😀\n\"\\/");
        let unicode = parse_strict("[\"Zoë 😀\"]".as_bytes()).unwrap();
        assert_eq!(unicode[0], "Zoë 😀");
    }
}
